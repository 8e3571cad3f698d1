"""Strict parameters: a misspelt or unsupported field is refused by name
(400 ``unknown_parameters``) instead of being silently ignored."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from flask import request

from api.errors import Problem


def _refuse(unknown: list[str]) -> None:
    if unknown:
        raise Problem(400, "unknown_parameters", f"unknown parameters: {', '.join(unknown)}", parameters=unknown)


def only(*, query: Iterable[str] = (), form: Iterable[str] = (), files: Iterable[str] = ()) -> None:
    """Refuse query, form and file fields other than these."""
    if sent_as_text := sorted(set(files) & set(request.form)):
        # curl -F file=call.wav (without @) sends the name, not the file.
        raise Problem(
            400,
            "file_missing",
            f"'{sent_as_text[0]}' arrived as a text field, not a file: send the recording itself "
            f"(curl -F {sent_as_text[0]}=@call.wav)",
        )
    unknown = sorted(set(request.args) - set(query))
    unknown += sorted(set(request.form) - set(form))
    unknown += sorted(set(request.files) - set(files))
    _refuse(unknown)


def only_keys(body: Mapping[str, Any], allowed: Iterable[str]) -> None:
    """Refuse JSON members other than these."""
    _refuse(sorted(set(body) - set(allowed)))


def json_object() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise Problem(400, "invalid_json", "send a JSON object with Content-Type: application/json")
    return body


def when(name: str) -> datetime | None:
    """An optional ISO 8601 date or time in the query string; 400 ``invalid_<name>`` otherwise."""
    value = request.args.get(name)
    if not value:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise Problem(400, f"invalid_{name}", f"{name} must be an ISO 8601 date or time") from None
    # Without an offset it is UTC, not the database session's time zone (and answers echo it as RFC 3339).
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)
