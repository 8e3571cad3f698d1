"""Batches: many recordings as one — created with shared settings, filled by
uploads (one or more ``file`` fields a request), URLs or an S3 prefix, closed
or cancelled, followed (progress, ETA) and read back as one results table
(``api.batch_results``). Rules: ``domain.batches``."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

from flask import Blueprint, request, url_for
from minio.error import S3Error
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.datastructures import FileStorage

from api import params
from api.auth import current_key, requires
from api.errors import Problem
from api.idempotent import idempotent
from api.intake import Created, JobFields, backpressure, create_import_job, create_upload_job
from api.jobs import callback_url_of, channel_roles, external_id_of, granularity_of, job_body, token
from api.pagination import next_cursor, page
from api.services import Services, services
from api.uploads import receive
from domain import batches as rules
from domain.batches import Progress
from domain.network import is_http_url, private_address
from models import Batch, BatchStatus, Job, JobStatus, Result, Role
from models.db import transaction
from storage import ListedObject

bp = Blueprint("batches", __name__, url_prefix="/v1/batches")

CREATE_FIELDS = ("name", "domain", "channels", "granularity", "callback_url", "metadata", "per_job_events")
MAX_METADATA_BYTES = 16 * 1024
# Inputs one request may add; more go in further requests (or a narrower prefix).
MAX_ITEMS = 10_000


def _now() -> datetime:
    return datetime.now(UTC)


def visible_batch(session: Session, batch_id: uuid.UUID, *, modify: bool = False) -> Batch:
    """The batch, if the caller may see it (submitters: their own) or change it (its owner, admins)."""
    batch = session.get(Batch, batch_id)
    key = current_key()
    mine = batch is not None and batch.submitter_id == key.id
    if batch is None or (key.role == Role.submitter.value and not mine):
        raise Problem(404, "batch_not_found", f"no batch {batch_id}")
    if modify and not mine and key.role != Role.admin.value:
        raise Problem(403, "forbidden", "only the batch's submitter (or an admin) may change it")
    return batch


def batch_body(batch: Batch, progress: Progress | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": str(batch.id),
        "name": batch.name,
        "status": batch.status,
        "granularity": batch.granularity,
        "domain": batch.domain,
        "channels": batch.channel_roles,
        "metadata": batch.meta,
        "created_at": batch.created_at.isoformat(),
        "closed_at": batch.closed_at and batch.closed_at.isoformat(),
        "finished_at": batch.finished_at and batch.finished_at.isoformat(),
        "callback": {
            "url": batch.callback_url,
            "per_job_events": batch.per_job_events,
            "delivered_at": batch.callback_delivered_at and batch.callback_delivered_at.isoformat(),
            "error": batch.callback_error,
        }
        if batch.callback_url
        else None,
    }
    if progress is not None:
        body["jobs"] = progress.jobs
        body["audio_seconds"] = progress.audio_seconds
        body["throughput_audio_seconds_per_second"] = progress.throughput
        body["eta_seconds"] = progress.eta_seconds
    body["links"] = {
        "self": f"/v1/batches/{batch.id}",
        "jobs": f"/v1/batches/{batch.id}/jobs",
        "results": f"/v1/batches/{batch.id}/results",
    }
    return body


def _metadata(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict) or len(json.dumps(value)) > MAX_METADATA_BYTES:
        raise Problem(400, "invalid_metadata", f"metadata must be a JSON object of at most {MAX_METADATA_BYTES} bytes")
    return value


def _string(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise Problem(400, f"invalid_{name}", f"{name} must be a string")
    return value


@bp.post("")
@requires(Role.submitter)
@idempotent
def create_batch() -> tuple[dict, int, dict]:
    params.only()
    body = params.json_object()
    params.only_keys(body, CREATE_FIELDS)
    name = (_string(body, "name") or "").strip()
    if not 0 < len(name) <= 200:
        raise Problem(400, "invalid_name", "name is required, at most 200 characters")
    channels = body.get("channels")
    if isinstance(channels, list) and all(isinstance(c, str) for c in channels):
        channels = ",".join(channels)
    elif channels is not None and not isinstance(channels, str):
        raise Problem(400, "invalid_channels", "channels must be a list of role names or 'agent,customer'")
    per_job_events = body.get("per_job_events", False)
    if not isinstance(per_job_events, bool):
        raise Problem(400, "invalid_per_job_events", "per_job_events must be true or false")
    batch = Batch(
        id=uuid.uuid4(),
        submitter_id=current_key().id,
        name=name,
        status=BatchStatus.open.value,
        granularity=granularity_of(_string(body, "granularity")),
        domain=token("domain", _string(body, "domain")),
        channel_roles=channel_roles(channels),
        meta=_metadata(body.get("metadata")),
        callback_url=callback_url_of(_string(body, "callback_url")),
        per_job_events=per_job_events,
    )
    with transaction(services().sessions) as session:
        session.add(batch)
        session.flush()
        session.refresh(batch)
        created = batch_body(batch)
    return created, 201, {"Location": url_for("batches.get_batch", batch_id=batch.id)}


@bp.get("")
@requires(Role.submitter, Role.reviewer)
def list_batches() -> dict:
    svc = services()
    params.only(query=("name", "status", "limit", "cursor"))
    query = select(Batch)
    if request.args.get("name"):
        query = query.where(Batch.name == request.args["name"])
    if status := request.args.get("status"):
        if status not in {s.value for s in BatchStatus}:
            raise Problem(400, "invalid_status", f"status must be one of {[s.value for s in BatchStatus]}")
        query = query.where(Batch.status == status)
    if current_key().role == Role.submitter.value:
        query = query.where(Batch.submitter_id == current_key().id)
    query, limit = page(query, Batch.created_at, Batch.id, svc.settings.server.page_size_max)
    with svc.sessions() as session:
        rows = session.scalars(query).all()
        return {"items": [batch_body(b) for b in rows[:limit]], "next_cursor": next_cursor(rows, limit)}


def _with_progress(batch_id: uuid.UUID) -> dict[str, Any]:
    with services().sessions() as session:
        batch = visible_batch(session, batch_id)
        return batch_body(batch, rules.progress(session, batch_id, _now()))


@bp.get("/<uuid:batch_id>")
@requires(Role.submitter, Role.reviewer)
def get_batch(batch_id: uuid.UUID) -> dict:
    params.only()
    return _with_progress(batch_id)


@bp.get("/<uuid:batch_id>/jobs")
@requires(Role.submitter, Role.reviewer)
def list_batch_jobs(batch_id: uuid.UUID) -> dict:
    svc = services()
    params.only(query=("status", "limit", "cursor"))
    query = select(Job).where(Job.batch_id == batch_id)
    if status := request.args.get("status"):
        if status not in {s.value for s in JobStatus}:
            raise Problem(400, "invalid_status", f"status must be one of {[s.value for s in JobStatus]}")
        query = query.where(Job.status == status)
    query, limit = page(query, Job.created_at, Job.id, svc.settings.server.page_size_max)
    with svc.sessions() as session:
        visible_batch(session, batch_id)
        jobs = session.scalars(query).all()
        results = {
            r.job_id: r for r in session.scalars(select(Result).where(Result.job_id.in_([j.id for j in jobs[:limit]])))
        }
        items = [job_body(j, results.get(j.id), full=False) for j in jobs[:limit]]
    return {"items": items, "next_cursor": next_cursor(jobs, limit)}


def _finish_and_announce(svc: Services, batch_id: uuid.UUID) -> None:
    """Close and cancel can end a batch whose jobs all ended already."""
    with transaction(svc.sessions) as session:
        finished = rules.try_finish(session, batch_id)
        announce = finished and session.scalar(select(Batch.callback_url).where(Batch.id == batch_id)) is not None
    if announce:
        svc.publisher.batch_finished(batch_id)


@bp.post("/<uuid:batch_id>/close")
@requires(Role.submitter)
def close_batch(batch_id: uuid.UUID) -> dict:
    params.only()
    svc = services()
    with transaction(svc.sessions) as session:
        visible_batch(session, batch_id, modify=True)
        rules.close(session, batch_id, _now())
    _finish_and_announce(svc, batch_id)
    return _with_progress(batch_id)


@bp.post("/<uuid:batch_id>/cancel")
@requires(Role.submitter)
def cancel_batch(batch_id: uuid.UUID) -> dict:
    params.only()
    svc = services()
    with transaction(svc.sessions) as session:
        visible_batch(session, batch_id, modify=True)
        _, cancelled = rules.cancel(session, batch_id, _now())
    _finish_and_announce(svc, batch_id)
    return {**_with_progress(batch_id), "cancelled_jobs": cancelled}


Input = tuple[dict[str, Any], Callable[[], Created]]


def _add_each(svc: Services, inputs: Iterable[Input]) -> list[dict[str, Any]]:
    """Create each input's job, publishing as it goes; one bad input is refused
    alone. A failure of the service (5xx) or a batch closed meanwhile ends the
    request instead: what was queued so far stays, and a retry reports it as duplicates."""
    items: list[dict[str, Any]] = []
    for index, (what, create) in enumerate(inputs):
        try:
            created = create()
        except Problem as problem:
            if problem.status >= 500 or problem.code == "batch_closed":
                raise
            error = {"code": problem.code, "message": problem.detail}
            items.append({"index": index, **what, "status": "refused", "error": error})
            continue
        status = "duplicate" if created.duplicate else "queued"
        items.append({"index": index, **what, "status": status, "job_id": str(created.job_id)})
        if created.task_id is not None:
            svc.publisher.analysis(created.job_id, created.task_id)
    return items


def _base_name(name: str) -> str:
    return PurePosixPath(name.replace("\\", "/")).name


def _uploads(svc: Services, fields: JobFields) -> Iterator[Input]:
    params.only(form=("external_id",), files=("file",))
    files = request.files.getlist("file")
    external_ids = request.form.getlist("external_id")
    if not files:
        raise Problem(400, "file_missing", "send recordings as one or more multipart fields 'file'")
    if len(external_ids) > len(files):
        raise Problem(400, "invalid_external_id", f"{len(external_ids)} external_id fields for {len(files)} files")
    for index, file in enumerate(files):
        filename = file.filename or None
        external_id = external_ids[index] if index < len(external_ids) else (filename and _base_name(filename))

        def create(file: FileStorage = file, filename: str | None = filename, external_id: str | None = external_id):
            upload = receive(file.stream, svc.settings)
            try:
                return create_upload_job(
                    svc, upload, fields, external_id=external_id_of(external_id), filename=filename
                )
            finally:
                upload.path.unlink(missing_ok=True)

        yield {"external_id": external_id, "filename": filename}, create


def _urls(svc: Services, fields: JobFields, urls: Any) -> Iterator[Input]:
    if not isinstance(urls, list) or not urls or len(urls) > MAX_ITEMS:
        raise Problem(400, "invalid_urls", f"urls must be a list of 1 to {MAX_ITEMS} URLs")
    for entry in urls:
        url, external_id = (entry.get("url"), entry.get("external_id")) if isinstance(entry, dict) else (entry, None)
        if isinstance(url, str) and not external_id:
            external_id = _base_name(unquote(urlsplit(url).path)) or None

        def create(url: Any = url, external_id: Any = external_id) -> Created:
            if not isinstance(url, str) or not is_http_url(url):
                raise Problem(400, "invalid_url", "each URL must be an absolute http(s) URL")
            if not svc.settings.batches.import_allow_private and (address := private_address(url)):
                raise Problem(422, "url_private", f"the URL resolves to {address}, a private address")
            if external_id is not None and not isinstance(external_id, str):
                raise Problem(400, "invalid_external_id", "external_id must be a string")
            return create_import_job(svc, url, fields, external_id=external_id_of(external_id))

        yield {"url": url, "external_id": external_id}, create


def _s3_objects(svc: Services, fields: JobFields, location: Any) -> Iterator[Input]:
    if not isinstance(location, dict) or not isinstance(location.get("bucket"), str):
        raise Problem(400, "invalid_s3", 's3 must be {"bucket": "...", "prefix": "..."}')
    params.only_keys(location, ("bucket", "prefix"))
    bucket, prefix = location["bucket"], location.get("prefix") or ""
    allowed = svc.settings.batches.import_s3_buckets
    if bucket == svc.store.bucket or (allowed and bucket not in allowed):
        raise Problem(403, "s3_bucket_forbidden", f"recordings can't be imported from the bucket {bucket!r}")
    listed: list[ListedObject] = []
    try:
        for obj in svc.store.list_objects(bucket, prefix):
            listed.append(obj)
            if len(listed) > MAX_ITEMS:
                raise Problem(400, "too_many_items", f"more than {MAX_ITEMS} objects: import narrower prefixes")
    except S3Error as exc:
        raise Problem(422, "s3_unreadable", f"could not list s3://{bucket}/{prefix}: {exc.code}") from None
    except ValueError as exc:  # the SDK refuses a name outside S3's bucket naming rules before asking
        raise Problem(400, "invalid_s3", f"{bucket!r} is not an S3 bucket name: {exc}") from None
    if not listed:
        raise Problem(422, "s3_empty", f"no objects under s3://{bucket}/{prefix}")
    limit = svc.settings.server.max_upload_bytes
    for obj in listed:
        # The key below the prefix: unique within the import, unlike a base name.
        external_id = obj.key[len(prefix) :].lstrip("/") or _base_name(obj.key)

        def create(obj: ListedObject = obj, external_id: str = external_id) -> Created:
            if obj.size > limit:
                raise Problem(413, "upload_too_large", f"{obj.size} bytes; recordings are limited to {limit}")
            source = f"s3://{bucket}/{obj.key}"
            return create_import_job(svc, source, fields, external_id=external_id_of(external_id))

        yield {"key": obj.key, "external_id": external_id}, create


@bp.post("/<uuid:batch_id>/recordings")
@requires(Role.submitter)
@backpressure
@idempotent
def add_recordings(batch_id: uuid.UUID) -> dict:
    svc = services()
    with svc.sessions() as session:
        batch = visible_batch(session, batch_id, modify=True)
    if batch.status != BatchStatus.open.value:
        raise Problem(
            409,
            "batch_closed",
            f"batch {batch_id} is {batch.status}: it takes no more recordings; start a new batch (another name)",
        )
    fields = JobFields(
        submitter_id=batch.submitter_id,
        granularity=batch.granularity,
        domain=batch.domain,
        channel_roles=batch.channel_roles,
        callback_url=batch.callback_url if batch.per_job_events else None,
        batch_id=batch.id,
    )
    inputs: Iterable[Input]
    if request.mimetype == "multipart/form-data":
        inputs = _uploads(svc, fields)
    else:
        params.only()
        body = params.json_object()
        params.only_keys(body, ("urls", "s3"))
        if ("urls" in body) == ("s3" in body):
            raise Problem(400, "invalid_recordings", 'send multipart files, or JSON with "urls" or "s3" (one of them)')
        inputs = _urls(svc, fields, body["urls"]) if "urls" in body else _s3_objects(svc, fields, body["s3"])
    items = _add_each(svc, inputs)
    counts = {status: sum(1 for i in items if i["status"] == status) for status in ("queued", "duplicate", "refused")}
    return {"batch_id": str(batch_id), "counts": counts, "items": items}
