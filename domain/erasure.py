"""Erasure: a call recording carries personal data, and its owner may have it
forgotten. ``erase_job`` removes the recording and the frame files from S3,
the result (scores, embeddings, segments) and the review items (their
embeddings and the segment times that point into the audio) from
PostgreSQL, and blanks what the job row said about the recording. The row
stays as a tombstone (id, deleted_at, deleted_by) with an audit line.

Everything happens under the job's row lock, S3 first: if S3 fails, the
transaction rolls back and the DELETE can be repeated. A worker still
analysing the job finds it erased when it saves (``worker.jobs.persist``
waits for the lock) and removes the frame files it wrote."""

from __future__ import annotations

import uuid

from sqlalchemy import delete
from sqlalchemy.orm import Session

from models import AuditLog, Job, Result, ReviewItem
from storage import ObjectStore


class AlreadyErased(Exception):
    """The job is a tombstone already."""


def frames_prefix(job_id: uuid.UUID | str) -> str:
    """Where a job's frame features live in S3 (one object per segment)."""
    return f"frames/{job_id}/"


def remove_audio(session: Session, store: ObjectStore, job: Job) -> int:
    """Remove the recording and the frame files; the number of objects removed."""
    keys = [job.object_key, *store.keys(frames_prefix(job.id))]
    store.remove_many(keys)
    return len(keys)


def remove_result(session: Session, job: Job) -> None:
    """The result and its review items: every embedding and score the job produced."""
    session.execute(delete(ReviewItem).where(ReviewItem.job_id == job.id))
    session.execute(delete(Result).where(Result.job_id == job.id))


def erase_job(session: Session, store: ObjectStore, job_id: uuid.UUID, actor_id: uuid.UUID) -> Job:
    """Erase inside the caller's transaction; raises AlreadyErased for a tombstone."""
    job = session.get(Job, job_id, with_for_update=True)
    if job is None:
        raise LookupError(job_id)
    if job.deleted_at is not None:
        raise AlreadyErased(job_id)
    removed = remove_audio(session, store, job)
    remove_result(session, job)
    job.erase(actor_id)
    session.add(AuditLog(actor_id=actor_id, action="job.erased", job_id=job.id, details={"objects_removed": removed}))
    return job
