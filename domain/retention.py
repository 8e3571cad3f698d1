"""Retention: recordings and frame files of finished jobs are purged after
``EMOQ_AUDIO_RETENTION_DAYS`` (results stay), and, when
``EMOQ_RESULT_RETENTION_DAYS`` is set, results and review items after that
(with the audio, if still there). Beat runs it on the maintenance queue; each
purged job gets a mark on its row and an audit line. Jobs are taken in small
batches with ``SKIP LOCKED``, so a purge never waits on a job being erased."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Select, select
from sqlalchemy.orm import InstrumentedAttribute, Session, sessionmaker

from config.settings import RetentionSettings
from domain.erasure import remove_audio, remove_result
from models import AuditLog, Job, JobStatus
from models.db import transaction
from storage import ObjectStore

BATCH = 100
_FINISHED = (JobStatus.succeeded.value, JobStatus.failed.value)


def _due(mark: InstrumentedAttribute[datetime | None], days: float, now: datetime) -> Select[Job]:
    return (
        select(Job)
        .where(
            Job.status.in_(_FINISHED),
            Job.finished_at < now - timedelta(days=days),
            Job.deleted_at.is_(None),
            mark.is_(None),
        )
        .order_by(Job.finished_at)
        .limit(BATCH)
        .with_for_update(skip_locked=True)
    )


def _purge_batch(session: Session, store: ObjectStore, days: float, *, results: bool, now: datetime) -> int:
    jobs = session.scalars(_due(Job.result_purged_at if results else Job.audio_purged_at, days, now)).all()
    for job in jobs:
        removed = 0
        if job.audio_purged_at is None:
            removed = remove_audio(session, store, job)
            job.audio_purged_at = now
        if results:
            remove_result(session, job)
            job.result_purged_at = now
        action = "job.result_purged" if results else "job.audio_purged"
        session.add(AuditLog(actor_id=None, action=action, job_id=job.id, details={"objects_removed": removed}))
    return len(jobs)


def apply_retention(
    sessions: sessionmaker[Session], store: ObjectStore, retention: RetentionSettings
) -> dict[str, int]:
    now = datetime.now(UTC)
    counts = {"audio_purged": 0, "results_purged": 0}
    for days, results, name in (
        (retention.result_retention_days, True, "results_purged"),
        (retention.audio_retention_days, False, "audio_purged"),
    ):
        if days is None:
            continue
        while True:
            with transaction(sessions) as session:
                done = _purge_batch(session, store, days, results=results, now=now)
            counts[name] += done
            if done < BATCH:
                break
    return counts
