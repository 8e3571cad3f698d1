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
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from analysis.probe import MAX_CHANNELS
from api.auth import current_key, requires
from api.errors import Problem
from api.pagination import next_cursor, page
from api.services import services
from api.uploads import object_key_for, receive
from domain import review_outcome
from models import EMOTION_LABELS, Job, JobStatus, Result, Role
from models.db import transaction
from storage import ObjectMissing

bp = Blueprint("jobs", __name__, url_prefix="/v1/jobs")

_TOKEN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


def _form_token(name: str, max_len: int = 64) -> str | None:
    value = request.form.get(name)
    if value is None or value == "":
        return None
    value = value.strip().lower()
    if len(value) > max_len or not _TOKEN.match(value):
        raise Problem(400, f"invalid_{name}", f"{name} must be lowercase letters, digits, '_' or '-'")
    return value


def _channel_roles() -> list[str] | None:
    raw = request.form.get("channels")
    if not raw:
        return None
    roles = [r.strip().lower() for r in raw.split(",")]
    if len(roles) > MAX_CHANNELS or not all(_TOKEN.match(r) for r in roles) or len(set(roles)) != len(roles):
        raise Problem(400, "invalid_channels", "channels must be distinct role names, e.g. 'agent,customer'")
    return roles


def _callback_url() -> str | None:
    value = request.form.get("callback_url") or None
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or len(value) > 2000:
        raise Problem(400, "invalid_callback_url", "callback_url must be an absolute http(s) URL")
    return value


@bp.post("")
@requires(Role.submitter)
def submit() -> tuple[dict, int, dict]:
    svc = services()
    file = request.files.get("file")
    if file is None:
        raise Problem(400, "file_missing", "send the recording as the multipart field 'file'")
    granularity = request.form.get("granularity", "utterance")
    if granularity not in ("utterance", "frame"):
        raise Problem(400, "invalid_granularity", "granularity must be 'utterance' or 'frame'")
    domain = _form_token("domain")
    roles = _channel_roles()
    callback_url = _callback_url()
    external_id = request.form.get("external_id") or None
    if external_id is not None and len(external_id) > 200:
        raise Problem(400, "invalid_external_id", "external_id is limited to 200 characters")

    upload = receive(file.stream, svc.settings)
    try:
        if roles and upload.channels is not None and len(roles) != upload.channels:
            raise Problem(
                400, "invalid_channels", f"{len(roles)} channel roles given for a {upload.channels}-channel recording"
            )
        job_id, task_id = uuid.uuid4(), uuid.uuid4()
        key = object_key_for(job_id)
        try:
            with upload.path.open("rb") as fh:
                svc.store.put_stream(key, fh, upload.size_bytes, upload.content_type)
        except Exception as exc:
            raise Problem(503, "storage_unavailable", f"could not store the upload: {exc}") from None
        try:
            with transaction(svc.sessions) as session:
                session.add(
                    Job(
                        id=job_id,
                        task_id=task_id,
                        status=JobStatus.queued.value,
                        object_key=key,
                        sha256=upload.sha256,
                        size_bytes=upload.size_bytes,
                        content_type=upload.content_type,
                        original_filename=(file.filename or None) and file.filename[:500],
                        duration_seconds=upload.duration_seconds,
                        sample_rate=upload.sample_rate,
                        channels=upload.channels,
                        channel_roles=roles,
                        submitter_id=current_key().id,
                        external_id=external_id,
                        granularity=granularity,
                        domain=domain,
                        callback_url=callback_url,
                    )
                )
        except SQLAlchemyError:
            try:
                svc.store.remove(key)
            except Exception:  # the 503 matters more; the orphan is logged for clean-up
                current_app.logger.exception("could not remove orphaned upload %s", key)
            raise Problem(503, "database_unavailable", "could not record the job; nothing was kept") from None
    finally:
        upload.path.unlink(missing_ok=True)
    # Only now, with the row committed, may a worker see the job.
    svc.publisher.analysis(job_id, task_id)
    location = url_for("jobs.get_job", job_id=job_id)
    return {"id": str(job_id), "status": JobStatus.queued.value}, 202, {"Location": location}


def _visible_job(session, job_id: uuid.UUID) -> tuple[Job, Result | None]:
    """The job and its result, if the caller may see it; submitters see only their own."""
    job = session.get(Job, job_id)
    key = current_key()
    if job is None or (key.role == Role.submitter.value and job.submitter_id != key.id):
        raise Problem(404, "job_not_found", f"no job {job_id}")
    return job, session.scalar(select(Result).where(Result.job_id == job.id))


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
        "granularity": job.granularity,
        "domain": job.domain,
        "created_at": job.created_at.isoformat(),
        "started_at": job.started_at and job.started_at.isoformat(),
        "finished_at": job.finished_at and job.finished_at.isoformat(),
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
    with services().sessions() as session:
        job, result = _visible_job(session, job_id)
        return job_body(job, result, full=True, reviews=_reviews(session, [job]).get(job.id))


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
    query = select(Job)
    status = request.args.get("status")
    if status:
        if status not in {s.value for s in JobStatus}:
            raise Problem(400, "invalid_status", f"status must be one of {[s.value for s in JobStatus]}")
        query = query.where(Job.status == status)
    if request.args.get("external_id"):
        query = query.where(Job.external_id == request.args["external_id"])
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
