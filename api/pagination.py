"""Keyset (cursor) pagination over (created_at, id), newest first."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from flask import request
from sqlalchemy import Select, and_, or_

from api.errors import Problem


def encode_cursor(created_at: datetime, row_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{row_id}".encode()).decode()


def page(query: Select, created_col, id_col, max_size: int) -> tuple[Select, int]:
    try:
        limit = int(request.args.get("limit", 50))
    except ValueError:
        raise Problem(400, "invalid_limit", "limit must be an integer") from None
    if not 1 <= limit <= max_size:
        raise Problem(400, "invalid_limit", f"limit must be between 1 and {max_size}")
    cursor = request.args.get("cursor")
    if cursor:
        try:
            stamp, _, raw_id = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
            created_at, row_id = datetime.fromisoformat(stamp), uuid.UUID(raw_id)
        except ValueError:
            raise Problem(400, "invalid_cursor", "the cursor is not one this API returned") from None
        query = query.where(or_(created_col < created_at, and_(created_col == created_at, id_col < row_id)))
    return query.order_by(created_col.desc(), id_col.desc()).limit(limit + 1), limit


def next_cursor(rows: Sequence[Any], limit: int) -> str | None:
    if len(rows) <= limit:
        return None
    last = rows[limit - 1]
    return encode_cursor(last.created_at, last.id)
