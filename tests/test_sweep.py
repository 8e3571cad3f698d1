"""The sweep re-publishes jobs whose message was lost, with a new task id."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import update

from models import Job
from models.db import transaction
from tests.factories import key_id, make_job
from worker.sweep import sweep_stale_jobs


def age(sessions, job_id, **columns):
    with transaction(sessions) as session:
        session.execute(update(Job).where(Job.id == job_id).values(**columns))


def test_sweep(sessions, store, keys, settings):
    submitter = key_id(sessions, "submitter")
    old = datetime.now(timezone.utc) - timedelta(hours=12)  # past every staleness limit
    never_published = make_job(sessions, store, b"x", submitter)
    age(sessions, never_published.id, created_at=old)
    fresh = make_job(sessions, store, b"x", submitter)  # between commit and publish: leave it
    lost_in_broker = make_job(sessions, store, b"x", submitter)
    age(sessions, lost_in_broker.id, created_at=old, enqueued_at=old)
    waiting = make_job(sessions, store, b"x", submitter)
    age(sessions, waiting.id, enqueued_at=datetime.now(timezone.utc))
    stuck = make_job(sessions, store, b"x", submitter, status="running")
    age(sessions, stuck.id, started_at=old)
    dying = make_job(sessions, store, b"x", submitter, status="running")
    age(sessions, dying.id, started_at=old, lost_deliveries=settings.max_deliveries - 1)

    published, notified = [], []
    counts = sweep_stale_jobs(
        sessions, settings, lambda job_id, task_id: published.append((job_id, task_id)), notify=notified.append
    )

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


def test_failed_publish_is_left_for_the_next_sweep(sessions, store, keys, settings):
    job = make_job(sessions, store, b"x", key_id(sessions, "submitter"))
    age(sessions, job.id, created_at=datetime.now(timezone.utc) - timedelta(hours=1))

    def broker_down(job_id, task_id):
        raise ConnectionError("broker down")

    assert sweep_stale_jobs(sessions, settings, broker_down) == {"republished": 0, "failed": 0}
    with sessions() as session:
        assert session.get(Job, job.id).enqueued_at is None
    assert sweep_stale_jobs(sessions, settings, lambda *_: None)["republished"] == 1
