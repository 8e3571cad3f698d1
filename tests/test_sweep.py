"""The sweep re-publishes jobs whose message was lost, with a new task id."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import update

from broker import ANALYSE_TASK, NOTIFY_TASK, Publisher
from models import Job
from models.db import transaction
from tests.factories import key_id, make_job
from worker.sweep import sweep_stale_jobs


class RecordingBroker:
    """Stands in for Celery's ``send_task`` (a broker that is up, or down), so
    the sweep's decisions can be read off; the real broker path is covered by
    the end-to-end tests."""

    def __init__(self, down: bool = False) -> None:
        self.down = down
        self.sent: list[tuple[str, list[str], str | None]] = []

    def send_task(self, name: str, args: list[str], task_id: str | None = None) -> None:
        if self.down:
            raise ConnectionError("broker down")
        self.sent.append((name, args, task_id))


def age(sessions, job_id, **columns):
    with transaction(sessions) as session:
        session.execute(update(Job).where(Job.id == job_id).values(**columns))


def test_sweep(sessions, store, keys, settings, redis_client):
    submitter = key_id(sessions, "submitter")
    old = datetime.now(UTC) - timedelta(hours=12)  # past every staleness limit
    never_published = make_job(sessions, store, b"x", submitter)
    age(sessions, never_published.id, created_at=old)
    fresh = make_job(sessions, store, b"x", submitter)  # between commit and publish: leave it
    lost_in_broker = make_job(sessions, store, b"x", submitter)
    age(sessions, lost_in_broker.id, created_at=old, enqueued_at=old)
    waiting = make_job(sessions, store, b"x", submitter)
    age(sessions, waiting.id, enqueued_at=datetime.now(UTC))
    stuck = make_job(sessions, store, b"x", submitter, status="running")
    age(sessions, stuck.id, started_at=old)
    dying = make_job(sessions, store, b"x", submitter, status="running")
    age(sessions, dying.id, started_at=old, lost_deliveries=settings.queue.max_deliveries - 1)

    broker = RecordingBroker()
    counts = sweep_stale_jobs(sessions, settings.queue, Publisher(broker, sessions), redis_client)  # type: ignore[arg-type]
    published = [
        (uuid.UUID(args[0]), uuid.UUID(task_id)) for name, args, task_id in broker.sent if name == ANALYSE_TASK
    ]
    notified = [uuid.UUID(args[0]) for name, args, _ in broker.sent if name == NOTIFY_TASK]

    assert {job_id for job_id, _ in published} == {never_published.id, lost_in_broker.id, stuck.id}
    assert counts == {"republished": 3, "failed": 1}
    with sessions() as session:
        for job_id, task_id in published:
            row = session.get(Job, job_id)
            assert row.task_id == task_id and row.status == "queued" and row.enqueued_at is not None
        assert session.get(Job, never_published.id).task_id != never_published.task_id
        assert session.get(Job, stuck.id).lost_deliveries == 1
        assert session.get(Job, fresh.id).enqueued_at is None
        gone = session.get(Job, dying.id)
        assert gone.status == "failed" and gone.error_code == "worker_lost"
    assert notified == [dying.id]  # so its webhook fires


def test_failed_publish_is_left_for_the_next_sweep(sessions, store, keys, settings, redis_client):
    job = make_job(sessions, store, b"x", key_id(sessions, "submitter"))
    age(sessions, job.id, created_at=datetime.now(UTC) - timedelta(hours=1))

    down = Publisher(RecordingBroker(down=True), sessions)  # type: ignore[arg-type]
    assert sweep_stale_jobs(sessions, settings.queue, down, redis_client) == {"republished": 0, "failed": 0}
    with sessions() as session:
        assert session.get(Job, job.id).enqueued_at is None
    up = Publisher(RecordingBroker(), sessions)  # type: ignore[arg-type]
    assert sweep_stale_jobs(sessions, settings.queue, up, redis_client)["republished"] == 1
