"""Faults injected into the running service, each under a batch of jobs
submitted through the HTTP API: the worker SIGKILLed mid-job, Redis killed
and restarted empty, PostgreSQL stopped immediately, the S3 server killed.
Every scenario then waits for the batch and asserts what matters: no job lost,
no result and no review item twice. Settings are the defaults (sweep every
60 s, EMOQ_STALE_QUEUED_SECONDS 6 h), so recovery is what an operator gets.

The whole suite is not reliably inside CI's 5 minutes on the 2-core
development machine (3 to 5.5 minutes, by its load), so the two long
scenarios are marked ``faults`` and run by ``make test-faults`` (nightly);
``make test`` runs the other two."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import numpy as np
import psycopg
import pytest

from tests.conftest import voiced, wait_until, wav_bytes
from tests.faults.conftest import Row
from tests.faults.stack import FaultStack, Tally

pytestmark = pytest.mark.timeout(600)

# How long a killed service stays down before it is started again.
OUTAGE_SECONDS = 5.0


def call_wav(seconds: float, seed: int, rate: int = 16000) -> bytes:
    """A stereo call with noise: the low SNR opens a review item for each
    channel's segment, so duplicate review items would show."""
    rng = np.random.default_rng(seed)
    both = np.stack([voiced(seconds, rate, seed=2 * seed), voiced(seconds, rate, seed=2 * seed + 1)], axis=1)
    noisy = both + 0.05 * rng.standard_normal(both.shape)
    return wav_bytes(np.clip(noisy, -1.0, 1.0).astype(np.float32), rate)


def submit_batch(stack: FaultStack, n: int, seconds: float, rate: int = 16000) -> list[str]:
    """Four clients at once, so a backlog builds up in front of the one worker."""
    with ThreadPoolExecutor(4) as clients:
        return list(clients.map(lambda seed: stack.submit(call_wav(seconds, seed, rate), f"call-{seed}"), range(n)))


def wait_for_progress(stack: FaultStack, ids: list[str], finished: int) -> None:
    """Until some of the batch is done: the fault then hits a worker in full flow."""
    wait_until(lambda: stack.count(ids, "succeeded", "failed") >= finished, 120, f"{finished} jobs to finish")


def finish(stack: FaultStack, ids: list[str], back_at: float, deadline: float) -> tuple[Tally, float]:
    """Wait for every job; the tally and seconds from the service's return to the last job."""
    with contextlib.suppress(AssertionError):  # the tally below says what was left unfinished
        stack.wait_finished(ids, deadline - (time.monotonic() - back_at))
    recovered = time.monotonic() - back_at
    return stack.tally(ids), recovered


def record(table: list[Row], scenario: str, tally: Tally, recovered: float, detail: str) -> None:
    row = Row(
        scenario=scenario,
        jobs=tally.jobs,
        succeeded=tally.succeeded,
        failed=tally.failed,
        lost=tally.lost,
        duplicate_results=tally.duplicate_results,
        duplicate_review_items=tally.duplicate_review_items,
        recovery_seconds=recovered,
        detail=detail,
    )
    table.append(row)
    print(f"\n{Row.HEADER}\n{row.markdown()}")


def assert_nothing_lost(tally: Tally) -> None:
    assert tally.missing == 0 and tally.unfinished == 0, tally
    assert tally.results_missing == 0, tally
    # Every fault here is one the service must ride out: none may fail a job.
    assert tally.failed == 0, tally.failures
    assert tally.duplicate_results == 0, tally
    assert tally.duplicate_review_items == 0, tally
    # Two noisy channels: a review item for each segment, so duplicates would have shown.
    assert tally.review_items >= tally.jobs


@pytest.mark.faults
def test_worker_sigkill_mid_job(fault_stack: FaultStack, fault_table: list[Row]):
    """The worker's pool process SIGKILLed while it analyses a job, ten times,
    each time a job not hit before (a job lost three times fails as worker_lost
    by design). Celery replaces the process; the message comes back
    (reject on worker lost) and the job runs again."""
    kills = 10
    began = datetime.now(UTC)
    hit: list[str] = []

    def running_job() -> str | None:
        try:
            with fault_stack.postgres.connect() as conn:
                row = conn.execute(
                    "SELECT id::text FROM jobs WHERE created_at >= %s AND status = 'running'"
                    " AND lost_deliveries = 0 AND NOT id::text = ANY(%s) LIMIT 1",
                    (began, hit),
                ).fetchone()
        except psycopg.OperationalError:
            return None
        return row[0] if row else None

    with ThreadPoolExecutor(1) as background:
        # Kill from the first job on, while the batch is still being submitted.
        submitted = background.submit(submit_batch, fault_stack, 20, 4.0)
        while len(hit) < kills:
            job = wait_until(running_job, 120, "a running job to kill", interval=0.02)
            # One pool process (concurrency 1): the one running that job.
            children = fault_stack.pool_children()
            for pid in children:
                os.kill(pid, signal.SIGKILL)
            if children:
                hit.append(job)
        ids = submitted.result()
    back_at = time.monotonic()
    tally, recovered = finish(fault_stack, ids, back_at, 240)
    with fault_stack.postgres.connect() as conn:
        (mid_job,) = conn.execute(
            "SELECT count(*) FROM jobs WHERE id::text = ANY(%s) AND lost_deliveries > 0", (hit,)
        ).fetchone()
    record(fault_table, "worker SIGKILL mid-job ×10", tally, recovered, f"{mid_job} of {kills} kills hit a running job")
    assert_nothing_lost(tally)
    # A kill that found its job already done would prove nothing.
    assert mid_job >= kills - 2


@pytest.mark.faults
def test_redis_killed_and_restarted_empty(fault_stack: FaultStack, fault_table: list[Row]):
    """Redis killed under a 70-job backlog and started again without its data
    (as one without persistence does): the sweep sees the broker restarted
    and re-publishes the jobs whose message is gone, within 3 minutes."""
    # Telephony calls of 20 s: long enough that the backlog is still there when Redis dies.
    ids = submit_batch(fault_stack, 70, seconds=20.0, rate=8000)
    backlog = fault_stack.count(ids, "queued")
    fault_stack.redis.kill()
    fault_stack.redis.wipe()
    fault_stack.redis.start()
    back_at = time.monotonic()
    tally, recovered = finish(fault_stack, ids, back_at, 180)
    record(fault_table, "Redis kill, empty restart", tally, recovered, f"{backlog} jobs queued when Redis died")
    assert backlog >= 10, "no backlog to lose: the scenario proved nothing"
    assert_nothing_lost(tally)
    assert recovered < 180


def outage(stack: FaultStack, stop: Callable[[], None], start: Callable[[], None]) -> tuple[float, Callable[[], str]]:
    """Stop a service, leave it down, start it again: when it was back, and
    (to call once the batch is done) what the worker's retries were."""
    offset = stack.worker.log_size()
    stop()
    time.sleep(OUTAGE_SECONDS)  # the fault's length, not a wait for anything
    start()
    back_at = time.monotonic()

    def detail() -> str:
        # worker.tasks logs each transient failure it retries.
        retries = stack.worker.log_since(offset).count("transient failure, retry in")
        return f"down {OUTAGE_SECONDS:.0f} s + its start; retries: {retries}"

    return back_at, detail


def test_postgres_immediate_stop_and_start(fault_stack: FaultStack, fault_table: list[Row]):
    """PostgreSQL stopped without a shutdown checkpoint (``pg_ctl stop -m
    immediate``, a crash) mid-batch: workers retry the transient database
    errors and carry on once it has recovered."""
    ids = submit_batch(fault_stack, 20, seconds=4.0)
    wait_for_progress(fault_stack, ids, 3)
    postgres = fault_stack.postgres
    back_at, detail = outage(fault_stack, lambda: postgres.stop("immediate"), postgres.start)
    tally, recovered = finish(fault_stack, ids, back_at, 240)
    record(fault_table, "PostgreSQL immediate stop, start", tally, recovered, detail())
    assert_nothing_lost(tally)


def test_s3_server_killed_and_restarted(fault_stack: FaultStack, fault_table: list[Row]):
    """The S3 server SIGKILLed mid-batch and started again on its data:
    workers retry the failed downloads; no upload is lost."""
    ids = submit_batch(fault_stack, 20, seconds=4.0)
    wait_for_progress(fault_stack, ids, 3)
    back_at, detail = outage(fault_stack, fault_stack.s3.kill, fault_stack.s3.start)
    tally, recovered = finish(fault_stack, ids, back_at, 240)
    record(fault_table, "S3 server kill, restart", tally, recovered, detail())
    assert_nothing_lost(tally)
