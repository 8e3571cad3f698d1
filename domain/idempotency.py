"""Idempotency keys: a client repeats a creating request with the same
``Idempotency-Key`` and gets the first answer back instead of a second job.

The first request claims the key with ``INSERT … ON CONFLICT DO NOTHING`` in a
transaction of its own (committed at once, so concurrent repeats see it) and
stores its answer when done; a request that fails gives the key back, so a
retry runs afresh. Repeats find either the answer (replayed), the claim still
in progress (they wait, then are told to retry), or a different request under
the same key (refused: ``idempotency_key_reused``). Answers are kept for the
configured time (at least 24 h), then purged by the sweep."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, or_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from models import IdempotencyKey

# A claim whose request never finished (its process died) is given up after this.
ABANDONED_AFTER = timedelta(minutes=15)
MAX_KEY_LENGTH = 200


class KeyReused(Exception):
    """The key already belongs to a different request."""

    code = "idempotency_key_reused"


@dataclass(frozen=True)
class Claim:
    """``owned``: this request runs and must ``complete`` or ``release`` the key.
    Otherwise ``status_code``/``response`` hold the first answer, or are None
    while the first request is still running."""

    owned: bool
    status_code: int | None = None
    response: dict[str, Any] | None = None


def fingerprint(parts: list[Any]) -> str:
    """A request's identity: SHA-256 of its parts in a canonical JSON form."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def valid_key(key: str) -> bool:
    return 0 < len(key) <= MAX_KEY_LENGTH and key.isascii() and key.isprintable()


def claim(
    session: Session, owner: uuid.UUID, key: str, route: str, request_fingerprint: str, now: datetime, ttl: timedelta
) -> Claim:
    expired = or_(
        IdempotencyKey.created_at < now - ttl,
        and_(IdempotencyKey.status_code.is_(None), IdempotencyKey.created_at < now - ABANDONED_AFTER),
    )
    session.execute(delete(IdempotencyKey).where(IdempotencyKey.owner_id == owner, IdempotencyKey.key == key, expired))
    inserted = session.execute(
        insert(IdempotencyKey)
        .values(owner_id=owner, key=key, route=route, fingerprint=request_fingerprint, created_at=now)
        .on_conflict_do_nothing(index_elements=[IdempotencyKey.owner_id, IdempotencyKey.key])
        .returning(IdempotencyKey.key)
    ).scalar()
    if inserted is not None:
        return Claim(owned=True)
    held = session.get(IdempotencyKey, (owner, key), populate_existing=True)
    if held is None:  # released between the insert and the read: claim it on the next try
        return Claim(owned=False)
    if held.fingerprint != request_fingerprint:
        raise KeyReused(f"this Idempotency-Key was used for a different request ({held.route})")
    return Claim(owned=False, status_code=held.status_code, response=held.response)


def complete(session: Session, owner: uuid.UUID, key: str, status_code: int, response: dict[str, Any]) -> None:
    session.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.owner_id == owner, IdempotencyKey.key == key)
        .values(status_code=status_code, response=response)
    )


def release(session: Session, owner: uuid.UUID, key: str) -> None:
    session.execute(
        delete(IdempotencyKey).where(
            IdempotencyKey.owner_id == owner, IdempotencyKey.key == key, IdempotencyKey.status_code.is_(None)
        )
    )


def purge(session: Session, now: datetime, ttl: timedelta) -> int:
    result = session.execute(delete(IdempotencyKey).where(IdempotencyKey.created_at < now - ttl))
    return int(getattr(result, "rowcount", 0) or 0)
