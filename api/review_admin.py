"""An admin's hand on review decisions: adjudicate a disagreement, correct a
final answer, reopen an item for a new round. The rules are ``domain.review_queue``."""

from __future__ import annotations

import uuid

from flask import Blueprint, request

from api.auth import current_key, requires
from api.errors import Problem
from api.review import body_of, decided
from api.services import services
from domain import review_queue
from models import Role
from models.db import transaction

bp = Blueprint("review_admin", __name__, url_prefix="/v1/review-items")


@bp.post("/<uuid:item_id>/adjudicate")
@requires(Role.admin)
def adjudicate(item_id: uuid.UUID) -> dict:
    """``{"labels": [...], "note": ...}`` on an item whose two reviewers disagreed."""
    return decided(item_id, review_queue.adjudicate)


@bp.post("/<uuid:item_id>/correct")
@requires(Role.admin)
def correct(item_id: uuid.UUID) -> dict:
    """``{"labels": [...], "note": ...}`` replaces a resolved item's final labels."""
    return decided(item_id, review_queue.correct)


@bp.post("/<uuid:item_id>/reopen")
@requires(Role.admin)
def reopen(item_id: uuid.UUID) -> dict:
    """``{"note": ...}`` (optional): the item goes back to the queue for a new round."""
    body = request.get_json(silent=True) or {}
    note = body.get("note") if isinstance(body, dict) else None
    if note is not None and not isinstance(note, str):
        raise Problem(400, "invalid_note", "note must be a string of at most 4000 characters")
    now = review_queue.now()
    with transaction(services().sessions) as session:
        return body_of(session, review_queue.reopen(session, item_id, current_key().id, note, now), now)
