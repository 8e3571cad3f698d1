"""Jobs: submit a recording, read its status and result."""

from __future__ import annotations

import io
import re
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from flask import Blueprint, Response, current_app, request, url_for
from sqlalchemy import select
from sqlalchemy.orm import Session

from analysis.probe import MAX_CHANNELS
from api import params
from api.auth import current_key, requires
from api.errors import Problem
from api.idempotent import idempotent
from api.inputs import optional_text
from api.intake import JobFields, backpressure, create_upload_job
from api.pagination import next_cursor, page
from api.services import services
from api.uploads import receive
from domain import erasure, review_outcome
from domain.network import is_http_url, names_private_host, private_address
from models import EMOTION_LABELS, Job, JobStatus, Result, Role
from models.db import transaction
from storage import ObjectMissing

bp = Blueprint("jobs", __name__, url_prefix="/v1/jobs")

_TOKEN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
SUBMIT_FIELDS = ("granularity", "channels", "domain", "external_id", "callback_url")


def token(name: str, value: str | None, max_len: int = 64) -> str | None:
    if value is None or value == "":
        return None
    value = value.strip().lower()
    if len(value) > max_len or not _TOKEN.match(value):
        raise Problem(400, f"invalid_{name}", f"{name} must be lowercase letters, digits, '_' or '-'")
    return value


def channel_roles(raw: str | None) -> list[str] | None:
    if not raw:
        return None
    roles = [r.strip().lower() for r in raw.split(",")]
    if len(roles) > MAX_CHANNELS or not all(_TOKEN.match(r) for r in roles) or len(set(roles)) != len(roles):
        raise Problem(400, "invalid_channels", "channels must be distinct role names, e.g. 'agent,customer'")
    return roles


def granularity_of(value: str | None) -> str:
    value = value or "utterance"
    if value not in ("utterance", "frame"):
        raise Problem(400, "invalid_granularity", "granularity must be 'utterance' or 'frame'")
    return value


def callback_url_of(value: str | None) -> str | None:
    """An absolute http(s) URL that does not point into a private network or a
    metadata service (unless allowed): literal addresses and internal names are
    refused as written, other names by what they resolve to now (the worker
    checks again when it delivers)."""
    value = optional_text("callback_url", value, 2000)
    if value is None:
        return None
    if not is_http_url(value):
        raise Problem(400, "invalid_callback_url", "callback_url must be an absolute http(s) URL")
    if services().settings.webhooks.allow_private:
        return value
    hostname = urlsplit(value).hostname or ""
    if names_private_host(hostname):
        raise Problem(
            422, "callback_url_private", "callback_url names a loopback, private, link-local or metadata address"
        )
    if address := private_address(value):
        raise Problem(
            422,
            "callback_url_private",
            f"callback_url resolves to {address}, a private address; webhooks go to public addresses only",
        )
    return value


def external_id_of(value: str | None) -> str | None:
    return optional_text("external_id", value, 200)


def filename_of(value: str | None) -> str | None:
    # Kept for people only (never a storage key); long names are cut, not refused.
    return optional_text("filename", value and value[:500], 500)


@bp.post("")
@requires(Role.submitter)
@backpressure
@idempotent
def submit() -> tuple[dict, int, dict]:
    svc = services()
    params.only(form=SUBMIT_FIELDS, files=("file",))
    files = request.files.getlist("file")
    if not files:
        raise Problem(400, "file_missing", "send the recording as the multipart field 'file'")
    if len(files) > 1:
        raise Problem(
            400,
            "multiple_files",
            f"{len(files)} files in one request: a job takes one recording; "
            "send many as a batch (POST /v1/batches, then POST /v1/batches/{id}/recordings)",
        )
    file = files[0]
    fields = JobFields(
        submitter_id=current_key().id,
        granularity=granularity_of(request.form.get("granularity")),
        domain=token("domain", request.form.get("domain")),
        channel_roles=channel_roles(request.form.get("channels")),
        callback_url=callback_url_of(request.form.get("callback_url")),
    )
    external_id = external_id_of(request.form.get("external_id"))
    filename = filename_of(file.filename)

    upload = receive(file.stream, svc.settings)
    try:
        created = create_upload_job(svc, upload, fields, external_id=external_id, filename=filename)
    finally:
        upload.path.unlink(missing_ok=True)
    job_id = created.job_id
    # Only now, with the row committed, may a worker see the job.
    published = created.task_id is not None and svc.publisher.analysis(job_id, created.task_id)
    current_app.logger.info(
        "job submitted",
        extra={
            "job_id": str(job_id),
            "external_id": external_id,
            "size_bytes": upload.size_bytes,
            "audio_seconds": upload.duration_seconds,
            "published": published,  # False: a duplicate, or the sweep publishes it once the broker is back
        },
    )
    location = url_for("jobs.get_job", job_id=job_id)
    return {"id": str(job_id), "status": JobStatus.queued.value}, 202, {"Location": location}


def _own_job(session, job_id: uuid.UUID) -> Job:
    """The job, if the caller may see it (submitters see only their own); 410 once erased."""
    job = session.get(Job, job_id)
    key = current_key()
    if job is None or (key.role == Role.submitter.value and job.submitter_id != key.id):
        raise Problem(404, "job_not_found", f"no job {job_id}")
    if job.deleted_at is not None:
        raise Problem(410, "job_erased", f"job {job_id} was erased", **tombstone(job))
    return job


def _visible_job(session, job_id: uuid.UUID) -> tuple[Job, Result | None]:
    job = _own_job(session, job_id)
    return job, session.scalar(select(Result).where(Result.job_id == job.id))


def tombstone(job: Job) -> dict:
    return {
        "id": str(job.id),
        "deleted_at": job.deleted_at and job.deleted_at.isoformat(),
        "deleted_by": job.deleted_by and str(job.deleted_by),
    }


def result_body(result: Result) -> dict:
    return {
        "model": {
            "id": result.model_id,
            "revision": result.model_revision,
            "random_weights": result.model_random_weights,
        },
        "labels": list(EMOTION_LABELS),
        "scores": result.scores,
        "primary": {"label": result.primary_label, "confidence": result.primary_confidence},
        "embedding_dim": result.embedding_dim,
        "flags": result.flags,
        "enhancement": result.enhancement,
        "calibration_version": result.calibration_version,
        "aggregate": result.aggregate,
        "segments": result.segments,
    }


def job_body(job: Job, result: Result | None, *, full: bool, reviews: review_outcome.Reviews | None = None) -> dict:
    """``reviews``: the job's review items by segment; their human answers join the result (domain.review_outcome)."""
    body: dict[str, Any] = {
        "id": str(job.id),
        "status": job.status,
        "error": {"code": job.error_code, "message": job.error_message} if job.status == "failed" else None,
        "attempts": job.attempts,
        "external_id": job.external_id,
        "batch_id": job.batch_id and str(job.batch_id),
        "granularity": job.granularity,
        "domain": job.domain,
        "created_at": job.created_at.isoformat(),
        "started_at": job.started_at and job.started_at.isoformat(),
        "finished_at": job.finished_at and job.finished_at.isoformat(),
        "audio_purged_at": job.audio_purged_at and job.audio_purged_at.isoformat(),
        "result_purged_at": job.result_purged_at and job.result_purged_at.isoformat(),
        "recording": {
            "sha256": job.sha256,
            "size_bytes": job.size_bytes,
            "duration_seconds": job.duration_seconds,
            "sample_rate": job.sample_rate,
            "channels": job.channels,
            "channel_roles": job.channel_roles,
        },
        "callback": {
            "url": job.callback_url,
            "delivered_at": job.callback_delivered_at and job.callback_delivered_at.isoformat(),
            "error": job.callback_error,
        }
        if job.callback_url
        else None,
    }
    if result is not None:
        reviewed = review_outcome.with_reviews(result_body(result), reviews or {})
        if full:
            body["result"] = reviewed
        else:
            body["primary"] = {"label": result.primary_label, "confidence": result.primary_confidence}
            body["final"] = reviewed["final"]
            body["flags"] = result.flags
        body["review"] = review_outcome.review_summary(reviews or {})
    return body


def _reviews(session: Session, jobs: list[Job]) -> dict[uuid.UUID, review_outcome.Reviews]:
    return review_outcome.reviews_by_job(session, [j.id for j in jobs], datetime.now(UTC))


@bp.get("/<uuid:job_id>")
@requires(Role.submitter, Role.reviewer)
def get_job(job_id: uuid.UUID) -> dict:
    params.only()
    with services().sessions() as session:
        job, result = _visible_job(session, job_id)
        return job_body(job, result, full=True, reviews=_reviews(session, [job]).get(job.id))


@bp.delete("/<uuid:job_id>")
@requires(Role.submitter)
def erase_job(job_id: uuid.UUID) -> dict:
    """Erase the recording, frame files, result and review items; keep a tombstone."""
    svc = services()
    with transaction(svc.sessions) as session:
        _own_job(session, job_id)
        try:
            job = erasure.erase_job(session, svc.store, job_id, current_key().id)
        except erasure.AlreadyErased:  # erased meanwhile by another request
            raise Problem(410, "job_erased", f"job {job_id} was erased") from None
        current_app.logger.info("job erased", extra={"job_id": str(job_id), "actor_id": str(current_key().id)})
        return tombstone(job)


@bp.get("/<uuid:job_id>/embedding")
@requires(Role.submitter, Role.reviewer)
def get_embedding(job_id: uuid.UUID) -> Response:
    with services().sessions() as session:
        job, result = _visible_job(session, job_id)
        if result is None:
            raise Problem(409, "result_not_ready", f"job {job_id} is {job.status}; no embedding yet")
        buffer = io.BytesIO()
        np.save(buffer, np.asarray(result.embedding, dtype=np.float32))
    return Response(
        buffer.getvalue(),
        mimetype="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="{job_id}.npy"'},
    )


@bp.get("/<uuid:job_id>/segments/<int:index>/frames")
@requires(Role.submitter, Role.reviewer)
def get_frames(job_id: uuid.UUID, index: int) -> Response:
    svc = services()
    with svc.sessions() as session:
        job, result = _visible_job(session, job_id)
        if result is None:
            raise Problem(409, "result_not_ready", f"job {job_id} is {job.status}; no frames yet")
        segments = result.segments
    if not 0 <= index < len(segments) or not segments[index].get("frames_key"):
        raise Problem(404, "frames_not_found", "no frame features for that segment (submit with granularity=frame)")
    try:
        data = svc.store.get_bytes(segments[index]["frames_key"])
    except ObjectMissing:
        raise Problem(404, "frames_not_found", "the frame features are no longer in storage") from None
    return Response(data, mimetype="application/octet-stream")


@bp.get("")
@requires(Role.submitter, Role.reviewer)
def list_jobs() -> dict:
    svc = services()
    params.only(query=("status", "external_id", "review", "limit", "cursor"))
    query = select(Job).where(Job.deleted_at.is_(None))
    status = request.args.get("status")
    if status:
        if status not in {s.value for s in JobStatus}:
            raise Problem(400, "invalid_status", f"status must be one of {[s.value for s in JobStatus]}")
        query = query.where(Job.status == status)
    if external_id := optional_text("external_id", request.args.get("external_id"), 200):
        query = query.where(Job.external_id == external_id)
    if request.args.get("review"):
        try:
            query = query.where(review_outcome.job_filter(request.args["review"]))
        except ValueError as exc:
            raise Problem(400, "invalid_review", str(exc)) from None
    if current_key().role == Role.submitter.value:
        query = query.where(Job.submitter_id == current_key().id)
    query, limit = page(query, Job.created_at, Job.id, svc.settings.server.page_size_max)
    with svc.sessions() as session:
        jobs = session.scalars(query).all()
        results = {
            r.job_id: r for r in session.scalars(select(Result).where(Result.job_id.in_([j.id for j in jobs[:limit]])))
        }
        reviews = _reviews(session, list(jobs[:limit]))
        items = [job_body(j, results.get(j.id), full=False, reviews=reviews.get(j.id)) for j in jobs[:limit]]
    return {"items": items, "next_cursor": next_cursor(jobs, limit)}
