"""Backpressure: past a configured amount of queued audio, requests that add
recordings are refused with 429 and a Retry-After instead of growing the
queue without bound. Imports not fetched yet count nothing (their duration is
unknown until a worker has them)."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models import Job, JobStatus


class BacklogFull(Exception):
    code = "backlog_full"


def queued_audio_hours(session: Session) -> float:
    # Served by the partial index ix_jobs_queued_duration.
    total = session.scalar(
        select(func.coalesce(func.sum(Job.duration_seconds), 0.0)).where(Job.status == JobStatus.queued.value)
    )
    return float(total or 0.0) / 3600.0


def check(session: Session, limit_hours: float) -> None:
    queued = queued_audio_hours(session)
    if queued >= limit_hours:
        raise BacklogFull(f"{queued:.1f} h of audio are queued (limit {limit_hours:g} h); retry later")
