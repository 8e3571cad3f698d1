"""Keep job rows and queue messages from diverging.

A job can be left behind when the API committed its row but could not
publish (broker down), when Redis lost its queue (no persistence), or when a
worker died in a way that acked the message (hard time limit). The sweep
re-publishes such jobs with a new task id; the job row names the one message
allowed to run it, so an old message that turns up later is skipped."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, sessionmaker

from broker import Publisher
from config.settings import BatchSettings, QueueSettings
from domain import idempotency
from models import Job, JobStatus
from models.db import transaction

log = logging.getLogger(__name__)

# A job row younger than this may still be between its commit and its publish.
PUBLISH_GRACE = timedelta(seconds=30)


def sweep_stale_jobs(sessions: sessionmaker[Session], queue: QueueSettings, publisher: Publisher) -> dict[str, int]:
    """Re-publish lost jobs; announce (after the commit) each job the sweep failed."""
    now = datetime.now(UTC)
    stale_queued = now - timedelta(seconds=queue.stale_queued_seconds)
    stale_running = now - timedelta(seconds=queue.task_time_limit_seconds + 60)
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
            if job.status == JobStatus.running.value and not job.recover_stale_run(queue.max_deliveries):
                failed.append(job.id)
                continue
            republish.append((job.id, job.republish()))
    published = sum(publisher.analysis(job_id, task_id) for job_id, task_id in republish)
    for job_id in failed:
        publisher.job_finished(job_id)
    if republish or failed:
        log.info("sweep: re-published %d of %d jobs, failed %d", published, len(republish), len(failed))
    return {"republished": published, "failed": len(failed)}


def purge_idempotency_keys(sessions: sessionmaker[Session], batches: BatchSettings) -> int:
    """Forget idempotency keys past their promised lifetime."""
    with transaction(sessions) as session:
        return idempotency.purge(session, datetime.now(UTC), timedelta(hours=batches.idempotency_ttl_hours))
