"""The human answers in a job's result, added when it is read: the stored
result (what the model said) never changes, and a correction shows up at once.

Each segment gets ``review`` (its review item, if any: status, reasons, the
final labels once resolved, who resolved it, when) and ``final`` (the human
labels when resolved, the model's label otherwise). The recording's
``final`` follows the model's own rule for its primary label — the
duration-weighted mean of the segments' scores over the segments with speech
(all segments when none has speech), then the top label — with each
human-resolved segment's scores replaced by its labels (1 for one label, 0.5
each for two; a tie goes to the first in the 9 labels' order, as the model's
argmax does). Without a human answer among those segments it is the model's
primary as stored."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, select
from sqlalchemy.orm import Session

from analysis.labels import EMOTION_LABELS
from domain.review_queue import status_at
from models import ApiKey, Job, ReviewItem, ReviewStatus

REVIEW_FILTERS = ("pending", "resolved")


@dataclass(frozen=True)
class SegmentReview:
    item_id: uuid.UUID
    status: str
    reasons: list[str]
    labels: list[str] | None  # final labels, once resolved
    reviewer: str | None
    resolved_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "item_id": str(self.item_id),
            "status": self.status,
            "reasons": self.reasons,
            "labels": self.labels,
            "reviewer": self.reviewer,
            "resolved_at": self.resolved_at and self.resolved_at.isoformat(),
        }


Reviews = dict[int, SegmentReview]  # by segment index


def reviews_by_job(session: Session, job_ids: Iterable[uuid.UUID], at: datetime) -> dict[uuid.UUID, Reviews]:
    ids = list(job_ids)
    found: dict[uuid.UUID, Reviews] = {}
    if not ids:
        return found
    rows = session.execute(
        # The columns it needs only: an item row also holds the segment's embedding.
        select(
            ReviewItem.id,
            ReviewItem.job_id,
            ReviewItem.segment_index,
            ReviewItem.status,
            ReviewItem.lease_expires_at,
            ReviewItem.reasons,
            ReviewItem.final_labels,
            ReviewItem.resolved_at,
            ApiKey.name,
        )
        .outerjoin(ApiKey, ApiKey.id == ReviewItem.resolved_by)
        .where(ReviewItem.job_id.in_(ids))
    ).all()
    for row in rows:
        resolved = row.status == ReviewStatus.resolved.value
        found.setdefault(row.job_id, {})[row.segment_index] = SegmentReview(
            item_id=row.id,
            status=status_at(row.status, row.lease_expires_at, at),
            reasons=row.reasons,
            labels=row.final_labels if resolved else None,
            reviewer=row.name if resolved else None,
            resolved_at=row.resolved_at if resolved else None,
        )
    return found


def job_filter(value: str) -> ColumnElement[bool]:
    """``pending``: a review item of the job waits for people; ``resolved``: it had
    review items and all have their final answer."""
    of_job = ReviewItem.job_id == Job.id
    open_item = exists().where(of_job, ReviewItem.status != ReviewStatus.resolved.value)
    if value == "pending":
        return open_item
    if value == "resolved":
        return and_(exists().where(of_job), ~open_item)
    raise ValueError(f"review must be one of {list(REVIEW_FILTERS)}")


def _vector(labels: list[str]) -> list[float]:
    return [1.0 / len(labels) if label in labels else 0.0 for label in EMOTION_LABELS]


def _has_speech(segment: dict) -> bool:
    return "no_speech" not in ((segment.get("quality") or {}).get("flags") or [])


def final_primary(segments: list[dict], model_primary: dict[str, Any]) -> dict[str, Any]:
    """The recording's label by the model's rule, with human answers in place of scores (see above)."""
    basis = [s for s in segments if _has_speech(s)] or segments
    human = [s for s in basis if s["final"]["source"] == "human"]
    if not human:
        return {**model_primary, "source": "model", "human_segments": 0}
    total = [0.0] * len(EMOTION_LABELS)
    for s in basis:
        if s["final"]["source"] == "human":
            vector = _vector(s["final"]["labels"])
        elif isinstance(s.get("scores"), dict):
            vector = [float(s["scores"].get(label, 0.0)) for label in EMOTION_LABELS]
        else:  # an older result without per-segment scores: its label stands for them
            vector = _vector(s["final"]["labels"])
        weight = max(float(s.get("end", 0.0)) - float(s.get("start", 0.0)), 0.0)
        total = [t + weight * v for t, v in zip(total, vector)]
    mass = sum(total)
    if mass <= 0:  # zero-length segments only: every segment counts once
        total = [sum(_vector(s["final"]["labels"])[i] for s in basis) for i in range(len(EMOTION_LABELS))]
        mass = sum(total)
    top = max(range(len(EMOTION_LABELS)), key=lambda i: total[i])
    return {
        "label": EMOTION_LABELS[top],
        "confidence": total[top] / mass,
        "source": "human",
        "human_segments": len(human),
    }


def with_reviews(result: dict[str, Any], reviews: Reviews) -> dict[str, Any]:
    """A result body (``api.jobs.result_body``) with ``review`` and ``final`` per
    segment and ``final`` for the recording; ``result`` itself is left alone."""
    segments = []
    for position, segment in enumerate(result["segments"]):
        review = reviews.get(segment.get("index", position))
        model_label = (segment.get("primary") or {}).get("label")
        final: dict[str, Any]
        if review is not None and review.labels:
            final = {"label": review.labels[0], "labels": review.labels, "source": "human"}
        else:
            final = {"label": model_label, "labels": [model_label] if model_label else [], "source": "model"}
        segments.append({**segment, "review": review.as_dict() if review else None, "final": final})
    return {**result, "segments": segments, "final": final_primary(segments, result["primary"])}


def review_summary(reviews: Reviews) -> dict[str, int] | None:
    if not reviews:
        return None
    resolved = sum(1 for r in reviews.values() if r.status == ReviewStatus.resolved.value)
    return {"items": len(reviews), "resolved": resolved, "open": len(reviews) - resolved}
