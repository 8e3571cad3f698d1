"""Errors as RFC 9457 problem details with a stable ``code``."""

from __future__ import annotations

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

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
    415: "unsupported_media_type",
}


def register_error_handlers(app: Flask) -> None:
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

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        app.logger.exception("unhandled error")
        return problem_response(500, "internal_error", "an unexpected error occurred; nothing was changed")
