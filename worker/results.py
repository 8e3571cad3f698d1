"""The rows a finished analysis becomes: plain values, no database, so the
worker (``worker.jobs.persist``), the golden-result test and the benchmarks
build exactly the same thing."""

from __future__ import annotations

import uuid
from typing import Any

from analysis.labels import EMOTION_LABELS
from analysis.pipeline import Analysis, JobSpec, quality_dict
from config.settings import ReviewSettings
from domain import review_routing


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


def review_item_values(analysis: Analysis, spec: JobSpec, review: ReviewSettings) -> list[dict[str, Any]]:
    """One row per segment that the review routing puts in front of people
    (domain.review_routing: which, in what order, to how many)."""
    items = []
    for s in analysis.segments:
        item_id = uuid.uuid4()
        route = review_routing.route(item_id, s.decision.flags, spec.domain, review)
        if route is None:
            continue
        items.append(
            {
                "id": item_id,
                "segment_index": s.index,
                "start_seconds": s.start,
                "end_seconds": s.end,
                "channel_role": s.role,
                "domain": spec.domain,
                "embedding": [float(x) for x in s.embedding],
                "model_scores": {k: float(v) for k, v in zip(EMOTION_LABELS, s.raw_scores)},
                "model_label": s.decision.label,
                "reasons": route.reasons,
                "priority": route.priority,
                "required_decisions": route.required_decisions,
                "reason_details": {
                    "flags": s.decision.flags,
                    "enhancement": s.decision.details,
                    "enhanced_scores": s.decision.scores_dict(),
                    "quality": quality_dict(s.quality),
                },
                "status": "pending",
            }
        )
    return items
