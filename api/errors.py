"""Errors as RFC 9457 problem details with a stable ``code``.

An outage of a backing service (PostgreSQL, Redis, S3) is a ``503`` with
``Retry-After``, whichever view or decorator met it; a value the database
refuses (a NUL byte, say) is the client's ``400``, never taken for an outage."""

from __future__ import annotations

import kombu.exceptions
import redis.exceptions
from flask import Flask, Response, jsonify
from sqlalchemy import exc as sa_exc
from werkzeug.exceptions import HTTPException

import storage

PROBLEM = "application/problem+json"


class Problem(Exception):
    def __init__(
        self, status: int, code: str, detail: str, *, headers: dict[str, str] | None = None, **extra: object
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra


def problem_response(status: int, code: str, detail: str, **extra: object) -> Response:
    body = {"type": f"https://emoq.dev/problems/{code}", "title": code.replace("_", " "), "status": status}
    body.update(code=code, detail=detail, **extra)
    response = jsonify(body)
    response.status_code = status
    response.mimetype = PROBLEM
    return response


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "upload_too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    431: "header_too_large",
}


def outage(exc: BaseException) -> tuple[str, str] | None:
    """(code, detail) when ``exc`` means a backing service is unavailable, else None."""
    if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError | sa_exc.TimeoutError) or (
        isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated
    ):
        return "database_unavailable", "the database is unavailable; nothing was changed, try again later"
    if isinstance(
        exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError | kombu.exceptions.OperationalError
    ):
        return "broker_unavailable", "the queue (Redis) is unavailable; try again later"
    if storage.unavailable(exc):
        return "storage_unavailable", "object storage (S3) is unavailable; try again later"
    return None


def register_error_handlers(app: Flask, retry_after_seconds: int) -> None:
    @app.errorhandler(Problem)
    def _problem(exc: Problem) -> Response:
        response = problem_response(exc.status, exc.code, exc.detail, **exc.extra)
        response.headers.update(exc.headers)
        return response

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        status = exc.code or 500
        response = problem_response(status, _HTTP_CODES.get(status, "http_error"), exc.description or exc.name)
        if status == 405 and exc.get_headers():
            response.headers.update({k: v for k, v in exc.get_headers() if k == "Allow"})
        return response

    @app.errorhandler(sa_exc.DataError)
    def _data_error(exc: sa_exc.DataError) -> Response:
        # Values are checked before they reach the database (api.inputs); this
        # catches what slipped through, as the client's error it is.
        app.logger.warning("database refused a value: %s", exc.orig)
        return problem_response(400, "invalid_input", "a value was refused by the database (control characters?)")

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        if found := outage(exc):
            app.logger.warning("%s: %s", found[0], exc)
            return problem_response(503, *found)
        app.logger.exception("unhandled error")
        return problem_response(500, "internal_error", "an unexpected error occurred; nothing was changed")

    @app.after_request
    def _retry_after(response: Response) -> Response:
        if response.status_code == 503 and "Retry-After" not in response.headers:
            response.headers["Retry-After"] = str(retry_after_seconds)
        return response
