"""The reviewers' web page: one static HTML page with plain JavaScript and CSS
(no build step) that drives the ``/v1/review-items`` routes with the
reviewer's own API key. The page and its files need no auth; every data call
it makes does. The key lives in the tab's ``sessionStorage`` only."""

from __future__ import annotations

from flask import Blueprint, Response

bp = Blueprint("ui", __name__, static_folder="static", static_url_path="/review/static")

# Everything comes from this origin; no inline script or style, no framing.
# Media from blob: too: the segment's audio is fetched with the key and played
# from an object URL, since an <audio src> cannot send an Authorization header.
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self' blob:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


@bp.get("/review")
def review_page() -> Response:
    response = bp.send_static_file("review.html")
    response.headers["Content-Security-Policy"] = _CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.after_request
def _static_headers(response: Response) -> Response:
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    return response
