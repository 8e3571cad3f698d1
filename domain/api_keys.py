"""API keys: random values shown once, stored as Argon2 hashes and found by
a short digest. The API authenticates with them; ``emoq create-key`` makes them."""

from __future__ import annotations

import hashlib
import secrets
import uuid

from argon2 import PasswordHasher
from argon2.exceptions import VerificationError
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from models import ApiKey, Role

_hasher = PasswordHasher()
# Argon2 is deliberately slow (tens of ms, 64 MiB) and clients poll. A key value
# verified once against a stored hash is remembered by its SHA-256 in this
# process; the row (and so revocation) is still read on every request.
_verified: dict[str, str] = {}
_VERIFIED_MAX = 10_000


def lookup_of(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def new_key_value() -> str:
    return "emoq_" + secrets.token_urlsafe(32)


def create_key(session: Session, name: str, role: Role, value: str | None = None) -> tuple[ApiKey, str]:
    value = value or new_key_value()
    key = ApiKey(name=name, role=role.value, lookup=lookup_of(value), key_hash=_hasher.hash(value))
    session.add(key)
    session.flush()
    return key, value


def find_key(session: Session, value: str) -> ApiKey | None:
    key = session.scalar(select(ApiKey).where(ApiKey.lookup == lookup_of(value), ApiKey.revoked_at.is_(None)))
    if key is None:
        return None
    fingerprint = hashlib.sha256(value.encode()).hexdigest()
    if _verified.get(fingerprint) == key.key_hash:
        return key
    try:
        _hasher.verify(key.key_hash, value)
    except VerificationError:
        return None
    if len(_verified) >= _VERIFIED_MAX:
        _verified.clear()
    _verified[fingerprint] = key.key_hash
    return key


def ensure_bootstrap_key(session: Session, value: str) -> None:
    """Idempotent, also when several API processes start at once. A key with
    this value that an admin revoked stays revoked: configuration does not
    resurrect it."""
    session.execute(
        insert(ApiKey)
        .values(
            id=uuid.uuid4(),
            name="bootstrap",
            role=Role.admin.value,
            lookup=lookup_of(value),
            key_hash=_hasher.hash(value),
        )
        .on_conflict_do_nothing(index_elements=[ApiKey.lookup])
    )
