"""``Idempotency-Key`` on creating routes (rules: ``domain.idempotency``): the
same key with the same request returns the first answer (``Idempotent-Replayed:
true``); with a different request, 422 ``idempotency_key_reused``. A repeat that
arrives while the first is still running waits for its answer, then is told to
retry (409 ``request_in_progress``)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import wraps
from typing import Any, TypeVar

from flask import Response, current_app, request

from api.auth import current_key
from api.errors import Problem
from api.services import services
from domain import idempotency
from models.db import transaction

F = TypeVar("F", bound=Callable[..., Any])

HEADER = "Idempotency-Key"
# How long a repeat waits for the first request's answer before being told to retry.
WAIT_SECONDS = 30.0
_POLL_SECONDS = 0.2
_CHUNK = 1 << 20


def _file_digest(stream: Any) -> str:
    digest = hashlib.sha256()
    for chunk in iter(lambda: stream.read(_CHUNK), b""):
        digest.update(chunk)
    stream.seek(0)
    return digest.hexdigest()


def request_fingerprint() -> str:
    """Method, path, query and body; files by their content's SHA-256, so the
    same upload sent with another multipart boundary is the same request."""
    parts: list[Any] = [request.method, request.path, sorted(request.args.items(multi=True))]
    if request.mimetype == "multipart/form-data":
        parts.append(list(request.form.items(multi=True)))
        parts.append([[name, f.filename, _file_digest(f.stream)] for name, f in request.files.items(multi=True)])
    else:
        parts.append(request.get_json(silent=True))
    return idempotency.fingerprint(parts)


def _replay(status: int, stored: dict[str, Any]) -> Response:
    response = current_app.make_response((stored["body"], status))
    if stored.get("location"):
        response.headers["Location"] = stored["location"]
    response.headers["Idempotent-Replayed"] = "true"
    return response


def idempotent(view: F) -> F:
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        key = request.headers.get(HEADER)
        if key is None:
            return view(*args, **kwargs)
        if not idempotency.valid_key(key):
            raise Problem(400, "invalid_idempotency_key", f"{HEADER} must be 1-200 printable ASCII characters")
        svc = services()
        owner = current_key().id
        route = f"{request.method} {request.url_rule.rule if request.url_rule else request.path}"
        fingerprint = request_fingerprint()
        ttl = timedelta(hours=svc.settings.batches.idempotency_ttl_hours)
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            try:
                with transaction(svc.sessions) as session:
                    claim = idempotency.claim(session, owner, key, route, fingerprint, datetime.now(UTC), ttl)
            except idempotency.KeyReused as exc:
                raise Problem(422, exc.code, str(exc)) from None
            if claim.owned:
                break
            if claim.status_code is not None and claim.response is not None:
                return _replay(claim.status_code, claim.response)
            if time.monotonic() > deadline:
                raise Problem(
                    409,
                    "request_in_progress",
                    "a request with this Idempotency-Key is still running; retry",
                    headers={"Retry-After": "1"},
                )
            time.sleep(_POLL_SECONDS)  # the first request's answer, polled without holding a connection
        try:
            response = current_app.make_response(view(*args, **kwargs))
        except BaseException:
            with transaction(svc.sessions) as session:
                idempotency.release(session, owner, key)
            raise
        with transaction(svc.sessions) as session:
            if response.status_code < 400:
                stored = {"body": response.get_json(), "location": response.headers.get("Location")}
                idempotency.complete(session, owner, key, response.status_code, stored)
            else:  # a refusal is not remembered: the retry runs afresh
                idempotency.release(session, owner, key)
        return response

    return wrapper  # type: ignore[return-value]
