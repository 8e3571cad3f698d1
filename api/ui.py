"""The reviewers' web pages: static HTML with plain JavaScript and CSS (no
build step; the waveform and chart libraries are vendored under
``static/vendor``) that drive the ``/v1/review-items`` and
``/v1/review-stats`` routes with the person's own API key. The pages and
their files need no auth; every data call they make does. The key lives in
the tab's ``sessionStorage`` only."""

from __future__ import annotations

import secrets
from functools import cache
from pathlib import Path

from flask import Blueprint, Response

bp = Blueprint("ui", __name__, static_folder="static", static_url_path="/review/static")

STATIC = Path(__file__).parent / "static"
NONCE_PLACEHOLDER = "__CSP_NONCE__"


def _csp(nonce: str) -> str:
    # Everything comes from this origin; no inline script, no framing. Styles: the
    # waveform library puts its stylesheet in a shadow root, allowed by this
    # response's nonce (it reads it from the page). Media from blob: too: the audio
    # is fetched with the key and played from an object URL, since an <audio src>
    # cannot send an Authorization header.
    return (
        f"default-src 'none'; script-src 'self'; style-src 'self' 'nonce-{nonce}'; img-src 'self' data:; "
        "media-src 'self' blob:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


@cache
def _page(name: str) -> str:
    return (STATIC / name).read_text(encoding="utf-8")


def _serve(name: str) -> Response:
    nonce = secrets.token_urlsafe(18)
    response = Response(_page(name).replace(NONCE_PLACEHOLDER, nonce), mimetype="text/html")
    response.headers["Content-Security-Policy"] = _csp(nonce)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"  # a fresh nonce each time
    return response


@bp.get("/review", strict_slashes=False)  # /review/ too: people type it
def review_page() -> Response:
    return _serve("review.html")


@bp.get("/review/stats")
def stats_page() -> Response:
    return _serve("review-stats.html")


@bp.after_request
def _static_headers(response: Response) -> Response:
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    return response
