"""Which segments go to people, in which order, and to how many.

* A segment goes to review when one of its flags is a review flag of the job's
  domain (``EMOQ_REVIEW_FLAGS``, ``EMOQ_REVIEW_FLAGS_BY_DOMAIN``). A segment
  with no speech never does, unless the domain's flags name ``no_speech``
  itself: there is nothing for a person to hear, and such segments are
  reported ``unknown`` anyway (its other flags, such as ``too_short`` or
  ``low_confidence``, follow from the silence).
* Its priority is the place of its first reason in ``EMOQ_REVIEW_PRIORITY``
  (lower goes first); reasons not listed come after all listed ones.
* A share ``EMOQ_REVIEW_DOUBLE_FRACTION`` of items needs two reviewers. The
  choice is a hash of the item's id, so it is the same whichever worker makes
  the item and can be recomputed later.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from config.settings import ReviewSettings

NO_SPEECH = "no_speech"


@dataclass(frozen=True)
class Route:
    reasons: list[str]
    priority: int
    required_decisions: int


def review_reasons(flags: Sequence[str], review_flags: frozenset[str]) -> list[str]:
    if NO_SPEECH in flags and NO_SPEECH not in review_flags:
        return []
    return [f for f in flags if f in review_flags]


def priority(reasons: Sequence[str], order: Sequence[str]) -> int:
    return min((order.index(r) for r in reasons if r in order), default=len(order))


def required_decisions(item_id: uuid.UUID, double_fraction: float) -> int:
    share = int.from_bytes(hashlib.sha256(item_id.bytes).digest()[:8], "big") / 2**64
    return 2 if share < double_fraction else 1


def route(item_id: uuid.UUID, flags: Sequence[str], domain: str | None, settings: ReviewSettings) -> Route | None:
    """None when the segment stays with the model."""
    reasons = review_reasons(flags, settings.flags_for(domain))
    if not reasons:
        return None
    return Route(
        reasons=reasons,
        priority=priority(reasons, settings.priority),
        required_decisions=required_decisions(item_id, settings.double_fraction),
    )
