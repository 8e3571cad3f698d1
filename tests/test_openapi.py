"""The API reference can't drift from the API: the document (api/openapi.yaml,
served at /openapi.json) validates as OpenAPI 3.1, names exactly the app's
routes and methods and every fixed error code the code raises."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from openapi_spec_validator import validate

from api.openapi import document

ROOT = Path(__file__).resolve().parent.parent
METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


# ---------- the document itself ----------


def test_the_document_is_valid_openapi_3_1():
    spec = document()
    assert spec["openapi"].startswith("3.1.")
    validate(spec)


def documented_routes() -> set[tuple[str, str]]:
    return {
        (method.upper(), path) for path, item in document()["paths"].items() for method in item if method in METHODS
    }


def flask_routes(app) -> set[tuple[str, str]]:
    """(METHOD, /path/{param}) for every route but static files; HEAD and OPTIONS are Flask's own."""
    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or rule.endpoint.endswith(".static"):
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        routes |= {(method, path) for method in rule.methods - {"HEAD", "OPTIONS"}}
    return routes


def test_every_route_is_documented_and_every_documented_route_exists(app):
    routes, documented = flask_routes(app), documented_routes()
    assert routes - documented == set(), "routes missing from api/openapi.yaml"
    assert documented - routes == set(), "api/openapi.yaml documents routes the app doesn't have"


def test_every_operation_documents_its_outages_and_auth():
    for path, item in document()["paths"].items():
        for method, operation in item.items():
            if method not in METHODS:
                continue
            responses = operation["responses"]
            if path.startswith("/v1/"):
                assert operation.get("security", [{"bearer": []}]) == [{"bearer": []}], (method, path)
                assert {"401", "403", "503"} <= set(responses), (method, path)
            else:
                assert "bearer" not in str(operation.get("security")), (method, path)
            assert {"414", "431"} <= set(responses), (method, path)


def _documented_codes() -> set[str]:
    found: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            code = node.get("properties", {}).get("code") if isinstance(node.get("properties"), dict) else None
            if isinstance(code, dict):
                found.update(code.get("enum", []))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document())
    return found


def _raised_codes() -> set[str]:
    """Fixed codes the API can answer: ``Problem(status, "code", ...)`` in api/, the
    refusals' ``code = "..."`` and ``RecordingRefused(status, "code", ...)`` in domain/.
    Codes built at run time (``f"invalid_{name}"``) are left to schemathesis."""
    codes: set[str] = set()
    for folder in ("api", "domain"):
        for path in (ROOT / folder).glob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("Problem", "RecordingRefused"):
                    arg = node.args[1] if len(node.args) > 1 else None
                    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                        codes.add(arg.value)
                elif isinstance(node, ast.ClassDef):
                    for statement in node.body:
                        if (
                            isinstance(statement, ast.Assign)
                            and [getattr(t, "id", None) for t in statement.targets] == ["code"]
                            and isinstance(statement.value, ast.Constant)
                        ):
                            codes.add(statement.value.value)
    # Base classes' placeholders, never answered as such.
    return codes - {"review_refused", "batch_refused"}


def test_every_error_code_the_api_raises_is_documented():
    from api.errors import _HTTP_CODES

    # 405, 415 and a bare 400/404 come from Werkzeug for requests no operation takes (described in info).
    generic = {"method_not_allowed", "not_found", "bad_request", "unsupported_media_type"}
    expected = (_raised_codes() | set(_HTTP_CODES.values())) - generic
    assert expected - _documented_codes() == set(), "error codes missing from api/openapi.yaml"


def test_the_served_document_is_the_file(client):
    response = client.get("/openapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert response.get_json() == document()


def test_the_docs_page_is_served_without_auth_and_from_here_only(client):
    page = client.get("/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert b'spec-url="openapi.json"' in page.data and b'src="docs/static/redoc.standalone.js"' in page.data
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self';" in csp and "connect-src 'self';" in csp
    bundle = client.get("/docs/static/redoc.standalone.js")
    assert bundle.status_code == 200 and bundle.mimetype == "text/javascript"
