"""Celery tasks: thin adapters from messages to ``worker.jobs`` and ``worker.sweep``."""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable

import redis
from billiard.exceptions import SoftTimeLimitExceeded
from celery import Task, shared_task
from celery.signals import worker_process_init, worker_process_shutdown
from minio.error import S3Error
from redis.exceptions import RedisError
from sqlalchemy.exc import OperationalError
from urllib3.exceptions import HTTPError

from broker import (
    ANALYSE_TASK,
    BATCH_NOTIFY_TASK,
    NOTIFY_REVIEW_TASK,
    NOTIFY_TASK,
    RETENTION_TASK,
    SWEEP_TASK,
    Publisher,
)
from config import load_settings
from config.settings import QueueSettings
from domain.retention import apply_retention
from worker.batch_events import deliver_batch, finish_batch_of, finish_idle_batches
from worker.context import WorkerContext, get_context, stop_heartbeat
from worker.jobs import Delivery, fail_job, release_for_retry, run_job
from worker.sweep import purge_idempotency_keys, sweep_stale_jobs
from worker.telemetry import WEBHOOK_FAILURES
from worker.webhooks import WebhookFailed, WebhookRefused, deliver, deliver_review, pending_callback

log = logging.getLogger(__name__)

TRANSIENT = (S3Error, HTTPError, OperationalError, RedisError, ConnectionError, TimeoutError)


@worker_process_init.connect
def _load_model_at_start(**_kwargs) -> None:
    # Load in each pool process before its first task, so /readyz sees it early.
    get_context(load_settings())


@worker_process_shutdown.connect
def _withdraw_heartbeat(**_kwargs) -> None:
    stop_heartbeat()


@shared_task(bind=True, name=ANALYSE_TASK)
def analyse_recording(self: Task, job_id: str) -> None:
    ctx = get_context(load_settings())
    delivery = Delivery(uuid.UUID(job_id), uuid.UUID(self.request.id))
    _analyse(self, ctx, delivery)  # raises Retry on transient failures: not finished, nothing to announce
    publisher = Publisher(self.app, ctx.sessions)
    try:
        if pending_callback(ctx.sessions, delivery.job_id):
            publisher.job_finished(delivery.job_id)
    except TRANSIENT as exc:  # the result is saved; only the announcement is lost
        log.warning("job %s: could not queue its webhook: %s", job_id, exc)
    try:
        if (batch_id := finish_batch_of(ctx.sessions, delivery.job_id)) is not None:
            publisher.batch_finished(batch_id)
    except TRANSIENT as exc:  # the sweep finishes a batch left behind
        log.warning("job %s: could not finish or announce its batch: %s", job_id, exc)


def _backoff(queue: QueueSettings, retries: int) -> int:
    return min(queue.retry_backoff_max_seconds, 2 ** (retries + 1))


def _analyse(self: Task, ctx: WorkerContext, delivery: Delivery) -> None:
    queue = ctx.settings.queue
    job_id = str(delivery.job_id)
    try:
        run_job(ctx, delivery)
    except SoftTimeLimitExceeded:
        fail_job(ctx, delivery.job_id, "time_limit", f"analysis took longer than {queue.task_time_limit_seconds} s")
    except TRANSIENT as exc:
        if self.request.retries >= queue.retry_max:
            fail_job(ctx, delivery.job_id, "transient_failure", f"gave up after {queue.retry_max} retries: {exc}")
            return
        countdown = _backoff(queue, self.request.retries)
        log.warning("job %s: transient failure, retry in %d s: %s", job_id, countdown, exc)
        # If the database is what failed, the retry's delivery counts this one as lost.
        with contextlib.suppress(*TRANSIENT):
            release_for_retry(ctx, delivery.job_id, str(exc))
        raise self.retry(exc=exc, countdown=countdown, max_retries=queue.retry_max) from exc
    except Exception as exc:
        # A bug, not the recording's fault: fail the job visibly rather than
        # leave it queued with its message acknowledged.
        log.exception("job %s: unexpected error", job_id)
        fail_job(ctx, delivery.job_id, "internal_error", f"{type(exc).__name__}: {exc}"[:500])


@shared_task(bind=True, name=SWEEP_TASK)
def sweep(self: Task) -> dict[str, int]:
    ctx = get_context(load_settings())
    publisher = Publisher(self.app, ctx.sessions)
    broker = redis.Redis.from_url(ctx.settings.queue.redis_url)
    try:
        counts = sweep_stale_jobs(ctx.sessions, ctx.settings.queue, publisher, broker)
    finally:
        broker.close()
    counts["batches_finished"] = finish_idle_batches(ctx.sessions, publisher)
    counts["idempotency_keys_purged"] = purge_idempotency_keys(ctx.sessions, ctx.settings.batches)
    return counts


@shared_task(name=RETENTION_TASK)
def retention() -> dict[str, int]:
    ctx = get_context(load_settings())
    counts = apply_retention(ctx.sessions, ctx.store, ctx.settings.retention)
    if any(counts.values()):
        log.info("retention purge", extra=counts)
    return counts


@shared_task(bind=True, name=NOTIFY_TASK)
def notify(self: Task, job_id: str) -> None:
    ctx = get_context(load_settings())
    _announce(self, ctx, f"job {job_id}", lambda: deliver(ctx.sessions, ctx.settings.webhooks, uuid.UUID(job_id)))


@shared_task(bind=True, name=BATCH_NOTIFY_TASK)
def notify_batch(self: Task, batch_id: str) -> None:
    ctx = get_context(load_settings())
    _announce(
        self, ctx, f"batch {batch_id}", lambda: deliver_batch(ctx.sessions, ctx.settings.webhooks, uuid.UUID(batch_id))
    )


def _announce(self: Task, ctx: WorkerContext, what: str, send: Callable[[], bool]) -> None:
    webhooks = ctx.settings.webhooks
    try:
        send()
    except WebhookRefused as exc:
        WEBHOOK_FAILURES.labels("refused").inc()
        log.warning("%s: webhook refused: %s", what, exc)
    except (WebhookFailed, *TRANSIENT) as exc:
        WEBHOOK_FAILURES.labels("failed").inc()
        if self.request.retries >= webhooks.max_retries:
            WEBHOOK_FAILURES.labels("given_up").inc()
            log.warning("%s: webhook given up after %d retries: %s", what, self.request.retries, exc)
            return
        countdown = _backoff(ctx.settings.queue, self.request.retries)
        raise self.retry(exc=exc, countdown=countdown, max_retries=webhooks.max_retries) from exc


@shared_task(bind=True, name=NOTIFY_REVIEW_TASK)
def notify_review(self: Task, item_id: str, decision_id: str) -> None:
    ctx = get_context(load_settings())
    webhooks = ctx.settings.webhooks
    try:
        deliver_review(ctx.sessions, webhooks, uuid.UUID(item_id), uuid.UUID(decision_id))
    except WebhookRefused as exc:
        log.warning("review item %s: webhook refused: %s", item_id, exc)
    except (WebhookFailed, *TRANSIENT) as exc:
        if self.request.retries >= webhooks.max_retries:
            log.warning("review item %s: webhook given up after %d retries: %s", item_id, self.request.retries, exc)
            return
        countdown = _backoff(ctx.settings.queue, self.request.retries)
        raise self.retry(exc=exc, countdown=countdown, max_retries=webhooks.max_retries) from exc
