"""A batch's rules: it takes recordings while open; close says no more;
cancel fails its queued jobs (running ones finish); it finishes — once, and
only then is ``batch.finished`` announced — when it is closed or cancelled and
none of its jobs is queued or running. Progress and the ETA are read from its
jobs, never counted separately. A name finds a batch only when no other has it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, exists, func, select, update
from sqlalchemy.orm import Session

from models import Batch, BatchStatus, Job, JobStatus

_UNFINISHED = (JobStatus.queued.value, JobStatus.running.value)


class BatchRefused(Exception):
    """A batch rule said no; ``code`` is stable, the message is for people."""

    code = "batch_refused"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BatchNotOpen(BatchRefused):
    code = "batch_closed"


class BatchNameUnknown(BatchRefused):
    code = "batch_not_found"


class BatchNameAmbiguous(BatchRefused):
    code = "batch_name_ambiguous"

    def __init__(self, message: str, ids: list[uuid.UUID]) -> None:
        super().__init__(message)
        self.ids = ids


def lock_open(session: Session, batch_id: uuid.UUID) -> Batch:
    """The batch, share-locked for a job insert: close and cancel (which lock it
    for update) wait until the insert commits, so no job slips into a closed batch."""
    batch = session.scalar(select(Batch).where(Batch.id == batch_id).with_for_update(read=True))
    if batch is None:
        raise LookupError(batch_id)
    if batch.status != BatchStatus.open.value:
        raise BatchNotOpen(
            f"batch {batch_id} is {batch.status}: it takes no more recordings; start a new batch (another name)"
        )
    return batch


def _locked(session: Session, batch_id: uuid.UUID) -> Batch:
    # FOR NO KEY UPDATE: job inserts' foreign-key checks (FOR KEY SHARE) don't conflict with it.
    batch = session.scalar(select(Batch).where(Batch.id == batch_id).with_for_update(key_share=True))
    if batch is None:
        raise LookupError(batch_id)
    return batch


def close(session: Session, batch_id: uuid.UUID, now: datetime) -> Batch:
    """No more recordings; closing twice is harmless. A cancelled batch stays cancelled."""
    batch = _locked(session, batch_id)
    if batch.status == BatchStatus.open.value:
        batch.status = BatchStatus.closed.value
        batch.closed_at = now
    return batch


def cancel(session: Session, batch_id: uuid.UUID, now: datetime) -> tuple[Batch, int]:
    """Close the batch and fail its queued jobs as ``cancelled``; the number cancelled."""
    batch = _locked(session, batch_id)
    if batch.status == BatchStatus.finished.value:
        return batch, 0
    batch.status = BatchStatus.cancelled.value
    batch.closed_at = batch.closed_at or now
    # FOR UPDATE re-checks the status once a worker's lock is gone: a job it started runs on.
    queued = session.scalars(
        select(Job).where(Job.batch_id == batch_id, Job.status == JobStatus.queued.value).with_for_update()
    ).all()
    return batch, sum(job.cancel() for job in queued)


def try_finish(session: Session, batch_id: uuid.UUID) -> bool:
    """Mark the batch finished if it is closed (or cancelled) and no job of it is
    queued or running. True for exactly one caller: the guarded UPDATE re-checks
    ``finished_at IS NULL`` under the row lock, so concurrent last jobs can't both win."""
    unfinished = exists().where(Job.batch_id == batch_id, Job.status.in_(_UNFINISHED))
    finished = session.execute(
        update(Batch)
        .where(
            Batch.id == batch_id,
            Batch.status.in_((BatchStatus.closed.value, BatchStatus.cancelled.value)),
            Batch.finished_at.is_(None),
            ~unfinished,
        )
        .values(
            finished_at=func.now(),
            status=case((Batch.status == BatchStatus.closed.value, BatchStatus.finished.value), else_=Batch.status),
        )
        .returning(Batch.id)
    ).scalar()
    return finished is not None


def existing_upload(session: Session, batch_id: uuid.UUID, external_id: str | None, sha256: str) -> uuid.UUID | None:
    """The job that already holds this file (same content, same external id) in the batch."""
    return session.scalar(
        select(Job.id).where(
            Job.batch_id == batch_id,
            Job.source.is_(None),
            Job.sha256 == sha256,
            Job.external_id.is_(None) if external_id is None else Job.external_id == external_id,
        )
    )


def existing_source(session: Session, batch_id: uuid.UUID, source: str) -> uuid.UUID | None:
    return session.scalar(select(Job.id).where(Job.batch_id == batch_id, Job.source == source))


# How many of the batches sharing a name an ambiguity names (newest first).
_NAMESAKES_SHOWN = 5


def named(session: Session, name: str) -> uuid.UUID:
    """The id of the one batch called ``name``, whoever submitted it. Names are not
    unique, not even per submitter (the client resumes the caller's newest batch of a
    name, but nothing stops a second), so a name that several batches share is
    refused, naming the newest of them, rather than taken to mean one or all of them."""
    ids = session.scalars(
        select(Batch.id)
        .where(Batch.name == name)
        .order_by(Batch.created_at.desc(), Batch.id.desc())
        .limit(_NAMESAKES_SHOWN + 1)
    ).all()
    if not ids:
        raise BatchNameUnknown(f"no batch is named {name!r}")
    if len(ids) > 1:
        shown = list(ids[:_NAMESAKES_SHOWN])
        listed = ", ".join(map(str, shown)) + (", …" if len(ids) > len(shown) else "")
        raise BatchNameAmbiguous(
            f"more than one batch is named {name!r}: give the id of the one you mean (newest first: {listed})", shown
        )
    return ids[0]


@dataclass(frozen=True)
class Progress:
    jobs: dict[str, int]  # per status, "total", and "cancelled" (counted among the failed)
    audio_seconds: dict[str, float]
    throughput: float | None  # audio seconds analysed per wall-clock second
    eta_seconds: float | None


def eta(done_seconds: float, remaining_seconds: float, elapsed_seconds: float) -> tuple[float | None, float | None]:
    """(throughput, ETA) from what the batch's jobs did so far: audio seconds
    finished per second since its first job started. Unknown before any finished."""
    if done_seconds <= 0 or elapsed_seconds <= 0:
        return None, None
    throughput = done_seconds / elapsed_seconds
    return throughput, remaining_seconds / throughput


def progress(session: Session, batch_id: uuid.UUID, now: datetime) -> Progress:
    cancelled = Job.error_code == Job.CANCELLED
    analysed = Job.error_code.is_distinct_from(Job.CANCELLED)
    rows = session.execute(
        select(
            Job.status,
            func.count(),
            func.count().filter(cancelled),
            # Cancelled jobs were never analysed: their audio is neither done nor to go.
            func.coalesce(func.sum(Job.duration_seconds).filter(analysed), 0.0),
            func.count(Job.duration_seconds).filter(analysed),
            # Imports not fetched yet: no duration until a worker has them.
            func.count().filter(analysed & Job.duration_seconds.is_(None)),
        )
        .where(Job.batch_id == batch_id)
        .group_by(Job.status)
    ).all()
    jobs = {status.value: 0 for status in JobStatus}
    seconds = {status.value: 0.0 for status in JobStatus}
    unknown = {status.value: 0 for status in JobStatus}
    cancelled_jobs = known_jobs = 0
    for status, count, cancelled_count, total, known_count, unknown_count in rows:
        jobs[status], seconds[status], unknown[status] = int(count), float(total or 0.0), int(unknown_count)
        cancelled_jobs += int(cancelled_count)
        known_jobs += int(known_count)
    first_start, last_finish = session.execute(
        select(func.min(Job.started_at), func.max(Job.finished_at)).where(Job.batch_id == batch_id)
    ).one()
    done = seconds[JobStatus.succeeded.value] + seconds[JobStatus.failed.value]
    remaining = seconds[JobStatus.queued.value] + seconds[JobStatus.running.value]
    # Recordings not fetched yet are as long, on average, as the batch's known ones.
    unfetched = unknown[JobStatus.queued.value] + unknown[JobStatus.running.value]
    if unfetched and known_jobs:
        remaining += unfetched * sum(seconds.values()) / known_jobs
    # While jobs remain, the clock runs to now; once all ended, to the last finish.
    until = now if jobs[JobStatus.queued.value] + jobs[JobStatus.running.value] else last_finish
    elapsed = (until - first_start).total_seconds() if first_start and until else 0.0
    throughput, eta_seconds = eta(done, remaining, elapsed)
    return Progress(
        jobs={**jobs, "total": sum(jobs.values()), "cancelled": cancelled_jobs},
        audio_seconds={
            "queued": round(seconds[JobStatus.queued.value], 3),
            "running": round(seconds[JobStatus.running.value], 3),
            "done": round(done, 3),
        },
        throughput=None if throughput is None else round(throughput, 3),
        eta_seconds=None if eta_seconds is None else round(eta_seconds, 1),
    )
