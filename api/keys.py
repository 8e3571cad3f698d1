"""API key management (admins only)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from flask import Blueprint, request
from sqlalchemy import select

from api.auth import requires
from api.errors import Problem
from api.inputs import clean_text
from api.services import services
from domain.api_keys import create_key
from models import ApiKey, Role
from models.db import transaction

bp = Blueprint("keys", __name__, url_prefix="/v1/api-keys")


def key_body(key: ApiKey) -> dict:
    return {
        "id": str(key.id),
        "name": key.name,
        "role": key.role,
        "created_at": key.created_at and key.created_at.isoformat(),
        "revoked_at": key.revoked_at and key.revoked_at.isoformat(),
    }


@bp.post("")
@requires(Role.admin)
def create() -> tuple[dict, int]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise Problem(400, "invalid_json", 'send a JSON object {"name": ..., "role": ...}')
    name, role = clean_text("name", body.get("name"), 200), body.get("role")
    if not name.strip():
        raise Problem(400, "invalid_name", "name must be 1–200 characters")
    if not isinstance(role, str) or role not in {r.value for r in Role}:
        raise Problem(400, "invalid_role", f"role must be one of {[r.value for r in Role]}")
    with transaction(services().sessions) as session:
        key, value = create_key(session, name, Role(role))
        session.refresh(key)
        return {**key_body(key), "key": value}, 201


@bp.get("")
@requires(Role.admin)
def list_keys() -> dict:
    with services().sessions() as session:
        return {"items": [key_body(k) for k in session.scalars(select(ApiKey).order_by(ApiKey.created_at))]}


@bp.delete("/<uuid:key_id>")
@requires(Role.admin)
def revoke(key_id: uuid.UUID) -> dict:
    with transaction(services().sessions) as session:
        key = session.get(ApiKey, key_id, with_for_update=True)
        if key is None:
            raise Problem(404, "api_key_not_found", f"no API key {key_id}")
        key.revoked_at = key.revoked_at or datetime.now(UTC)
        return key_body(key)
