"""A broker that restarts must not strand queued jobs, and a healthy backlog
must not be re-published. Against a Redis of each test's own, on a spare
port: it is killed and restarted here, which the shared one must never be."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis
from kombu import Connection

from broker import ANALYSE_TASK, Publisher, create_celery
from broker.inspect import broker_started_at, pending_task_ids
from config.settings import QueueSettings
from models import Job
from tests.factories import key_id, make_job
from tests.processes import RedisServer, spare_port
from tests.test_sweep import RecordingBroker, age
from worker.sweep import sweep_stale_jobs


@pytest.fixture
def own_redis(tmp_path) -> Iterator[RedisServer]:
    """redis-server with an append-only file synced on every write."""
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def queue(settings, own_redis) -> QueueSettings:
    return settings.queue.model_copy(update={"redis_url": own_redis.url})


def published_jobs(sessions, store, publisher: Publisher, n: int) -> list[Job]:
    submitter = key_id(sessions, "submitter")
    jobs = [make_job(sessions, store, b"x", submitter) for _ in range(n)]
    for job in jobs:
        assert publisher.analysis(job.id, job.task_id)
    return jobs


def task_ids(sessions, jobs: list[Job]) -> dict[uuid.UUID, uuid.UUID]:
    with sessions() as session:
        return {job.id: session.get(Job, job.id).task_id for job in jobs}


def sweep(sessions, queue: QueueSettings, publisher: Publisher, server: RedisServer) -> dict[str, int]:
    with server.client() as client:
        return sweep_stale_jobs(sessions, queue, publisher, client)


def test_jobs_lost_in_an_empty_restart_are_republished(sessions, store, keys, queue, own_redis):
    publisher = Publisher(create_celery(queue), sessions)
    lost = published_jobs(sessions, store, publisher, 3)

    own_redis.kill()
    own_redis.wipe()  # as a Redis without persistence comes back
    own_redis.start()
    # Published to the new broker moments after its start: the sweep checks
    # it (clock margin) and finds its message waiting.
    after = published_jobs(sessions, store, publisher, 1)

    assert sweep(sessions, queue, publisher, own_redis) == {"republished": 3, "failed": 0}
    new = task_ids(sessions, lost + after)
    assert all(new[job.id] != job.task_id for job in lost)
    assert new[after[0].id] == after[0].task_id
    with own_redis.client() as client:
        assert pending_task_ids(client, [queue.analysis_queue]) == {str(t) for t in new.values()}
    # Their messages are back: the next sweep leaves them alone.
    assert sweep(sessions, queue, publisher, own_redis) == {"republished": 0, "failed": 0}


def test_a_restart_with_its_data_and_a_long_backlog_republish_nothing(sessions, store, keys, queue, own_redis):
    publisher = Publisher(create_celery(queue), sessions)
    backlog = published_jobs(sessions, store, publisher, 3)
    # Queued for longer than EMOQ_STALE_QUEUED_SECONDS, its message still waiting.
    age(sessions, backlog[0].id, enqueued_at=datetime.now(UTC) - timedelta(seconds=queue.stale_queued_seconds + 60))

    own_redis.kill()
    own_redis.start()  # the append-only file brings every message back

    assert sweep(sessions, queue, publisher, own_redis) == {"republished": 0, "failed": 0}
    assert task_ids(sessions, backlog) == {job.id: job.task_id for job in backlog}


def test_a_broker_that_cannot_be_inspected_falls_back_to_the_age_rule(sessions, store, keys, settings):
    submitter = key_id(sessions, "submitter")
    old = datetime.now(UTC) - timedelta(seconds=settings.queue.stale_queued_seconds + 60)
    stale = make_job(sessions, store, b"x", submitter)
    age(sessions, stale.id, created_at=old, enqueued_at=old)
    recent = make_job(sessions, store, b"x", submitter)
    age(sessions, recent.id, created_at=old, enqueued_at=datetime.now(UTC) - timedelta(hours=1))

    broker = RecordingBroker()
    nobody = redis.Redis(port=spare_port(), socket_connect_timeout=1)  # nothing listens there
    counts = sweep_stale_jobs(sessions, settings.queue, Publisher(broker, sessions), nobody)  # type: ignore[arg-type]
    assert counts == {"republished": 1, "failed": 0}
    assert [uuid.UUID(args[0]) for _, args, _ in broker.sent] == [stale.id]


def test_pending_messages_are_found_in_every_priority_list_and_in_the_unacked_hash(queue, own_redis):
    app = create_celery(queue)
    waiting, urgent, taken = (str(uuid.uuid4()) for _ in range(3))
    app.send_task(ANALYSE_TASK, args=["a"], task_id=waiting)
    app.send_task(ANALYSE_TASK, args=["b"], task_id=urgent, priority=9)
    app.send_task(ANALYSE_TASK, args=["c"], task_id=taken)
    with own_redis.client() as client:
        assert broker_started_at(client) <= datetime.now(UTC)
        assert pending_task_ids(client, [queue.analysis_queue]) == {waiting, urgent, taken}
        # A consumer takes the oldest message and holds it unacknowledged, as a worker does while it runs.
        with Connection(queue.redis_url) as connection:
            held = connection.SimpleQueue(queue.analysis_queue, no_ack=False).get(timeout=5)
            assert held.headers["id"] == waiting
            assert client.llen(queue.analysis_queue) == 1  # left the list…
            assert pending_task_ids(client, [queue.analysis_queue]) == {waiting, urgent, taken}  # …still pending
            held.ack()
        assert pending_task_ids(client, [queue.analysis_queue]) == {urgent, taken}
