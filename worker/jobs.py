"""One job's life in the worker, around the pipeline: claim the delivery,
fetch the recording, analyse it, store artifacts, save everything in one
transaction. Each database step is a short transaction of its own: no session
is held open while the model runs."""

from __future__ import annotations

import io
import logging
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert

from analysis.audio import AudioError
from analysis.pipeline import Analysis, InvalidChannelRoles, JobSpec, analyse
from domain import review_routing
from models import EMOTION_LABELS, Job, JobStatus, Result, ReviewItem
from models.db import transaction
from storage import ObjectMissing
from worker.context import WorkerContext

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
        if not job.start(delivery.task_id, ctx.settings.queue.max_deliveries):
            if job.task_id != delivery.task_id:
                log.info("job %s: skipping stale message %s", job.id, delivery.task_id)
            return None
        return JobSpec(
            job_id=str(job.id),
            object_key=job.object_key,
            granularity=job.granularity,
            domain=job.domain,
            channel_roles=tuple(job.channel_roles) if job.channel_roles else None,
        )


def fail_job(ctx: WorkerContext, job_id: uuid.UUID, code: str, message: str) -> None:
    with transaction(ctx.sessions) as session:
        job = session.get(Job, job_id, with_for_update=True)
        if job is not None and job.status != JobStatus.succeeded.value:
            job.fail(code, message)
    log.warning("job %s failed: %s: %s", job_id, code, message)


def release_for_retry(ctx: WorkerContext, job_id: uuid.UUID, reason: str) -> None:
    with transaction(ctx.sessions) as session:
        job = session.get(Job, job_id, with_for_update=True)
        if job is not None:
            job.release_for_retry(reason)


def fetch_recording(ctx: WorkerContext, key: str, directory: Path) -> Path:
    path = directory / "recording"
    try:
        ctx.store.download(key, path)
    except ObjectMissing as exc:
        raise JobFailed("object_missing", f"the uploaded recording {key} is no longer in storage") from exc
    return path


def frame_key(job_id: str, index: int) -> str:
    return f"frames/{job_id}/segment-{index:04d}.npy"


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


def result_values(analysis: Analysis, review_flags: frozenset[str], frame_keys: dict[int, str]) -> dict[str, Any]:
    """What a finished job stores as its result (the row, less its ids):
    ``GET /v1/jobs/{id}`` and the exports read it back as it is."""
    label, confidence = analysis.primary
    segments = []
    for s in analysis.segments:
        row = s.as_dict()
        row["frames_key"] = frame_keys.get(s.index)
        segments.append(row)
    return {
        "model_id": analysis.model.model_id,
        "model_revision": analysis.model.revision,
        "model_random_weights": analysis.model.random_weights,
        "primary_label": label,
        "primary_confidence": confidence,
        "scores": {k: float(v) for k, v in zip(EMOTION_LABELS, analysis.scores)},
        "embedding": [float(x) for x in analysis.embedding],
        "embedding_dim": int(analysis.embedding.shape[0]),
        "enhancement": {
            "policy_review_flags": sorted(review_flags),
            "calibration_version": analysis.calibration_version,
            "domain_profile": analysis.domain_profile,
            "segments_redecided": sum(
                1
                for s in analysis.segments
                if (s.decision.details.get("fear_disgust") or {}).get("redecision") == "applied"
            ),
            "model": analysis.model.as_dict(),
        },
        "flags": analysis.flags,
        "segments": segments,
        "aggregate": {**analysis.aggregate, "channel_quality": analysis.channel_quality},
        "calibration_version": analysis.calibration_version,
    }


def persist(ctx: WorkerContext, spec: JobSpec, analysis: Analysis, frame_keys: dict[int, str]) -> None:
    """Result, review items and the job's success in one transaction; a
    redelivered job finds its result already there and changes nothing."""
    review_flags = ctx.settings.review.flags_for(spec.domain)
    values = result_values(analysis, review_flags, frame_keys)
    job_id = uuid.UUID(spec.job_id)
    with transaction(ctx.sessions) as session:
        job = session.get(Job, job_id, with_for_update=True)
        if job is None or job.status == JobStatus.succeeded.value:
            return
        result_id = session.execute(
            insert(Result)
            .values(id=uuid.uuid4(), job_id=job_id, **values)
            .on_conflict_do_nothing(index_elements=[Result.job_id])
            .returning(Result.id)
        ).scalar()
        if result_id is None:
            result_id = session.execute(select(Result.id).where(Result.job_id == job_id)).scalar_one()
        for s in analysis.segments:
            item_id = uuid.uuid4()
            route = review_routing.route(item_id, s.decision.flags, spec.domain, ctx.settings.review)
            if route is None:
                continue
            session.execute(
                insert(ReviewItem)
                .values(
                    id=item_id,
                    job_id=job_id,
                    result_id=result_id,
                    segment_index=s.index,
                    start_seconds=s.start,
                    end_seconds=s.end,
                    channel_role=s.role,
                    domain=spec.domain,
                    embedding=[float(x) for x in s.embedding],
                    model_scores={k: float(v) for k, v in zip(EMOTION_LABELS, s.raw_scores)},
                    model_label=s.decision.label,
                    reasons=route.reasons,
                    priority=route.priority,
                    required_decisions=route.required_decisions,
                    reason_details={
                        "flags": s.decision.flags,
                        "enhancement": s.decision.details,
                        "enhanced_scores": s.decision.scores_dict(),
                        "quality": values["segments"][s.index]["quality"],
                    },
                    status="pending",
                )
                .on_conflict_do_nothing(constraint="uq_review_items_result_segment")
            )
        job.succeed(
            duration_seconds=analysis.audio.duration_seconds,
            sample_rate=analysis.audio.source_sample_rate,
            channels=analysis.audio.source_channels,
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
            path = fetch_recording(ctx, spec.object_key, Path(tmp))
            try:
                analysis = analyse(path, spec, ctx.engine, centroids, ctx.settings, ctx.domain_profile(spec.domain))
            except AudioError as exc:
                raise JobFailed(exc.code, str(exc)) from exc
            except InvalidChannelRoles as exc:
                raise JobFailed("invalid_channels", str(exc)) from exc
        frame_keys = store_artifacts(ctx, spec, analysis)
        persist(ctx, spec, analysis, frame_keys)
    except JobFailed as exc:
        fail_job(ctx, delivery.job_id, exc.code, exc.message)
