"""One job's life in the worker, around the pipeline: claim the delivery,
fetch the recording, analyse it, store artifacts, save everything in one
transaction. Each database step is a short transaction of its own: no session
is held open while the model runs."""

from __future__ import annotations

import io
import logging
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert

from analysis.audio import AudioError
from analysis.pipeline import Analysis, InvalidChannelRoles, JobSpec, analyse
from domain.erasure import frames_prefix
from domain.recordings import RecordingRefused, inspect
from models import Job, JobStatus, Result, ReviewItem
from models.db import transaction
from storage import ObjectMissing
from worker import telemetry
from worker.context import WorkerContext
from worker.imports import ImportRefused, fetch
from worker.results import result_values, review_item_values

log = logging.getLogger(__name__)


class JobFailed(Exception):
    """A permanent failure: the job fails with this code and is not retried."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Delivery:
    job_id: uuid.UUID
    task_id: uuid.UUID


def start_job(ctx: WorkerContext, delivery: Delivery) -> JobSpec | None:
    """Mark the job running and count the delivery; None when this delivery must not run."""
    with transaction(ctx.sessions) as session:
        job = session.get(Job, delivery.job_id, with_for_update=True)
        if job is None:
            return None
        was_finished = job.finished
        if job.start(delivery.task_id, ctx.settings.queue.max_deliveries):
            return JobSpec(
                job_id=str(job.id),
                object_key=job.object_key,
                granularity=job.granularity,
                domain=job.domain,
                channel_roles=tuple(job.channel_roles) if job.channel_roles else None,
                # An import not fetched yet has no content hash.
                source=job.source if job.sha256 is None else None,
            )
        if job.task_id != delivery.task_id:
            log.info("job %s: skipping stale message %s", job.id, delivery.task_id)
    if job.finished and not was_finished:  # lost once too often: it failed as worker_lost just now
        telemetry.job_finished(job)
    return None


def fail_job(ctx: WorkerContext, job_id: uuid.UUID, code: str, message: str) -> None:
    with transaction(ctx.sessions) as session:
        job = session.get(Job, job_id, with_for_update=True)
        if job is None or job.status == JobStatus.succeeded.value or job.deleted_at is not None:
            return
        job.fail(code, message)
    log.warning("job %s failed: %s: %s", job_id, code, message)
    telemetry.job_finished(job)


def release_for_retry(ctx: WorkerContext, job_id: uuid.UUID, reason: str) -> None:
    with transaction(ctx.sessions) as session:
        job = session.get(Job, job_id, with_for_update=True)
        if job is not None:
            job.release_for_retry(reason)


def fetch_recording(ctx: WorkerContext, spec: JobSpec, directory: Path) -> Path:
    path = directory / "recording"
    if spec.source is not None:
        import_recording(ctx, spec, spec.source, path)
        return path
    try:
        ctx.store.download(spec.object_key, path)
    except ObjectMissing as exc:
        raise JobFailed("object_missing", f"the uploaded recording {spec.object_key} is no longer in storage") from exc
    return path


def import_recording(ctx: WorkerContext, spec: JobSpec, source: str, path: Path) -> None:
    """Fetch an imported recording, check it as an upload, keep our own copy and
    record what it is; a redelivery after this finds the hash and downloads the copy."""
    try:
        with path.open("wb") as out:
            sha256, size = fetch(source, out, ctx.store, ctx.settings)
        recording = inspect(path, sha256, size, ctx.settings)
    except (ImportRefused, RecordingRefused) as exc:
        raise JobFailed(exc.code, exc.message) from exc
    with path.open("rb") as fh:
        ctx.store.put_stream(spec.object_key, fh, size, recording.content_type)
    with transaction(ctx.sessions) as session:
        job = session.get(Job, uuid.UUID(spec.job_id), with_for_update=True)
        if job is not None:
            job.sha256, job.size_bytes, job.content_type = sha256, size, recording.content_type
            job.duration_seconds, job.sample_rate, job.channels = (
                recording.duration_seconds,
                recording.sample_rate,
                recording.channels,
            )


def frame_key(job_id: str, index: int) -> str:
    return f"{frames_prefix(job_id)}segment-{index:04d}.npy"


def store_artifacts(ctx: WorkerContext, spec: JobSpec, analysis: Analysis) -> dict[int, str]:
    """Frame features as .npy per segment; deterministic keys keep a redelivery idempotent."""
    keys: dict[int, str] = {}
    for segment in analysis.segments:
        if segment.frames is None:
            continue
        buffer = io.BytesIO()
        np.save(buffer, segment.frames.astype(np.float32))
        keys[segment.index] = frame_key(spec.job_id, segment.index)
        ctx.store.put_bytes(keys[segment.index], buffer.getvalue())
    return keys


def persist(
    ctx: WorkerContext,
    spec: JobSpec,
    analysis: Analysis,
    frame_keys: dict[int, str],
    analysis_seconds: float | None = None,
) -> None:
    """Result, review items and the job's success in one transaction; a
    redelivered job finds its result already there and changes nothing."""
    review_flags = ctx.settings.review.flags_for(spec.domain)
    values = result_values(analysis, review_flags, frame_keys)
    items = review_item_values(analysis, spec, ctx.settings.review)
    job_id = uuid.UUID(spec.job_id)
    with transaction(ctx.sessions) as session:
        job = session.get(Job, job_id, with_for_update=True)
        if job is None or job.status == JobStatus.succeeded.value:
            return
        if job.deleted_at is not None:
            # Erased while it was analysed: the erasure could not see the frame
            # files written since, so they go now, and nothing is saved.
            ctx.store.remove_many(list(frame_keys.values()))
            log.info("job %s was erased during analysis; result discarded", job_id)
            return
        result_id = session.execute(
            insert(Result)
            .values(id=uuid.uuid4(), job_id=job_id, **values)
            .on_conflict_do_nothing(index_elements=[Result.job_id])
            .returning(Result.id)
        ).scalar()
        if result_id is None:
            result_id = session.execute(select(Result.id).where(Result.job_id == job_id)).scalar_one()
        for item in items:
            session.execute(
                insert(ReviewItem)
                .values(job_id=job_id, result_id=result_id, **item)
                .on_conflict_do_nothing(constraint="uq_review_items_result_segment")
            )
        job.succeed(
            duration_seconds=analysis.audio.duration_seconds,
            sample_rate=analysis.audio.source_sample_rate,
            channels=analysis.audio.source_channels,
        )
    telemetry.job_finished(
        job,
        audio_seconds=analysis.audio.duration_seconds,
        segments=len(analysis.segments),
        analysis_seconds=analysis_seconds,
    )


def run_job(ctx: WorkerContext, delivery: Delivery) -> None:
    """Raises for transient failures (storage, database, broker) so the task retries."""
    spec = start_job(ctx, delivery)
    if spec is None:
        return
    try:
        if ctx.engine is None:
            raise JobFailed("model_unavailable", ctx.model_error or "no model loaded")
        centroids = ctx.centroids()
        ctx.settings.storage.work_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=ctx.settings.storage.work_dir) as tmp:
            path = fetch_recording(ctx, spec, Path(tmp))
            profile = ctx.domain_profile(spec.domain)
            started = time.monotonic()
            try:
                analysis = analyse(path, spec, ctx.engine, centroids, ctx.settings, profile)
            except AudioError as exc:
                raise JobFailed(exc.code, str(exc)) from exc
            except InvalidChannelRoles as exc:
                raise JobFailed("invalid_channels", str(exc)) from exc
            analysis_seconds = time.monotonic() - started
        frame_keys = store_artifacts(ctx, spec, analysis)
        persist(ctx, spec, analysis, frame_keys, analysis_seconds)
    except JobFailed as exc:
        fail_job(ctx, delivery.job_id, exc.code, exc.message)
