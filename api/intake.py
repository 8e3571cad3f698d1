"""Recording a new job, for single submissions and batches alike: the upload
goes to S3 under a server-generated key, the row is committed, and only then
may the caller publish it. Within a batch, a file it already holds (same
content, same external id) or a source it already imports is reported as that
job's duplicate instead — checked before storing, and again by the unique
indexes, so concurrent repeats can't both get in. Also the backlog check that
turns intake away (429) once the queue holds too much audio."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any, TypeVar

from flask import current_app
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from api.errors import Problem
from api.services import Services, services
from api.uploads import object_key_for
from domain import backlog
from domain.batches import BatchNotOpen, existing_source, existing_upload, lock_open
from domain.recordings import Recording
from models import Job, JobStatus
from models.db import transaction

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class JobFields:
    """What the submitter chose for a job (a batch's jobs take the batch's)."""

    submitter_id: uuid.UUID
    granularity: str = "utterance"
    domain: str | None = None
    channel_roles: list[str] | None = None
    callback_url: str | None = None
    batch_id: uuid.UUID | None = None


@dataclass(frozen=True)
class Created:
    job_id: uuid.UUID
    # None: a duplicate of ``job_id``, already in the batch; nothing to publish.
    task_id: uuid.UUID | None

    @property
    def duplicate(self) -> bool:
        return self.task_id is None


def backpressure(view: F) -> F:
    """429 ``backlog_full`` with Retry-After while the queued audio is past the limit."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        svc = services()
        limits = svc.settings.batches
        try:
            with svc.sessions() as session:
                backlog.check(session, limits.max_backlog_audio_hours, limits.unfetched_import_seconds)
        except backlog.BacklogFull as exc:
            raise Problem(
                429, exc.code, str(exc), headers={"Retry-After": str(limits.backlog_retry_after_seconds)}
            ) from None
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


FindDuplicate = Callable[[Session], uuid.UUID | None]


def _insert(svc: Services, job: Job, find_duplicate: FindDuplicate | None) -> uuid.UUID | None:
    """Commit the job; the id of the job it duplicates instead, if any."""
    try:
        with transaction(svc.sessions) as session:
            if job.batch_id is not None:
                lock_open(session, job.batch_id)
            if find_duplicate is not None and (duplicate := find_duplicate(session)) is not None:
                return duplicate
            session.add(job)
        return None
    except IntegrityError:
        # A concurrent request inserted the same file or source first.
        if find_duplicate is not None:
            with svc.sessions() as session:
                if (duplicate := find_duplicate(session)) is not None:
                    return duplicate
        raise


def _batch_problem(exc: BatchNotOpen) -> Problem:
    return Problem(409, exc.code, exc.message)


def create_upload_job(
    svc: Services, upload: Recording, fields: JobFields, *, external_id: str | None, filename: str | None
) -> Created:
    if fields.channel_roles and upload.channels is not None and len(fields.channel_roles) != upload.channels:
        raise Problem(
            400,
            "invalid_channels",
            f"{len(fields.channel_roles)} channel roles given for a {upload.channels}-channel recording",
        )

    find_duplicate: FindDuplicate | None = None
    if (batch_id := fields.batch_id) is not None:

        def find_duplicate(session: Session) -> uuid.UUID | None:
            return existing_upload(session, batch_id, external_id, upload.sha256)

    job_id, task_id = uuid.uuid4(), uuid.uuid4()
    key = object_key_for(job_id)
    # An outage here (or below) reaches api.errors, which answers a coded 503 with Retry-After.
    with upload.path.open("rb") as fh:
        svc.store.put_stream(key, fh, upload.size_bytes, upload.content_type)
    job = Job(
        id=job_id,
        task_id=task_id,
        status=JobStatus.queued.value,
        object_key=key,
        sha256=upload.sha256,
        size_bytes=upload.size_bytes,
        content_type=upload.content_type,
        original_filename=filename and filename[:500],
        duration_seconds=upload.duration_seconds,
        sample_rate=upload.sample_rate,
        channels=upload.channels,
        external_id=external_id,
        **_job_fields(fields),
    )
    try:
        duplicate = _insert(svc, job, find_duplicate)
    except (SQLAlchemyError, BatchNotOpen) as exc:
        # No row, so no object either; a database outage becomes a coded 503 in api.errors.
        _remove_orphan(svc, key)
        if isinstance(exc, BatchNotOpen):
            raise _batch_problem(exc) from None
        raise
    if duplicate is not None:
        _remove_orphan(svc, key)
        return Created(duplicate, None)
    return Created(job_id, task_id)


def create_import_job(svc: Services, source: str, fields: JobFields, *, external_id: str | None) -> Created:
    """A batch's job whose recording the worker fetches from ``source`` (URL or s3://bucket/key)."""
    if (batch_id := fields.batch_id) is None:
        raise ValueError("imports belong to a batch")
    job_id, task_id = uuid.uuid4(), uuid.uuid4()
    job = Job(
        id=job_id,
        task_id=task_id,
        status=JobStatus.queued.value,
        object_key=object_key_for(job_id),
        source=source,
        external_id=external_id,
        **_job_fields(fields),
    )
    try:
        duplicate = _insert(svc, job, lambda session: existing_source(session, batch_id, source))
    except BatchNotOpen as exc:
        raise _batch_problem(exc) from None
    except SQLAlchemyError:
        raise Problem(503, "database_unavailable", "could not record the job; nothing was kept") from None
    return Created(job_id, task_id) if duplicate is None else Created(duplicate, None)


def _job_fields(fields: JobFields) -> dict[str, Any]:
    return {
        "submitter_id": fields.submitter_id,
        "granularity": fields.granularity,
        "domain": fields.domain,
        "channel_roles": fields.channel_roles,
        "callback_url": fields.callback_url,
        "batch_id": fields.batch_id,
    }


def _remove_orphan(svc: Services, key: str) -> None:
    try:
        svc.store.remove(key)
    except Exception:  # the answer matters more; the orphan is logged for clean-up
        current_app.logger.exception("could not remove orphaned upload %s", key)
