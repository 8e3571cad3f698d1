"""Jobs: submit a recording, read its status and result."""

from __future__ import annotations

import io
import re
import uuid
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from flask import Blueprint, Response, current_app, request, url_for
from sqlalchemy import select
from werkzeug.datastructures import FileStorage

from analysis.probe import MAX_CHANNELS
from api.auth import current_key, requires
from api.errors import Problem
from api.inputs import optional_text
from api.pagination import next_cursor, page
from api.services import services
from api.uploads import object_key_for, receive
from domain import callback_urls, erasure
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
    value = optional_text("callback_url", request.form.get("callback_url"), 2000)
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Problem(400, "invalid_callback_url", "callback_url must be an absolute http(s) URL")
    if not services().settings.webhooks.allow_private and callback_urls.names_private_host(parts.hostname):
        raise Problem(
            400, "callback_url_private", "callback_url names a loopback, private, link-local or metadata address"
        )
    return value


def _filename(file: FileStorage) -> str | None:
    # Kept for people only (never a storage key); long names are cut, not refused.
    return optional_text("filename", file.filename and file.filename[:500], 500)


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
    external_id = optional_text("external_id", request.form.get("external_id"), 200)
    filename = _filename(file)

    upload = receive(file.stream, svc.settings)
    try:
        if roles and upload.channels is not None and len(roles) != upload.channels:
            raise Problem(
                400, "invalid_channels", f"{len(roles)} channel roles given for a {upload.channels}-channel recording"
            )
        job_id, task_id = uuid.uuid4(), uuid.uuid4()
        key = object_key_for(job_id)
        with upload.path.open("rb") as fh:
            svc.store.put_stream(key, fh, upload.size_bytes, upload.content_type)
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
                        original_filename=filename,
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
        except Exception:
            # No row, so no object either; the error handler says what went wrong (503 for an outage).
            try:
                svc.store.remove(key)
            except Exception:  # the database's error matters more; the orphan is logged for clean-up
                current_app.logger.exception("could not remove orphaned upload %s", key)
            raise
    finally:
        upload.path.unlink(missing_ok=True)
    # Only now, with the row committed, may a worker see the job.
    published = svc.publisher.analysis(job_id, task_id)
    current_app.logger.info(
        "job submitted",
        extra={
            "job_id": str(job_id),
            "external_id": external_id,
            "size_bytes": upload.size_bytes,
            "audio_seconds": upload.duration_seconds,
            "published": published,  # False: the sweep publishes it once the broker is back
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


def job_body(job: Job, result: Result | None, *, full: bool) -> dict:
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
        if full:
            body["result"] = result_body(result)
        else:
            body["primary"] = {"label": result.primary_label, "confidence": result.primary_confidence}
            body["flags"] = result.flags
    return body


@bp.get("/<uuid:job_id>")
@requires(Role.submitter, Role.reviewer)
def get_job(job_id: uuid.UUID) -> dict:
    with services().sessions() as session:
        job, result = _visible_job(session, job_id)
        return job_body(job, result, full=True)


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
    query = select(Job).where(Job.deleted_at.is_(None))
    status = request.args.get("status")
    if status:
        if status not in {s.value for s in JobStatus}:
            raise Problem(400, "invalid_status", f"status must be one of {[s.value for s in JobStatus]}")
        query = query.where(Job.status == status)
    if external_id := optional_text("external_id", request.args.get("external_id"), 200):
        query = query.where(Job.external_id == external_id)
    if current_key().role == Role.submitter.value:
        query = query.where(Job.submitter_id == current_key().id)
    query, limit = page(query, Job.created_at, Job.id, svc.settings.server.page_size_max)
    with svc.sessions() as session:
        jobs = session.scalars(query).all()
        results = {
            r.job_id: r for r in session.scalars(select(Result).where(Result.job_id.in_([j.id for j in jobs[:limit]])))
        }
        items = [job_body(j, results.get(j.id), full=False) for j in jobs[:limit]]
    return {"items": items, "next_cursor": next_cursor(jobs, limit)}
