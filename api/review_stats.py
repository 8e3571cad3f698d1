"""Supervisors' figures on the review queue (``domain.review_stats``).

Admin only: they name reviewers and show each one's daily output, and the
agreement figures include items still waiting for adjudication, whose labels
reviewers must not see (blinding)."""

from __future__ import annotations

from flask import Blueprint

from api import params
from api.auth import requires
from api.services import services
from domain import review_queue
from domain.review_stats import review_stats
from models import Role

bp = Blueprint("review_stats", __name__, url_prefix="/v1/review-stats")


@bp.get("")
@requires(Role.admin)
def stats() -> dict:
    """``since``/``until`` (ISO 8601) bound the decisions counted; the backlog is always now."""
    since, until = params.when("since"), params.when("until")
    with services().sessions() as session:
        return review_stats(session, review_queue.now(), since, until)
