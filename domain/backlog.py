"""Backpressure: past a configured amount of queued audio, requests that add
recordings are refused with 429 and a Retry-After instead of growing the
queue without bound. An import not fetched yet has no duration until a worker
has it, so it counts as a typical call: counted as nothing, a batch of URLs
could queue any amount of audio past the limit."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models import Job, JobStatus


class BacklogFull(Exception):
    code = "backlog_full"


def queued_audio_hours(session: Session, unfetched_seconds: float) -> float:
    """Queued audio, each recording of unknown duration counted as ``unfetched_seconds``."""
    # Served by the partial index ix_jobs_queued_duration.
    known, unknown = session.execute(
        select(
            func.coalesce(func.sum(Job.duration_seconds), 0.0),
            func.count().filter(Job.duration_seconds.is_(None)),
        ).where(Job.status == JobStatus.queued.value)
    ).one()
    return (float(known or 0.0) + unknown * unfetched_seconds) / 3600.0


def check(session: Session, limit_hours: float, unfetched_seconds: float) -> None:
    queued = queued_audio_hours(session, unfetched_seconds)
    if queued >= limit_hours:
        raise BacklogFull(f"{queued:.1f} h of audio are queued (limit {limit_hours:g} h); retry later")
