"""The review queue over HTTP; its rules (leases, claims, double review,
blinding, history) are ``domain.review_queue``."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import get_args

from flask import Blueprint, Response, request
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from analysis.labels import EMOTION_LABELS
from api import params, segment_audio
from api.auth import current_key, requires
from api.errors import Problem, problem_response
from api.inputs import clean_text
from api.pagination import next_cursor, page
from api.review_bodies import evidence, external_ids, item_body
from api.services import services
from config.settings import ReviewFlag
from domain import batches, review_queue
from models import Batch, Job, Result, ReviewItem, Role
from models.db import transaction

bp = Blueprint("review", __name__, url_prefix="/v1/review-items")

_STATUS = {
    review_queue.ItemNotFound: 404,
    review_queue.QueueEmpty: 404,
    review_queue.AlreadyClaimed: 409,
    review_queue.AlreadyResolved: 409,
    review_queue.AlreadyDecided: 409,
    review_queue.AwaitingAdjudication: 409,
    review_queue.NotClaimed: 409,
    review_queue.NotInDisagreement: 409,
    review_queue.NotResolved: 409,
    review_queue.InvalidLabel: 400,
}
FLAGS = get_args(ReviewFlag)


# App-wide: the admin's review routes (api.review_admin) raise them too.
@bp.app_errorhandler(review_queue.ReviewRefused)
def _refused(exc: review_queue.ReviewRefused) -> Response:
    return problem_response(_STATUS.get(type(exc), 409), exc.code, exc.message)


def _viewer() -> tuple[uuid.UUID, bool]:
    key = current_key()
    return key.id, key.role == Role.admin.value


def queue_filter() -> review_queue.QueueFilter:
    """``reason`` (repeatable or comma-separated), ``domain``, ``since``/``until`` (created), ``job_id``,
    ``external_id``, ``batch_id`` (an id or a name)."""
    reasons = tuple(r for value in request.args.getlist("reason") for r in value.split(",") if r)
    if unknown := [r for r in reasons if r not in FLAGS]:
        raise Problem(400, "invalid_reason", f"unknown reason(s) {unknown}; reasons are {list(FLAGS)}")
    return review_queue.QueueFilter(
        reasons=reasons,
        domain=request.args.get("domain") or None,
        since=params.when("since"),
        until=params.when("until"),
        job_id=_uuid_arg("job_id", "a job's id"),
        external_id=request.args.get("external_id") or None,
        batch_id=_batch_arg(),
    )


def _uuid_arg(name: str, what: str) -> uuid.UUID | None:
    value = request.args.get(name) or None
    try:
        return uuid.UUID(value) if value else None
    except ValueError:
        raise Problem(400, f"invalid_{name}", f"{name} must be {what} (a UUID)") from None


def _batch_arg() -> uuid.UUID | None:
    """``batch_id``: a batch's id, or its name (a value that reads as a UUID is an id)."""
    value = request.args.get("batch_id") or None
    if value is None:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        pass
    with services().sessions() as session:
        try:
            return batches.named(session, value)
        except batches.BatchNameUnknown as exc:
            raise Problem(404, exc.code, exc.message) from None
        except batches.BatchNameAmbiguous as exc:
            raise Problem(409, exc.code, exc.message, batch_ids=[str(i) for i in exc.ids]) from None


def body_of(session: Session, item: ReviewItem, at: datetime, *, with_evidence: bool = False) -> dict:
    viewer, admin = _viewer()
    decisions = review_queue.decisions_of(session, [item.id]).get(item.id, [])
    return item_body(
        item,
        at,
        viewer=viewer,
        admin=admin,
        decisions=decisions,
        external_id=external_ids(session, [item.job_id])[item.job_id],
        evidence=evidence(session, item) if with_evidence else None,
    )


def announce(session: Session, outcome: review_queue.Outcome) -> uuid.UUID | None:
    """The decision to announce once committed: a final answer on a job with a callback (its own or its batch's)."""
    if not outcome.resolved:
        return None
    callback = session.scalar(
        select(func.coalesce(Job.callback_url, Batch.callback_url))
        .outerjoin(Batch, Batch.id == Job.batch_id)
        .where(Job.id == outcome.item.job_id)
    )
    return outcome.decision.id if callback else None


def publish_announcement(item_id: uuid.UUID, decision_id: uuid.UUID | None) -> None:
    if decision_id is not None:
        services().publisher.review_resolved(item_id, decision_id)


@bp.get("")
@requires(Role.reviewer)
def list_items() -> dict:
    svc = services()
    now = review_queue.now()
    viewer, admin = _viewer()
    try:
        query = review_queue.listing(request.args.get("status"), now, viewer, queue_filter())
    except ValueError as exc:
        raise Problem(400, "invalid_status", str(exc)) from None
    query, limit = page(query, ReviewItem.created_at, ReviewItem.id, svc.settings.server.page_size_max)
    with svc.sessions() as session:
        items = session.scalars(query).all()
        shown = items[:limit]
        decisions = review_queue.decisions_of(session, [i.id for i in shown])
        calls = external_ids(session, [i.job_id for i in shown])
        return {
            "items": [
                item_body(
                    i, now, viewer=viewer, admin=admin, decisions=decisions.get(i.id, []), external_id=calls[i.job_id]
                )
                for i in shown
            ],
            "next_cursor": next_cursor(items, limit),
        }


@bp.get("/counts")
@requires(Role.reviewer)
def counts() -> dict:
    """What waits for the caller under the filter, in all and per reason, and who
    the caller is (the page offers an admin's actions to admins only)."""
    key = current_key()
    with services().sessions() as session:
        total, reasons = review_queue.waiting_counts(session, review_queue.now(), key.id, queue_filter())
    return {"waiting": total, "reasons": reasons, "you": {"name": key.name, "role": key.role}}


@bp.get("/<uuid:item_id>")
@requires(Role.reviewer)
def get_item(item_id: uuid.UUID) -> dict:
    with services().sessions() as session:
        item = session.get(ReviewItem, item_id)
        if item is None:
            raise Problem(404, "review_item_not_found", f"no review item {item_id}")
        return body_of(session, item, review_queue.now(), with_evidence=True)


def _lease_seconds() -> int:
    return services().settings.review.lease_seconds


@bp.post("/<uuid:item_id>/claim")
@requires(Role.reviewer)
def claim(item_id: uuid.UUID) -> dict:
    now = review_queue.now()
    with transaction(services().sessions) as session:
        item = review_queue.claim(session, item_id, current_key().id, _lease_seconds(), now)
        return body_of(session, item, now, with_evidence=True)


@bp.post("/claim-next")
@requires(Role.reviewer)
def claim_next() -> dict:
    """The first item by priority within the filter (the listing's query parameters)."""
    now = review_queue.now()
    queue = queue_filter()
    with transaction(services().sessions) as session:
        item = review_queue.claim_next(session, current_key().id, _lease_seconds(), now, queue)
        return body_of(session, item, now, with_evidence=True)


def decision_input() -> tuple[list[object], str | None]:
    """``{"label": ...}`` or ``{"labels": [first, second]}`` (a dual emotion), and an optional ``note``."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise Problem(400, "invalid_json", 'send a JSON object {"labels": [...], "note": ...}')
    labels = body.get("labels", [body["label"]] if "label" in body else None)
    if not isinstance(labels, list):
        raise Problem(400, "invalid_label", f"give labels: a list of one or two of {list(EMOTION_LABELS)}")
    note = body.get("note")
    if note is not None:
        clean_text("note", note, 4000, multiline=True)  # NUL, control characters, length: 400 with a code
    return labels, note


@bp.post("/<uuid:item_id>/resolve")
@requires(Role.reviewer)
def resolve(item_id: uuid.UUID) -> dict:
    return decided(item_id, review_queue.decide)


# A decision rule of domain.review_queue: decide, adjudicate, correct.
Rule = Callable[[Session, uuid.UUID, uuid.UUID, Sequence[object], str | None, datetime], review_queue.Outcome]


def decided(item_id: uuid.UUID, rule: Rule) -> dict:
    """Apply one of the queue's decision rules to the request's labels and note, in one
    transaction; announce a final answer once it is committed."""
    labels, note = decision_input()
    now = review_queue.now()
    with transaction(services().sessions) as session:
        outcome = rule(session, item_id, current_key().id, labels, note, now)
        body, announced = body_of(session, outcome.item, now), announce(session, outcome)
    publish_announcement(item_id, announced)
    return body


@bp.post("/<uuid:item_id>/release")
@requires(Role.reviewer)
def release(item_id: uuid.UUID) -> dict:
    now = review_queue.now()
    with transaction(services().sessions) as session:
        return body_of(session, review_queue.release(session, item_id, current_key().id, now), now)


@bp.post("/<uuid:item_id>/played")
@requires(Role.reviewer)
def played(item_id: uuid.UUID) -> tuple[str, int]:
    """The page says a reviewer started playing (``{"scope": "segment|call|other|focus"}``): kept in the history."""
    body = request.get_json(silent=True)
    scope = str(body.get("scope")) if isinstance(body, dict) else ""
    with transaction(services().sessions) as session:
        review_queue.record_played(session, item_id, current_key().id, scope, review_queue.now())
    return "", 204


@bp.get("/<uuid:item_id>/history")
@requires(Role.reviewer)
def history(item_id: uuid.UUID) -> dict:
    viewer, admin = _viewer()
    with services().sessions() as session:
        return {"item_id": str(item_id), "events": review_queue.history(session, item_id, viewer, admin)}


def _channel(value: object) -> int:
    """The segment's channel from the result's JSON (text from ``->>``); 0 when absent."""
    if value is None:
        return 0
    try:
        return int(str(value))
    except (TypeError, ValueError):
        raise Problem(422, "audio_unavailable", f"the segment's channel {value!r} is not a channel number") from None


def _other_channel(channel: int, channels: int | None) -> int:
    if channels == 1:
        raise Problem(422, "no_other_channel", "the recording has one channel only")
    # Stereo calls have one other side; beyond two channels, the first that is not the segment's.
    return 1 if channel == 0 else 0


@bp.get("/<uuid:item_id>/audio")
@requires(Role.reviewer)
def audio(item_id: uuid.UUID) -> Response:
    """16 kHz 16-bit mono WAV of one channel: ``scope=segment`` (default) the
    segment with a second of context each side; ``call`` the segment's channel
    over the whole call (at most ``EMOQ_REVIEW_CALL_AUDIO_SECONDS``, centred on
    the segment); ``other`` the other channel over the same stretch. No
    database connection is held while it is cut."""
    svc = services()
    scope = request.args.get("scope", "segment")
    if scope not in ("segment", "call", "other"):
        raise Problem(400, "invalid_scope", "scope must be segment, call or other")
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
    if scope == "other":
        channel = _other_channel(channel, channels)
    if channel < 0 or (channels is not None and channel >= channels):
        raise Problem(422, "audio_unavailable", f"the recording has no channel {channel}")
    if scope == "segment":
        clip_start, seconds = segment_audio.window(start, end, recording_seconds, segment_audio.CONTEXT_SECONDS)
    else:
        clip_start, seconds = segment_audio.call_window(
            start, end, recording_seconds, svc.settings.review.call_audio_seconds
        )
    try:
        clip = segment_audio.recording_clip(
            svc.store,
            object_key=object_key,
            start=clip_start,
            seconds=seconds,
            channel=channel,
            work_dir=svc.settings.storage.work_dir,
            ffmpeg=svc.settings.storage.ffmpeg_exe(),
        )
    except segment_audio.RecordingMissing as exc:
        raise Problem(404, "recording_missing", str(exc)) from exc
    except segment_audio.AudioUnavailable as exc:
        raise Problem(422, "audio_unavailable", f"the audio could not be cut from the recording: {exc}") from exc
    response = Response(clip.wav, mimetype="audio/wav")
    # Where the clip starts in the recording (the page places the segment and the chart by it).
    response.headers["X-Emoq-Segment-Start"] = str(round(clip.start, 6))
    response.headers["X-Emoq-Channel"] = str(channel)
    response.headers["X-Emoq-Scope"] = scope
    if scope == "segment":
        response.headers["X-Emoq-Context-Seconds"] = str(segment_audio.CONTEXT_SECONDS)
    response.headers["Content-Disposition"] = f'inline; filename="review-{item_id}-{scope}.wav"'
    response.headers["Cache-Control"] = "private, no-store"  # a customer's voice
    return response
