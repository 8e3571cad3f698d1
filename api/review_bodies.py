"""What the review routes answer: a review item as its viewer may see it
(blinded for reviewers: ``domain.review_queue``) and the evidence a reviewer
needs beside the label form."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any, cast

from sqlalchemy import select
from sqlalchemy.orm import Session

from domain import review_queue
from domain.review_queue import DecisionView
from models import Batch, DecisionKind, Job, Result, ReviewItem


def decision_body(view: DecisionView) -> dict[str, Any]:
    d = view.decision
    return {
        "id": str(d.id),
        "kind": d.kind,
        "round": d.round,
        "reviewer": {"id": str(d.reviewer_id), "name": view.reviewer_name},
        "labels": d.labels,
        "note": d.note,
        "claimed_at": d.claimed_at and d.claimed_at.isoformat(),
        "decided_at": d.decided_at.isoformat(),
    }


def item_body(
    item: ReviewItem,
    at: datetime,
    *,
    viewer: uuid.UUID,
    admin: bool,
    decisions: list[DecisionView],
    external_id: str | None,
    evidence: dict | None = None,
) -> dict[str, Any]:
    """Admins see every decision; a reviewer sees only their own until the
    item is final, and then its final labels (the decisions stay with admins).
    ``external_id`` is the call's (``external_ids``): what tells calls apart in the queue."""
    this_round = [
        v for v in decisions if v.decision.round == item.round and v.decision.kind == DecisionKind.review.value
    ]
    mine = next((v.decision.labels for v in this_round if v.decision.reviewer_id == viewer), None)
    body: dict[str, Any] = {
        "id": str(item.id),
        "job_id": str(item.job_id),
        "external_id": external_id,
        "status": review_queue.effective_status(item, at),
        "reasons": item.reasons,
        "reason_details": item.reason_details,
        "segment": {
            "index": item.segment_index,
            "start": item.start_seconds,
            "end": item.end_seconds,
            "role": item.channel_role,
        },
        "domain": item.domain,
        "model_label": item.model_label,
        "model_scores": item.model_scores,
        "priority": item.priority,
        "required_decisions": item.required_decisions,
        "decisions_made": len(this_round),
        "round": item.round,
        "your_labels": mine,
        "claimed_by": item.claimed_by and str(item.claimed_by),
        "held_by_you": item.claimed_by == viewer and review_queue.effective_status(item, at) == "claimed",
        "lease_expires_at": item.lease_expires_at and item.lease_expires_at.isoformat(),
        "final_labels": item.final_labels,
        "created_at": item.created_at.isoformat(),
        "resolved_at": item.resolved_at and item.resolved_at.isoformat(),
    }
    if admin:
        body["decisions"] = [decision_body(v) for v in decisions]
    if evidence is not None:
        body["evidence"] = evidence
    return body


def external_ids(session: Session, job_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, str | None]:
    """Each job's external id (its submitter's own id for the recording), in one query."""
    return dict(session.execute(select(Job.id, Job.external_id).where(Job.id.in_(set(job_ids)))).all())


def evidence(session: Session, item: ReviewItem) -> dict[str, Any]:
    """The call around the item (external id, domain, channels) and the
    result's own segment (scores, timeline, enhancement, quality), in one query."""
    row = session.execute(
        select(
            Job.external_id,
            Job.batch_id,
            Batch.name.label("batch_name"),
            Job.domain,
            Job.duration_seconds,
            Job.channels,
            Job.channel_roles,
            Job.created_at,
            Result.model_id,
            Result.model_revision,
            Result.model_random_weights,
            Result.segments[item.segment_index],
        )
        .join(Result, Result.job_id == Job.id)
        .outerjoin(Batch, Batch.id == Job.batch_id)
        .where(Job.id == item.job_id)
    ).one()
    segment: dict[str, Any] = dict(cast("dict[str, Any] | None", row[-1]) or {})
    segment.pop("frames_key", None)  # a storage key, not evidence
    return {
        "call": {
            "external_id": row.external_id,
            "batch_id": row.batch_id and str(row.batch_id),
            "batch_name": row.batch_name,
            "domain": row.domain,
            "duration_seconds": row.duration_seconds,
            "channels": row.channels,
            "channel_roles": row.channel_roles,
            "submitted_at": row.created_at.isoformat(),
        },
        "model": {"id": row.model_id, "revision": row.model_revision, "random_weights": row.model_random_weights},
        "segment": segment,
    }
