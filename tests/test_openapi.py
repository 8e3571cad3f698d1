"""The API reference can't drift from the API: the document (api/openapi.yaml,
served at /openapi.json) validates as OpenAPI 3.1, names exactly the app's
routes and methods and every fixed error code the code raises, and
schemathesis calls every operation of the real app (real PostgreSQL, Redis
and S3, seeded with jobs, a batch and review items) and checks each answer
against it: no 5xx, and status, content type, headers and body as documented."""

from __future__ import annotations

import ast
import io
import re
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from openapi_spec_validator import validate
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.openapi import document
from domain.api_keys import create_key
from models import ReviewItem, Role
from models.db import transaction
from tests import test_review_ui as ui
from tests.conftest import serving, submit, voiced, wait_for_job, wav_bytes
from tests.factories import key_id, make_review_item

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


# ---------- the live API against the document (schemathesis) ----------

schema = schemathesis.openapi.from_dict(document())

# Ids of rows seeded for the operation under test: path parameters are drawn from
# these as well as at random, so answers other than 404 are checked too.
SEEDED: dict[str, list[str]] = {}


@schema.hook
def flatmap_path_parameters(context, path_parameters):
    choices = [path_parameters]
    for name in path_parameters or {}:
        choices += [{**path_parameters, name: value} for value in SEEDED.get(name, [])]
    return st.sampled_from(choices)


@pytest.fixture
def seeded(client, keys, sessions, store):
    """Review items (pending with a recording in S3, resolved, in disagreement), a batch
    with a job, and a key that may be revoked; the caller is the admin."""
    submitter = key_id(sessions, "submitter")
    pending = ui.make_items(sessions, store, submitter, count=2)
    resolved = make_review_item(sessions, submitter, status="resolved", final_labels=["fearful"])
    disagreement = make_review_item(sessions, submitter, status="disagreement", required_decisions=2)
    batch = client.post("/v1/batches", json={"name": "nightly", "channels": "agent,customer"}, headers=keys["admin"])
    with sessions() as session:
        jobs = [str(session.get(ReviewItem, i).job_id) for i in (*pending, resolved)]
    with transaction(sessions) as session:
        spare, _ = create_key(session, "spare", Role.reviewer)
        session.flush()
        spare_id = str(spare.id)
    SEEDED.clear()
    SEEDED.update(
        job_id=jobs,
        item_id=[str(i) for i in (*pending, resolved, disagreement)],
        batch_id=[batch.get_json()["id"]],
        key_id=[spare_id],
        index=["0"],
    )
    yield keys["admin"]
    SEEDED.clear()


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@schema.parametrize()
@settings(
    max_examples=10,
    deadline=None,
    derandomize=True,  # the same cases on every run: CI fails on a change, not on luck
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_the_api_answers_as_documented(case, app, seeded):
    # /readyz answers its documented 503 while no worker sends heartbeats (none runs here).
    checks = CHECKS[1:] if case.operation.path == "/readyz" else CHECKS
    case.call_and_validate(app=app, headers=seeded, checks=checks)


# ---------- what schemathesis found (kept as regressions) ----------


def test_a_key_role_that_is_not_a_string_is_refused_not_a_crash(client, keys):
    response = client.post("/v1/api-keys", json={"name": "qa", "role": {}}, headers=keys["admin"])
    assert response.status_code == 400 and response.get_json()["code"] == "invalid_role"


def test_an_s3_bucket_name_the_sdk_refuses_is_the_clients_error(client, keys):
    batch = client.post("/v1/batches", json={"name": "imports"}, headers=keys["submitter"]).get_json()
    for bucket in ("\v", "a", "a" * 64, "-dash"):
        response = client.post(
            f"/v1/batches/{batch['id']}/recordings", json={"s3": {"bucket": bucket}}, headers=keys["submitter"]
        )
        assert response.status_code == 400 and response.get_json()["code"] == "invalid_s3", bucket


def test_a_time_without_an_offset_is_utc_and_echoed_as_rfc_3339(client, keys):
    stats = client.get("/v1/review-stats?since=2026-11-01T00:00:00&until=2026-11-02", headers=keys["admin"])
    assert stats.status_code == 200
    assert (stats.get_json()["since"], stats.get_json()["until"]) == (
        "2026-11-01T00:00:00+00:00",
        "2026-11-02T00:00:00+00:00",
    )


def test_an_id_that_is_not_a_uuid_is_a_documented_404(client, keys):
    response = client.get("/v1/jobs/null,null", headers=keys["admin"])
    assert response.status_code == 404 and response.get_json()["code"] == "not_found"
    schema["/v1/jobs/{job_id}"]["GET"].validate_response(response)


# ---------- what random input can't reach: a real recording through the real worker ----------


def test_a_real_job_and_batch_answer_as_documented(client, keys, worker):
    """Random bytes are never audio, so schemathesis never sees a 202 or a real result:
    a stereo call goes through the worker, and every answer about it is checked."""
    headers = keys["submitter"]
    call = wav_bytes(voiced(3.0).repeat(2).reshape(-1, 2))
    submitted = submit(client, headers, call, channels="agent,customer", granularity="frame")
    schema["/v1/jobs"]["POST"].validate_response(submitted)
    job_id = submitted.get_json()["id"]
    assert wait_for_job(client, headers, job_id)["status"] == "succeeded"
    job = client.get(f"/v1/jobs/{job_id}", headers=headers)
    assert job.get_json()["result"]["segments"], "a call with speech has segments"
    batch = client.post("/v1/batches", json={"name": "nightly", "channels": ["agent", "customer"]}, headers=headers)
    batch_id = batch.get_json()["id"]
    added = client.post(
        f"/v1/batches/{batch_id}/recordings",
        data={"file": [(io.BytesIO(call), "a.wav"), (io.BytesIO(b"not audio"), "b.wav")]},
        headers=headers,
        content_type="multipart/form-data",
    )
    assert [item["status"] for item in added.get_json()["items"]] == ["queued", "refused"]
    answers = [
        ("GET", "/v1/jobs/{job_id}", job),
        ("GET", "/v1/jobs", client.get("/v1/jobs", headers=headers)),
        ("GET", "/v1/jobs/{job_id}/embedding", client.get(f"/v1/jobs/{job_id}/embedding", headers=headers)),
        (
            "GET",
            "/v1/jobs/{job_id}/segments/{index}/frames",
            client.get(f"/v1/jobs/{job_id}/segments/0/frames", headers=headers),
        ),
        ("GET", "/v1/exports/results", client.get("/v1/exports/results?format=jsonl", headers=headers)),
        ("POST", "/v1/batches", batch),
        ("POST", "/v1/batches/{batch_id}/recordings", added),
        ("POST", "/v1/batches/{batch_id}/close", client.post(f"/v1/batches/{batch_id}/close", headers=headers)),
        ("GET", "/v1/batches/{batch_id}", client.get(f"/v1/batches/{batch_id}", headers=headers)),
        ("GET", "/v1/batches/{batch_id}/jobs", client.get(f"/v1/batches/{batch_id}/jobs", headers=headers)),
        ("DELETE", "/v1/jobs/{job_id}", client.delete(f"/v1/jobs/{job_id}", headers=headers)),
        ("GET", "/v1/jobs/{job_id}", client.get(f"/v1/jobs/{job_id}", headers=headers)),
    ]
    for method, path, response in answers:
        schema[path][method].validate_response(response)
    statuses = [response.status_code for _, _, response in answers]
    assert all(code < 300 for code in statuses[:-1]) and statuses[-1] == 410, statuses  # the last: erased


# ---------- the page, in a browser ----------


@ui.needs_chromium
@pytest.mark.browser
def test_docs_shows_the_api_offline(app):
    from playwright.sync_api import expect, sync_playwright

    errors: list[str] = []
    fetched: list[str] = []
    with serving(app) as base, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(ui.CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
        try:
            page = ui.new_page(browser, errors)
            page.on("requestfinished", lambda request: fetched.append(request.url))
            page.goto(f"{base}/docs")
            expect(page.get_by_role("heading", name="emoq (0.1.0)")).to_be_visible()
            page.screenshot(path=ui.artifact("api-docs.png"))
            page.get_by_role("menuitem", name="jobs").click()
            page.get_by_role("menuitem", name="Submit a recording").click()
            expect(page.get_by_role("heading", name="Submit a recording")).to_be_in_viewport()
            page.get_by_role("button", name="400 The form or the recording was refused.").click()
            expect(page.get_by_text("multiple_files").first).to_be_visible()
            page.screenshot(path=ui.artifact("api-docs-submit.png"))
        finally:
            browser.close()
    # Redoc's sidebar credit has a logo hard-wired to its CDN: the CSP blocks it (the image then hides itself).
    errors = [e for e in errors if "cdn.redoc.ly/redoc/logo-mini.svg" not in e]
    assert errors == [], f"errors on the page: {errors}"
    foreign = [url for url in fetched if not url.startswith((base, "blob:", "data:"))]
    assert foreign == [], f"the page loaded from elsewhere: {foreign}"
