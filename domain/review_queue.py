"""The review queue's rules. A claim is a lease taken in one short
transaction with ``FOR UPDATE SKIP LOCKED``: nothing stays open while a
person listens, two reviewers never hold one item, and an expired lease puts
the item back. The API's views call one function each.

Quality control: an item needs one decision, or two from different people
(``required_decisions``, chosen when it was made: ``domain.review_routing``).
A reviewer never decides an item twice in one round and never sees another
reviewer's labels before the item is final (the API's bodies and the
history follow :func:`visible_details`). Two decisions agree when their first
labels are equal; the final labels are that label, plus a second label when
both named the same one. Two that disagree wait for an admin's adjudication.
An admin may correct a final answer or reopen the item for a new round;
every step is appended to the item's events and nothing is overwritten."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, Select, and_, exists, func, or_, select
from sqlalchemy.orm import Session

from analysis.labels import EMOTION_LABELS
from models import (
    ApiKey,
    DecisionKind,
    Job,
    ReviewDecision,
    ReviewEvent,
    ReviewEventKind,
    ReviewItem,
    ReviewStatus,
)

MAX_NOTE = 4000
PLAY_SCOPES = ("segment", "call", "other", "focus")


class ReviewRefused(Exception):
    """A queue rule said no; ``code`` is stable, the message is for people."""

    code = "review_refused"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ItemNotFound(ReviewRefused):
    code = "review_item_not_found"


class QueueEmpty(ReviewRefused):
    code = "queue_empty"


class AlreadyClaimed(ReviewRefused):
    code = "already_claimed"


class AlreadyResolved(ReviewRefused):
    code = "already_resolved"


class AlreadyDecided(ReviewRefused):
    code = "already_decided"


class AwaitingAdjudication(ReviewRefused):
    code = "awaiting_adjudication"


class NotClaimed(ReviewRefused):
    code = "not_claimed"


class NotInDisagreement(ReviewRefused):
    code = "not_in_disagreement"


class NotResolved(ReviewRefused):
    code = "not_resolved"


class InvalidLabel(ReviewRefused):
    code = "invalid_label"


def now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class QueueFilter:
    """What a reviewer chose to work on; every field narrows the queue."""

    reasons: tuple[str, ...] = ()
    domain: str | None = None
    since: datetime | None = None  # created at or after
    until: datetime | None = None  # created before
    job_id: uuid.UUID | None = None
    external_id: str | None = None
    batch_id: uuid.UUID | None = None

    def apply(self, query: Select) -> Select:
        if self.reasons:
            query = query.where(ReviewItem.reasons.overlap(list(self.reasons)))
        if self.domain is not None:
            query = query.where(ReviewItem.domain == self.domain)
        if self.since is not None:
            query = query.where(ReviewItem.created_at >= self.since)
        if self.until is not None:
            query = query.where(ReviewItem.created_at < self.until)
        if self.job_id is not None:
            query = query.where(ReviewItem.job_id == self.job_id)
        if self.external_id is not None:
            query = query.where(ReviewItem.job_id.in_(select(Job.id).where(Job.external_id == self.external_id)))
        if self.batch_id is not None:
            query = query.where(ReviewItem.job_id.in_(select(Job.id).where(Job.batch_id == self.batch_id)))
        return query


@dataclass(frozen=True)
class Outcome:
    """What a decision did: ``resolved`` when the item's answer became (or changed as) final."""

    item: ReviewItem
    decision: ReviewDecision
    resolved: bool


def claimable(at: datetime) -> ColumnElement[bool]:
    return or_(
        ReviewItem.status == ReviewStatus.pending.value,
        and_(ReviewItem.status == ReviewStatus.claimed.value, ReviewItem.lease_expires_at < at),
    )


def decided_by(reviewer: uuid.UUID) -> ColumnElement[bool]:
    """The reviewer gave a review decision in the item's current round."""
    return exists().where(
        ReviewDecision.item_id == ReviewItem.id,
        ReviewDecision.round == ReviewItem.round,
        ReviewDecision.reviewer_id == reviewer,
        ReviewDecision.kind == DecisionKind.review.value,
    )


def status_at(status: str, lease_expires_at: datetime | None, at: datetime) -> str:
    """An expired lease reads as pending, before any sweep has touched the row."""
    if status == ReviewStatus.claimed.value and lease_expires_at and lease_expires_at < at:
        return ReviewStatus.pending.value
    return status


def effective_status(item: ReviewItem, at: datetime) -> str:
    return status_at(item.status, item.lease_expires_at, at)


def listing(status: str | None, at: datetime, viewer: uuid.UUID, queue: QueueFilter | None = None) -> Select:
    """``pending`` is what the viewer may claim: waiting, and not decided by them already."""
    query = (queue or QueueFilter()).apply(select(ReviewItem))
    if status == ReviewStatus.pending.value:
        return query.where(claimable(at), ~decided_by(viewer))
    if status == ReviewStatus.claimed.value:
        return query.where(ReviewItem.status == status, ReviewItem.lease_expires_at >= at)
    if status in (ReviewStatus.resolved.value, ReviewStatus.disagreement.value):
        return query.where(ReviewItem.status == status)
    if status:
        raise ValueError("status must be pending, claimed, resolved or disagreement")
    return query


def waiting_counts(session: Session, at: datetime, viewer: uuid.UUID, queue: QueueFilter) -> tuple[int, dict[str, int]]:
    """Items waiting for the viewer under the filter, and per reason under the
    filter's other fields (an item with two reasons counts under both)."""
    waiting = claimable(at), ~decided_by(viewer)
    total = session.scalar(queue.apply(select(func.count()).select_from(ReviewItem)).where(*waiting))
    ids = replace(queue, reasons=()).apply(select(ReviewItem.id)).where(*waiting)
    rows = session.execute(
        select(func.unnest(ReviewItem.reasons).label("reason"), func.count())
        .where(ReviewItem.id.in_(ids))
        .group_by("reason")
        .order_by("reason")
    ).all()
    return total or 0, {r: n for r, n in rows}


def _event(
    session: Session,
    item: ReviewItem,
    kind: ReviewEventKind,
    actor: uuid.UUID | None,
    at: datetime,
    **details: object,
) -> None:
    session.add(ReviewEvent(item_id=item.id, kind=kind.value, actor_id=actor, at=at, details=details))


def _lease(session: Session, item: ReviewItem, reviewer: uuid.UUID, at: datetime, lease_seconds: int) -> ReviewItem:
    if item.status == ReviewStatus.claimed.value and item.lease_expires_at is not None:
        # Expired (only those are claimable): the earlier holder's lease ends in the history.
        _event(session, item, ReviewEventKind.lease_expired, item.claimed_by, item.lease_expires_at)
    item.status = ReviewStatus.claimed.value
    item.claimed_by = reviewer
    item.claimed_at = at
    item.lease_expires_at = at + timedelta(seconds=lease_seconds)
    _event(session, item, ReviewEventKind.claimed, reviewer, at, lease_expires_at=item.lease_expires_at.isoformat())
    return item


def _holds_lease(item: ReviewItem, reviewer: uuid.UUID, at: datetime) -> bool:
    return (
        item.status == ReviewStatus.claimed.value
        and item.claimed_by == reviewer
        and item.lease_expires_at is not None
        and item.lease_expires_at >= at
    )


def _refuse_closed(item: ReviewItem) -> None:
    if item.status == ReviewStatus.resolved.value:
        raise AlreadyResolved("this item was resolved already")
    if item.status == ReviewStatus.disagreement.value:
        raise AwaitingAdjudication("two reviewers disagreed on this item; an admin adjudicates it")


def _has_decided(session: Session, item: ReviewItem, reviewer: uuid.UUID) -> bool:
    return bool(session.scalar(select(decided_by(reviewer)).where(ReviewItem.id == item.id)))


def claim(session: Session, item_id: uuid.UUID, reviewer: uuid.UUID, lease_seconds: int, at: datetime) -> ReviewItem:
    """A lease on the item; the holder claiming again renews it (a reloaded page)."""
    item = session.scalar(
        select(ReviewItem)
        .where(ReviewItem.id == item_id, or_(claimable(at), ReviewItem.claimed_by == reviewer))
        .with_for_update(skip_locked=True)
    )
    if item is None:
        found = session.get(ReviewItem, item_id)
        if found is None:
            raise ItemNotFound(f"no review item {item_id}")
        _refuse_closed(found)
        raise AlreadyClaimed("another reviewer holds this item")
    _refuse_closed(item)
    if _holds_lease(item, reviewer, at):
        item.lease_expires_at = at + timedelta(seconds=lease_seconds)
        return item
    if _has_decided(session, item, reviewer):
        raise AlreadyDecided("you decided this item already; a second reviewer must be someone else")
    return _lease(session, item, reviewer, at, lease_seconds)


def claim_next(
    session: Session, reviewer: uuid.UUID, lease_seconds: int, at: datetime, queue: QueueFilter | None = None
) -> ReviewItem:
    """The first claimable item within the filter, by priority and then age:
    what a reviewer's 'next' does."""
    query = (
        (queue or QueueFilter())
        .apply(select(ReviewItem))
        .where(claimable(at), ~decided_by(reviewer))
        .order_by(ReviewItem.priority, ReviewItem.created_at, ReviewItem.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    item = session.scalar(query)
    if item is None:
        raise QueueEmpty("no review item is waiting for you" + (" with these filters" if queue else ""))
    return _lease(session, item, reviewer, at, lease_seconds)


def _locked(session: Session, item_id: uuid.UUID) -> ReviewItem:
    item = session.get(ReviewItem, item_id, with_for_update=True)
    if item is None:
        raise ItemNotFound(f"no review item {item_id}")
    return item


def checked_labels(labels: Sequence[object]) -> list[str]:
    """One label, or two different ones (a dual emotion), from the 9."""
    if not 1 <= len(labels) <= 2 or any(label not in EMOTION_LABELS for label in labels):
        raise InvalidLabel(f"give one or two labels from {list(EMOTION_LABELS)}")
    if len(set(labels)) != len(labels):
        raise InvalidLabel("a second label must differ from the first")
    return [str(label) for label in labels]


def _checked_note(note: str | None) -> str | None:
    if note is not None and len(note) > MAX_NOTE:
        raise InvalidLabel(f"a note holds at most {MAX_NOTE} characters")
    return note or None


def _decision(
    session: Session,
    item: ReviewItem,
    kind: DecisionKind,
    actor: uuid.UUID,
    labels: list[str],
    note: str | None,
    at: datetime,
    claimed_at: datetime | None = None,
) -> ReviewDecision:
    decision = ReviewDecision(
        id=uuid.uuid4(),
        item_id=item.id,
        round=item.round,
        reviewer_id=actor,
        kind=kind.value,
        labels=labels,
        note=note,
        claimed_at=claimed_at,
        decided_at=at,
    )
    session.add(decision)
    return decision


def _finalise(
    session: Session,
    item: ReviewItem,
    labels: list[str],
    actor: uuid.UUID,
    at: datetime,
    how: str,
    decision_id: uuid.UUID,
) -> None:
    item.status = ReviewStatus.resolved.value
    item.final_labels = labels
    item.resolved_by = actor
    item.resolved_at = at
    _event(session, item, ReviewEventKind.resolved, actor, at, labels=labels, how=how, decision_id=str(decision_id))


def agreed_labels(first: Sequence[str], second: Sequence[str]) -> list[str] | None:
    """The final labels of two decisions, or None when they disagree."""
    if first[0] != second[0]:
        return None
    both_second = len(first) == 2 and len(second) == 2 and first[1] == second[1]
    return [first[0], first[1]] if both_second else [first[0]]


def _round_decisions(session: Session, item: ReviewItem) -> list[ReviewDecision]:
    return list(
        session.scalars(
            select(ReviewDecision)
            .where(
                ReviewDecision.item_id == item.id,
                ReviewDecision.round == item.round,
                ReviewDecision.kind == DecisionKind.review.value,
            )
            .order_by(ReviewDecision.decided_at, ReviewDecision.id)
        )
    )


def decide(
    session: Session,
    item_id: uuid.UUID,
    reviewer: uuid.UUID,
    labels: Sequence[object],
    note: str | None,
    at: datetime,
) -> Outcome:
    """The lease holder's answer. The item is final after the required number
    of decisions, unless two disagree."""
    labels = checked_labels(labels)
    note = _checked_note(note)
    item = _locked(session, item_id)
    _refuse_closed(item)
    if not _holds_lease(item, reviewer, at):
        raise NotClaimed("claim the item first (or your lease expired)")
    decision = _decision(session, item, DecisionKind.review, reviewer, labels, note, at, claimed_at=item.claimed_at)
    _event(session, item, ReviewEventKind.decided, reviewer, at, decision_id=str(decision.id), labels=labels, note=note)
    item.claimed_by = item.claimed_at = item.lease_expires_at = None
    session.flush()
    decisions = _round_decisions(session, item)
    if len(decisions) < item.required_decisions:
        item.status = ReviewStatus.pending.value  # waiting for a second, different reviewer
        return Outcome(item, decision, resolved=False)
    if item.required_decisions == 1:
        _finalise(session, item, labels, reviewer, at, "single", decision.id)
        return Outcome(item, decision, resolved=True)
    final = agreed_labels(decisions[0].labels, decisions[1].labels)
    if final is None:
        item.status = ReviewStatus.disagreement.value
        _event(session, item, ReviewEventKind.disagreement, None, at, decisions=[str(d.id) for d in decisions])
        return Outcome(item, decision, resolved=False)
    _finalise(session, item, final, reviewer, at, "agreement", decision.id)
    return Outcome(item, decision, resolved=True)


def adjudicate(
    session: Session, item_id: uuid.UUID, admin: uuid.UUID, labels: Sequence[object], note: str | None, at: datetime
) -> Outcome:
    """An admin's answer to two reviewers who disagreed."""
    labels = checked_labels(labels)
    note = _checked_note(note)
    item = _locked(session, item_id)
    if item.status != ReviewStatus.disagreement.value:
        raise NotInDisagreement("only an item whose two reviewers disagreed is adjudicated")
    decision = _decision(session, item, DecisionKind.adjudication, admin, labels, note, at)
    _event(
        session, item, ReviewEventKind.adjudicated, admin, at, decision_id=str(decision.id), labels=labels, note=note
    )
    _finalise(session, item, labels, admin, at, "adjudication", decision.id)
    return Outcome(item, decision, resolved=True)


def correct(
    session: Session, item_id: uuid.UUID, admin: uuid.UUID, labels: Sequence[object], note: str | None, at: datetime
) -> Outcome:
    """An admin replaces a final answer; the earlier one stays in the history."""
    labels = checked_labels(labels)
    note = _checked_note(note)
    item = _locked(session, item_id)
    if item.status != ReviewStatus.resolved.value:
        raise NotResolved("only a resolved item is corrected (adjudicate a disagreement)")
    decision = _decision(session, item, DecisionKind.correction, admin, labels, note, at)
    _event(
        session,
        item,
        ReviewEventKind.corrected,
        admin,
        at,
        decision_id=str(decision.id),
        previous=item.final_labels,
        labels=labels,
        note=note,
    )
    item.final_labels = labels
    item.resolved_by = admin
    item.resolved_at = at
    return Outcome(item, decision, resolved=True)


def reopen(session: Session, item_id: uuid.UUID, admin: uuid.UUID, note: str | None, at: datetime) -> ReviewItem:
    """Back to the queue for a new round of decisions; earlier ones stay in the history."""
    note = _checked_note(note)
    item = _locked(session, item_id)
    if item.status not in (ReviewStatus.resolved.value, ReviewStatus.disagreement.value):
        raise NotResolved("only a resolved item or a disagreement is reopened")
    _event(session, item, ReviewEventKind.reopened, admin, at, previous=item.final_labels, note=note)
    item.status = ReviewStatus.pending.value
    item.round += 1
    item.final_labels = None
    item.resolved_by = item.resolved_at = None
    item.claimed_by = item.claimed_at = item.lease_expires_at = None
    return item


def release(session: Session, item_id: uuid.UUID, reviewer: uuid.UUID, at: datetime) -> ReviewItem:
    item = _locked(session, item_id)
    if item.status != ReviewStatus.claimed.value or item.claimed_by != reviewer:
        raise NotClaimed("you do not hold this item")
    item.status = ReviewStatus.pending.value
    item.claimed_by = item.claimed_at = item.lease_expires_at = None
    _event(session, item, ReviewEventKind.released, reviewer, at)
    return item


def record_played(session: Session, item_id: uuid.UUID, actor: uuid.UUID, scope: str, at: datetime) -> None:
    if scope not in PLAY_SCOPES:
        raise InvalidLabel(f"scope must be one of {list(PLAY_SCOPES)}")  # a bad request like a bad label
    item = session.get(ReviewItem, item_id)
    if item is None:
        raise ItemNotFound(f"no review item {item_id}")
    _event(session, item, ReviewEventKind.audio_played, actor, at, scope=scope)


# ---------- what people may see ----------

_BLINDED = ("labels", "note", "previous")


def visible_details(item: ReviewItem, event: ReviewEvent, viewer: uuid.UUID, admin: bool) -> dict:
    """Blinding: until the item is final, a reviewer sees no one else's labels or notes."""
    if admin or item.status == ReviewStatus.resolved.value or event.actor_id == viewer:
        return event.details
    if event.kind in (ReviewEventKind.decided.value, ReviewEventKind.adjudicated.value):
        return {k: v for k, v in event.details.items() if k not in _BLINDED}
    return event.details


def history(session: Session, item_id: uuid.UUID, viewer: uuid.UUID, admin: bool) -> list[dict]:
    item = session.get(ReviewItem, item_id)
    if item is None:
        raise ItemNotFound(f"no review item {item_id}")
    rows = session.execute(
        select(ReviewEvent, ApiKey.name)
        .outerjoin(ApiKey, ApiKey.id == ReviewEvent.actor_id)
        .where(ReviewEvent.item_id == item_id)
        .order_by(ReviewEvent.id)
    ).all()
    return [
        {
            "kind": event.kind,
            "actor": {"id": str(event.actor_id), "name": name} if event.actor_id else None,
            "at": event.at.isoformat(),
            "details": visible_details(item, event, viewer, admin),
        }
        for event, name in rows
    ]


@dataclass(frozen=True)
class DecisionView:
    decision: ReviewDecision
    reviewer_name: str


def decisions_of(session: Session, item_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, list[DecisionView]]:
    """Every decision on these items, oldest first, with the reviewer's key name."""
    found: dict[uuid.UUID, list[DecisionView]] = {}
    ids = list(item_ids)
    if not ids:
        return found
    rows = session.execute(
        select(ReviewDecision, ApiKey.name)
        .join(ApiKey, ApiKey.id == ReviewDecision.reviewer_id)
        .where(ReviewDecision.item_id.in_(ids))
        .order_by(ReviewDecision.decided_at, ReviewDecision.id)
    ).all()
    for decision, name in rows:
        found.setdefault(decision.item_id, []).append(DecisionView(decision, name))
    return found
