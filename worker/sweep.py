"""Keep job rows and queue messages from diverging.

A job can be left behind when the API committed its row but could not
publish (broker down), when Redis lost its queue (no persistence), or when a
worker died in a way that acked the message (hard time limit). The sweep
re-publishes such jobs with a new task id; the job row names the one message
allowed to run it, so an old message that turns up later is skipped."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from sqlalchemy import or_, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from config import Settings
from models import Job, JobStatus
from models.db import transaction

log = logging.getLogger(__name__)

Publish = Callable[[uuid.UUID, uuid.UUID], None]

# A job row younger than this may still be between its commit and its publish.
PUBLISH_GRACE = timedelta(seconds=30)


def publish_job(sessions: sessionmaker[Session], job_id: uuid.UUID, task_id: uuid.UUID, publish: Publish) -> bool:
    """Publish, then record when; a failed publish leaves enqueued_at empty for the sweep."""
    try:
        publish(job_id, task_id)
    except Exception as exc:  # any broker error: the sweep will publish it later
        log.warning("could not enqueue job %s: %s", job_id, exc)
        return False
    try:
        with transaction(sessions) as session:
            job = session.get(Job, job_id)
            if job is not None and job.task_id == task_id:
                job.enqueued_at = datetime.now(timezone.utc)
    except SQLAlchemyError as exc:
        # Published all the same; at worst the sweep publishes it once more
        # and the worker skips the stale copy.
        log.warning("job %s published, but enqueued_at not recorded: %s", job_id, exc)
    return True


def sweep_stale_jobs(
    sessions: sessionmaker[Session],
    settings: Settings,
    publish: Publish,
    notify: Callable[[uuid.UUID], None] | None = None,
) -> dict[str, int]:
    """``notify`` is called, after the commit, for each job the sweep failed."""
    now = datetime.now(timezone.utc)
    stale_queued = now - timedelta(seconds=settings.stale_queued_seconds)
    stale_running = now - timedelta(seconds=settings.task_time_limit_seconds + 60)
    republish: list[tuple[uuid.UUID, uuid.UUID]] = []
    failed: list[uuid.UUID] = []
    with transaction(sessions) as session:
        jobs = session.scalars(
            select(Job)
            .where(
                or_(
                    (Job.status == JobStatus.queued.value)
                    & (
                        (Job.enqueued_at.is_(None) & (Job.created_at < now - PUBLISH_GRACE))
                        | (Job.enqueued_at < stale_queued)
                    ),
                    (Job.status == JobStatus.running.value) & (Job.started_at < stale_running),
                )
            )
            .with_for_update(skip_locked=True)
            .limit(500)
        ).all()
        for job in jobs:
            if job.status == JobStatus.running.value:
                job.lost_deliveries += 1
                if job.lost_deliveries >= settings.max_deliveries:
                    job.fail("worker_lost", f"no worker finished this job in {job.lost_deliveries} deliveries")
                    failed.append(job.id)
                    continue
                job.status = JobStatus.queued.value
            job.task_id = uuid.uuid4()
            job.enqueued_at = None
            republish.append((job.id, job.task_id))
    published = sum(publish_job(sessions, job_id, task_id, publish) for job_id, task_id in republish)
    for job_id in failed if notify else ():
        notify(job_id)
    if republish or failed:
        log.info("sweep: re-published %d of %d jobs, failed %d", published, len(republish), len(failed))
    return {"republished": published, "failed": len(failed)}
