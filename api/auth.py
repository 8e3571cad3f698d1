"""Who may call what: each view declares its roles with ``requires``; the
key itself is checked by ``domain.api_keys``."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import g, request

from api.errors import Problem
from api.services import services
from domain.api_keys import find_key
from models import ApiKey, Role

F = TypeVar("F", bound=Callable[..., Any])


def current_key() -> ApiKey:
    return g.api_key


def requires(*roles: Role) -> Callable[[F], F]:
    allowed = {r.value for r in roles} | {Role.admin.value}

    def decorator(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            header = request.headers.get("Authorization", "")
            scheme, _, value = header.partition(" ")
            if scheme.lower() != "bearer" or not value.strip():
                raise Problem(401, "unauthorized", "send 'Authorization: Bearer <api key>'")
            with services().sessions() as session:
                key = find_key(session, value.strip())
            if key is None:
                raise Problem(401, "unauthorized", "unknown or revoked API key")
            if key.role not in allowed:
                raise Problem(
                    403, "forbidden", f"this route needs one of the roles {sorted(allowed)}; your key is '{key.role}'"
                )
            g.api_key = key
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorator
