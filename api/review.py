"""The review queue. A claim is a lease taken in one short transaction with
``FOR UPDATE SKIP LOCKED``: nothing stays open while a person listens, two
reviewers never hold one item, and an expired lease puts the item back."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

from flask import Blueprint, Response, request
from sqlalchemy import and_, or_, select

from api import segment_audio
from api.auth import current_key, requires
from api.errors import Problem
from api.pagination import next_cursor, page
from api.services import services
from models import EMOTION_LABELS, Job, Result, ReviewItem, ReviewStatus, Role
from models.db import transaction

bp = Blueprint("review", __name__, url_prefix="/v1/review-items")


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _claimable(now: datetime):
    return or_(
        ReviewItem.status == ReviewStatus.pending.value,
        and_(ReviewItem.status == ReviewStatus.claimed.value, ReviewItem.lease_expires_at < now),
    )


def effective_status(item: ReviewItem, now: datetime) -> str:
    if item.status == ReviewStatus.claimed.value and item.lease_expires_at and item.lease_expires_at < now:
        return ReviewStatus.pending.value
    return item.status


def item_body(item: ReviewItem, now: datetime) -> dict:
    return {
        "id": str(item.id),
        "job_id": str(item.job_id),
        "status": effective_status(item, now),
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
        "claimed_by": item.claimed_by and str(item.claimed_by),
        "lease_expires_at": item.lease_expires_at and item.lease_expires_at.isoformat(),
        "resolved_label": item.resolved_label,
        "note": item.note,
        "created_at": item.created_at.isoformat(),
        "resolved_at": item.resolved_at and item.resolved_at.isoformat(),
    }


@bp.get("")
@requires(Role.reviewer)
def list_items() -> dict:
    svc = services()
    now = _now()
    query = select(ReviewItem)
    status = request.args.get("status")
    if status == ReviewStatus.pending.value:
        query = query.where(_claimable(now))
    elif status == ReviewStatus.claimed.value:
        query = query.where(ReviewItem.status == status, ReviewItem.lease_expires_at >= now)
    elif status == ReviewStatus.resolved.value:
        query = query.where(ReviewItem.status == status)
    elif status:
        raise Problem(400, "invalid_status", "status must be pending, claimed or resolved")
    query, limit = page(query, ReviewItem.created_at, ReviewItem.id, svc.settings.page_size_max)
    with svc.sessions() as session:
        items = session.scalars(query).all()
        return {"items": [item_body(i, now) for i in items[:limit]], "next_cursor": next_cursor(items, limit)}


def _lease(item: ReviewItem, now: datetime) -> None:
    item.status = ReviewStatus.claimed.value
    item.claimed_by = current_key().id
    item.claimed_at = now
    item.lease_expires_at = now + timedelta(seconds=services().settings.review_lease_seconds)


@bp.post("/<uuid:item_id>/claim")
@requires(Role.reviewer)
def claim(item_id: uuid.UUID) -> dict:
    now = _now()
    with transaction(services().sessions) as session:
        item = session.scalar(
            select(ReviewItem)
            .where(ReviewItem.id == item_id, _claimable(now))
            .with_for_update(skip_locked=True)
        )
        if item is None:
            if session.get(ReviewItem, item_id) is None:
                raise Problem(404, "review_item_not_found", f"no review item {item_id}")
            raise Problem(409, "already_claimed", "another reviewer holds this item, or it is resolved")
        _lease(item, now)
        return item_body(item, now)


@bp.post("/claim-next")
@requires(Role.reviewer)
def claim_next() -> dict:
    """Take the oldest claimable item: what a reviewer's 'next' button does."""
    now = _now()
    with transaction(services().sessions) as session:
        item = session.scalar(
            select(ReviewItem)
            .where(_claimable(now))
            .order_by(ReviewItem.created_at, ReviewItem.id)
            .limit(1)
            .with_for_update(skip_locked=True)
        )
        if item is None:
            raise Problem(404, "queue_empty", "no review item is waiting")
        _lease(item, now)
        return item_body(item, now)


@bp.post("/<uuid:item_id>/resolve")
@requires(Role.reviewer)
def resolve(item_id: uuid.UUID) -> dict:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise Problem(400, "invalid_json", "send a JSON object {\"label\": ..., \"note\": ...}")
    label = body.get("label")
    note = body.get("note")
    if label not in EMOTION_LABELS:
        raise Problem(400, "invalid_label", f"label must be one of {list(EMOTION_LABELS)}")
    if note is not None and (not isinstance(note, str) or len(note) > 4000):
        raise Problem(400, "invalid_note", "note must be a string of at most 4000 characters")
    now = _now()
    me = current_key()
    with transaction(services().sessions) as session:
        item = session.get(ReviewItem, item_id, with_for_update=True)
        if item is None:
            raise Problem(404, "review_item_not_found", f"no review item {item_id}")
        if item.status == ReviewStatus.resolved.value:
            raise Problem(409, "already_resolved", "this item was resolved already")
        holds_lease = (
            item.status == ReviewStatus.claimed.value and item.claimed_by == me.id and item.lease_expires_at >= now
        )
        if not holds_lease:
            raise Problem(409, "not_claimed", "claim the item first (or your lease expired)")
        item.status = ReviewStatus.resolved.value
        item.resolved_by = me.id
        item.resolved_label = label
        item.note = note
        item.resolved_at = now
        return item_body(item, now)


@bp.post("/<uuid:item_id>/release")
@requires(Role.reviewer)
def release(item_id: uuid.UUID) -> dict:
    now = _now()
    with transaction(services().sessions) as session:
        item = session.get(ReviewItem, item_id, with_for_update=True)
        if item is None:
            raise Problem(404, "review_item_not_found", f"no review item {item_id}")
        if item.status != ReviewStatus.claimed.value or item.claimed_by != current_key().id:
            raise Problem(409, "not_claimed", "you do not hold this item")
        item.status = ReviewStatus.pending.value
        item.claimed_by = item.claimed_at = item.lease_expires_at = None
        return item_body(item, now)


def _channel(value: object) -> int:
    """The segment's channel from the result's JSON (text from ``->>``); 0 when absent."""
    if value is None:
        return 0
    try:
        return int(value)
    except (TypeError, ValueError):
        raise Problem(422, "audio_unavailable", f"the segment's channel {value!r} is not a channel number") from None


@bp.get("/<uuid:item_id>/audio")
@requires(Role.reviewer)
def audio(item_id: uuid.UUID) -> Response:
    """The item's segment with a second of context each side, on its own channel only,
    as 16 kHz 16-bit mono WAV. No database connection is held while it is cut."""
    svc = services()
    with svc.sessions() as session:
        row = session.execute(
            select(
                ReviewItem.start_seconds,
                ReviewItem.end_seconds,
                Job.object_key,
                Job.duration_seconds,
                Job.channels,
                # results.segments is a JSON list in segment order: segments -> index ->> 'channel'.
                Result.segments.op("->")(ReviewItem.segment_index).op("->>")("channel"),
            )
            .join(Job, Job.id == ReviewItem.job_id)
            .join(Result, Result.id == ReviewItem.result_id)
            .where(ReviewItem.id == item_id)
        ).one_or_none()
    if row is None:
        raise Problem(404, "review_item_not_found", f"no review item {item_id}")
    start, end, object_key, recording_seconds, channels, channel_value = row
    channel = _channel(channel_value)
    if channel < 0 or (channels is not None and channel >= channels):
        raise Problem(422, "audio_unavailable", f"the recording has no channel {channel}")
    try:
        clip = segment_audio.segment_clip(
            svc.store,
            object_key=object_key,
            start=start,
            end=end,
            channel=channel,
            recording_seconds=recording_seconds,
            work_dir=svc.settings.work_dir,
            ffmpeg=svc.settings.ffmpeg_exe(),
        )
    except segment_audio.RecordingMissing as exc:
        raise Problem(404, "recording_missing", str(exc)) from exc
    except segment_audio.AudioUnavailable as exc:
        raise Problem(422, "audio_unavailable", f"the segment could not be cut from the recording: {exc}") from exc
    response = Response(clip.wav, mimetype="audio/wav")
    response.headers["X-Emoq-Segment-Start"] = str(round(clip.start, 6))
    response.headers["X-Emoq-Context-Seconds"] = str(segment_audio.CONTEXT_SECONDS)
    response.headers["Content-Disposition"] = f'inline; filename="review-{item_id}.wav"'
    response.headers["Cache-Control"] = "private, no-store"  # a customer's voice
    return response
