"""The API reference: ``GET /openapi.json`` serves ``openapi.yaml`` (an OpenAPI
3.1 document maintained by hand beside the views) as JSON, and ``GET /docs``
renders it with Redoc, vendored under ``static/vendor/redoc`` so the page works
offline. tests/test_openapi.py keeps the document and the routes in step."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from flask import Blueprint, Response, redirect
from werkzeug.wrappers import Response as WerkzeugResponse

bp = Blueprint("openapi", __name__, static_folder="static/vendor/redoc", static_url_path="/docs/static")

HERE = Path(__file__).parent
DOCUMENT = HERE / "openapi.yaml"

# Redoc's search runs in a worker made from a blob: URL, and its styles are
# injected as <style> elements at run time (styled-components), which a nonce
# can't reach from outside the bundle: hence worker-src blob: and inline styles.
# Scripts still come from this origin only.
_DOCS_CSP = (
    "default-src 'none'; script-src 'self'; worker-src 'self' blob:; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)


@cache
def document() -> dict[str, Any]:
    """The document, read once per process."""
    return yaml.safe_load(DOCUMENT.read_text(encoding="utf-8"))


@cache
def _document_json() -> bytes:
    return json.dumps(document(), ensure_ascii=False).encode("utf-8")


@cache
def _docs_page() -> str:
    return (HERE / "static" / "docs.html").read_text(encoding="utf-8")


@bp.get("/openapi.json")
def openapi_json() -> Response:
    return Response(_document_json(), mimetype="application/json")


@bp.get("/")
def home() -> WerkzeugResponse:
    """A person who opens the server's address gets the API reference."""
    return redirect("/docs", code=302)


@bp.get("/docs")
def docs() -> Response:
    response = Response(_docs_page(), mimetype="text/html")
    response.headers["Content-Security-Policy"] = _DOCS_CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response
