"""The review queue over HTTP; its rules (leases, claims, resolution) are ``domain.review_queue``."""

from __future__ import annotations

import uuid
from datetime import datetime

from flask import Blueprint, Response, request
from sqlalchemy import select

from api import segment_audio
from api.auth import current_key, requires
from api.errors import Problem, problem_response
from api.inputs import clean_text
from api.pagination import next_cursor, page
from api.services import services
from domain import review_queue
from models import Job, Result, ReviewItem, Role
from models.db import transaction

bp = Blueprint("review", __name__, url_prefix="/v1/review-items")

_STATUS = {
    review_queue.ItemNotFound: 404,
    review_queue.QueueEmpty: 404,
    review_queue.AlreadyClaimed: 409,
    review_queue.AlreadyResolved: 409,
    review_queue.NotClaimed: 409,
    review_queue.InvalidLabel: 400,
}


@bp.errorhandler(review_queue.ReviewRefused)
def _refused(exc: review_queue.ReviewRefused) -> Response:
    return problem_response(_STATUS.get(type(exc), 409), exc.code, exc.message)


def item_body(item: ReviewItem, now: datetime) -> dict:
    return {
        "id": str(item.id),
        "job_id": str(item.job_id),
        "status": review_queue.effective_status(item, now),
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
    now = review_queue.now()
    try:
        query = review_queue.listing(request.args.get("status"), now)
    except ValueError as exc:
        raise Problem(400, "invalid_status", str(exc)) from None
    query, limit = page(query, ReviewItem.created_at, ReviewItem.id, svc.settings.server.page_size_max)
    with svc.sessions() as session:
        items = session.scalars(query).all()
        return {"items": [item_body(i, now) for i in items[:limit]], "next_cursor": next_cursor(items, limit)}


def _lease_seconds() -> int:
    return services().settings.review.lease_seconds


@bp.post("/<uuid:item_id>/claim")
@requires(Role.reviewer)
def claim(item_id: uuid.UUID) -> dict:
    now = review_queue.now()
    with transaction(services().sessions) as session:
        return item_body(review_queue.claim(session, item_id, current_key().id, _lease_seconds(), now), now)


@bp.post("/claim-next")
@requires(Role.reviewer)
def claim_next() -> dict:
    now = review_queue.now()
    with transaction(services().sessions) as session:
        return item_body(review_queue.claim_next(session, current_key().id, _lease_seconds(), now), now)


@bp.post("/<uuid:item_id>/resolve")
@requires(Role.reviewer)
def resolve(item_id: uuid.UUID) -> dict:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise Problem(400, "invalid_json", 'send a JSON object {"label": ..., "note": ...}')
    note = body.get("note")
    if note is not None:
        clean_text("note", note, 4000, multiline=True)
    now = review_queue.now()
    with transaction(services().sessions) as session:
        item = review_queue.resolve(session, item_id, current_key().id, str(body.get("label")), note, now)
        return item_body(item, now)


@bp.post("/<uuid:item_id>/release")
@requires(Role.reviewer)
def release(item_id: uuid.UUID) -> dict:
    now = review_queue.now()
    with transaction(services().sessions) as session:
        return item_body(review_queue.release(session, item_id, current_key().id), now)


def _channel(value: object) -> int:
    """The segment's channel from the result's JSON (text from ``->>``); 0 when absent."""
    if value is None:
        return 0
    try:
        return int(str(value))
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
            work_dir=svc.settings.storage.work_dir,
            ffmpeg=svc.settings.storage.ffmpeg_exe(),
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
