"""Keep job rows and queue messages from diverging.

A job can be left behind when the API committed its row but could not
publish (broker down), when Redis lost its queue (restarted without its
data), or when a worker died in a way that acked the message (hard time
limit). The sweep re-publishes such jobs with a new task id; the job row names
the one message allowed to run it, so an old message that turns up later is
skipped.

A published job still queued is re-published only when the broker no longer
holds its message: a long healthy backlog is left alone, and a Redis that
restarted with its data (append-only file) strands nothing either. Every job
published before the broker's current process started is checked at each
sweep; any job queued longer than ``EMOQ_STALE_QUEUED_SECONDS`` too, as a
last resort."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta

import redis
from redis.exceptions import RedisError
from sqlalchemy import or_, select
from sqlalchemy.orm import Session, sessionmaker

from broker import Publisher
from broker.inspect import broker_started_at, pending_task_ids
from config.settings import BatchSettings, QueueSettings
from domain import idempotency
from models import Job, JobStatus
from models.db import transaction

log = logging.getLogger(__name__)

# A job row younger than this may still be between its commit and its publish.
PUBLISH_GRACE = timedelta(seconds=30)
# Jobs published this soon after the broker's start are checked too: our clock
# and the API's may differ a little, and Redis counts its uptime in whole seconds.
BROKER_START_MARGIN = timedelta(seconds=10)
# At most this many jobs are locked and re-published per sweep.
BATCH = 500


def sweep_stale_jobs(
    sessions: sessionmaker[Session], queue: QueueSettings, publisher: Publisher, broker: redis.Redis
) -> dict[str, int]:
    """Re-publish lost jobs; announce (after the commit) each job the sweep failed.
    ``broker`` is the Redis behind Celery."""
    now = datetime.now(UTC)
    lost = _lost_messages(sessions, queue, broker, now)
    stale_running = now - timedelta(seconds=queue.task_time_limit_seconds + 60)
    republish: list[tuple[uuid.UUID, uuid.UUID]] = []
    failed: list[uuid.UUID] = []
    with transaction(sessions) as session:
        jobs = session.scalars(
            select(Job)
            .where(
                or_(
                    (Job.status == JobStatus.queued.value)
                    & ((Job.enqueued_at.is_(None) & (Job.created_at < now - PUBLISH_GRACE)) | Job.id.in_(lost[:BATCH])),
                    (Job.status == JobStatus.running.value) & (Job.started_at < stale_running),
                )
            )
            .with_for_update(skip_locked=True)
            .limit(BATCH)
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


def _lost_messages(
    sessions: sessionmaker[Session], queue: QueueSettings, broker: redis.Redis, now: datetime
) -> list[uuid.UUID]:
    """Published jobs still queued whose message the broker no longer holds."""
    stale = now - timedelta(seconds=queue.stale_queued_seconds)

    def published_before(when: datetime) -> list[tuple[uuid.UUID, uuid.UUID]]:
        with sessions() as session:
            rows = session.execute(
                select(Job.id, Job.task_id).where(Job.status == JobStatus.queued.value, Job.enqueued_at < when)
            )
            return [(job_id, task_id) for job_id, task_id in rows]

    try:
        started = broker_started_at(broker)
        published = published_before(max(stale, started + BROKER_START_MARGIN))
        pending = pending_task_ids(broker, [queue.analysis_queue]) if published else set()
    except RedisError as exc:
        # A Redis that refuses INFO or LRANGE (a restricted managed service):
        # fall back to the age rule alone rather than strand jobs for good.
        log.warning("sweep: cannot inspect the broker (%s); re-publishing by age alone", exc)
        return [job_id for job_id, _ in published_before(stale)]
    lost = [job_id for job_id, task_id in published if str(task_id) not in pending]
    if lost:
        log.warning(
            "sweep: %d queued jobs are no longer in the broker (it started at %s)", len(lost), started.isoformat()
        )
    return lost


def purge_idempotency_keys(sessions: sessionmaker[Session], batches: BatchSettings) -> int:
    """Forget idempotency keys past their promised lifetime."""
    with transaction(sessions) as session:
        return idempotency.purge(session, datetime.now(UTC), timedelta(hours=batches.idempotency_ttl_hours))
