"""The review queue's rules. A claim is a lease taken in one short
transaction with ``FOR UPDATE SKIP LOCKED``: nothing stays open while a
person listens, two reviewers never hold one item, and an expired lease puts
the item back. The API's views call one function each."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, Select, and_, or_, select
from sqlalchemy.orm import Session

from analysis.labels import EMOTION_LABELS
from models import ReviewItem, ReviewStatus


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


class NotClaimed(ReviewRefused):
    code = "not_claimed"


class InvalidLabel(ReviewRefused):
    code = "invalid_label"


def now() -> datetime:
    return datetime.now(UTC)


def claimable(at: datetime) -> ColumnElement[bool]:
    return or_(
        ReviewItem.status == ReviewStatus.pending.value,
        and_(ReviewItem.status == ReviewStatus.claimed.value, ReviewItem.lease_expires_at < at),
    )


def effective_status(item: ReviewItem, at: datetime) -> str:
    """An expired lease reads as pending, before any sweep has touched the row."""
    if item.status == ReviewStatus.claimed.value and item.lease_expires_at and item.lease_expires_at < at:
        return ReviewStatus.pending.value
    return item.status


def listing(status: str | None, at: datetime) -> Select[ReviewItem]:
    query = select(ReviewItem)
    if status == ReviewStatus.pending.value:
        return query.where(claimable(at))
    if status == ReviewStatus.claimed.value:
        return query.where(ReviewItem.status == status, ReviewItem.lease_expires_at >= at)
    if status == ReviewStatus.resolved.value:
        return query.where(ReviewItem.status == status)
    if status:
        raise ValueError("status must be pending, claimed or resolved")
    return query


def _lease(item: ReviewItem, reviewer: uuid.UUID, at: datetime, lease_seconds: int) -> ReviewItem:
    item.status = ReviewStatus.claimed.value
    item.claimed_by = reviewer
    item.claimed_at = at
    item.lease_expires_at = at + timedelta(seconds=lease_seconds)
    return item


def claim(session: Session, item_id: uuid.UUID, reviewer: uuid.UUID, lease_seconds: int, at: datetime) -> ReviewItem:
    item = session.scalar(
        select(ReviewItem).where(ReviewItem.id == item_id, claimable(at)).with_for_update(skip_locked=True)
    )
    if item is None:
        if session.get(ReviewItem, item_id) is None:
            raise ItemNotFound(f"no review item {item_id}")
        raise AlreadyClaimed("another reviewer holds this item, or it is resolved")
    return _lease(item, reviewer, at, lease_seconds)


def claim_next(session: Session, reviewer: uuid.UUID, lease_seconds: int, at: datetime) -> ReviewItem:
    """The oldest claimable item: what a reviewer's 'next' button does."""
    item = session.scalar(
        select(ReviewItem)
        .where(claimable(at))
        .order_by(ReviewItem.created_at, ReviewItem.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    if item is None:
        raise QueueEmpty("no review item is waiting")
    return _lease(item, reviewer, at, lease_seconds)


def _locked(session: Session, item_id: uuid.UUID) -> ReviewItem:
    item = session.get(ReviewItem, item_id, with_for_update=True)
    if item is None:
        raise ItemNotFound(f"no review item {item_id}")
    return item


def resolve(
    session: Session, item_id: uuid.UUID, reviewer: uuid.UUID, label: str, note: str | None, at: datetime
) -> ReviewItem:
    if label not in EMOTION_LABELS:
        raise InvalidLabel(f"label must be one of {list(EMOTION_LABELS)}")
    item = _locked(session, item_id)
    if item.status == ReviewStatus.resolved.value:
        raise AlreadyResolved("this item was resolved already")
    holds_lease = (
        item.status == ReviewStatus.claimed.value
        and item.claimed_by == reviewer
        and item.lease_expires_at is not None
        and item.lease_expires_at >= at
    )
    if not holds_lease:
        raise NotClaimed("claim the item first (or your lease expired)")
    item.status = ReviewStatus.resolved.value
    item.resolved_by = reviewer
    item.resolved_label = label
    item.note = note
    item.resolved_at = at
    return item


def release(session: Session, item_id: uuid.UUID, reviewer: uuid.UUID) -> ReviewItem:
    item = _locked(session, item_id)
    if item.status != ReviewStatus.claimed.value or item.claimed_by != reviewer:
        raise NotClaimed("you do not hold this item")
    item.status = ReviewStatus.pending.value
    item.claimed_by = item.claimed_at = item.lease_expires_at = None
    return item
