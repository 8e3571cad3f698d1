"""Outages of PostgreSQL, Redis or S3: every route answers within 2 s with a
coded 503 and Retry-After (or, for Redis, accepts the upload: the job row is
committed and the sweep publishes it), /readyz says what is missing, and the
API recovers by itself when the service returns. The shared servers are never
stopped: the app under test points at a dead port or at a proxy that is cut."""

from __future__ import annotations

import io
import time
import uuid

import pytest
from sqlalchemy import func, make_url, select

from models import Job
from tests.conftest import voiced, wav_bytes
from tests.tcp_proxy import TcpProxy

DEAD = "127.0.0.1:1"  # nothing listens on port 1: connections are refused at once
JOB = f"/v1/jobs/{uuid.uuid4()}"
ITEM = f"/v1/review-items/{uuid.uuid4()}"


def make_app(settings, **overrides):
    from api import create_app

    return create_app(settings.override(overrides))


def timed(client, method: str, path: str, **kwargs):
    started = time.monotonic()
    response = client.open(path, method=method, **kwargs)
    return response, time.monotonic() - started


def upload() -> dict:
    return {"data": {"file": (io.BytesIO(wav_bytes(voiced(1.0))), "call.wav")}}


def job_count(sessions) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(Job))


def assert_unavailable(response, elapsed: float, code: str) -> None:
    assert response.status_code == 503, response.get_data(as_text=True)[:300]
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["code"] == code
    assert int(response.headers["Retry-After"]) > 0
    assert elapsed < 2.0


ROUTES = [
    ("POST", "/v1/jobs", "submitter"),
    ("GET", "/v1/jobs", "submitter"),
    ("GET", JOB, "submitter"),
    ("GET", JOB + "/embedding", "submitter"),
    ("GET", JOB + "/segments/0/frames", "submitter"),
    ("GET", "/v1/exports/results", "submitter"),
    ("GET", "/v1/review-items", "reviewer"),
    ("POST", "/v1/review-items/claim-next", "reviewer"),
    ("POST", ITEM + "/resolve", "reviewer"),
    ("GET", ITEM + "/audio", "reviewer"),
    ("GET", "/v1/api-keys", "admin"),
    ("POST", "/v1/api-keys", "admin"),
]


@pytest.mark.parametrize(("method", "path", "role"), ROUTES)
def test_database_down_every_route_is_a_coded_503(settings, keys, store, method, path, role):
    app = make_app(settings, EMOQ_DATABASE_URL=f"postgresql+psycopg://postgres@{DEAD}/emoq")
    kwargs = upload() if method == "POST" and path == "/v1/jobs" else {}
    response, elapsed = timed(app.test_client(), method, path, headers=keys[role], **kwargs)
    assert_unavailable(response, elapsed, "database_unavailable")


def test_database_down_readyz_answers_quickly(settings, redis_client, store):
    app = make_app(settings, EMOQ_DATABASE_URL=f"postgresql+psycopg://postgres@{DEAD}/emoq")
    response, elapsed = timed(app.test_client(), "GET", "/readyz")
    assert response.status_code == 503 and elapsed < 2.0
    assert response.headers["Retry-After"]
    body = response.get_json()
    assert body["accepting_uploads"] is False and body["checks"]["database"]["ok"] is False
    assert body["checks"]["s3"]["ok"] is True


def test_storage_down_uploads_are_503_and_leave_no_row(settings, keys, sessions, redis_client):
    app = make_app(settings, EMOQ_S3_ENDPOINT=DEAD)
    client = app.test_client()
    before = job_count(sessions)
    response, elapsed = timed(client, "POST", "/v1/jobs", headers=keys["submitter"], **upload())
    assert_unavailable(response, elapsed, "storage_unavailable")
    assert job_count(sessions) == before
    # What needs only the database still works.
    assert client.get("/v1/jobs", headers=keys["submitter"]).status_code == 200
    ready, elapsed = timed(client, "GET", "/readyz")
    assert ready.status_code == 503 and elapsed < 2.0
    assert ready.get_json()["checks"]["s3"]["ok"] is False and ready.get_json()["accepting_uploads"] is False


def test_redis_down_uploads_are_kept_for_the_sweep(settings, keys, sessions, store):
    app = make_app(settings, EMOQ_REDIS_URL=f"redis://{DEAD}/0")
    client = app.test_client()
    response, elapsed = timed(client, "POST", "/v1/jobs", headers=keys["submitter"], **upload())
    assert response.status_code == 202 and elapsed < 2.0
    with sessions() as session:
        job = session.get(Job, uuid.UUID(response.get_json()["id"]))
    # Committed but not published: the sweep publishes jobs without enqueued_at.
    assert job.status == "queued" and job.enqueued_at is None
    ready, elapsed = timed(client, "GET", "/readyz")
    assert ready.status_code == 503 and elapsed < 2.0
    body = ready.get_json()
    assert body["accepting_uploads"] is True and body["analysis_ready"] is False
    assert body["checks"]["redis"]["ok"] is False


def test_the_api_recovers_when_the_database_returns(settings, keys, database):
    url = make_url(settings.storage.database_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432).start()
    try:
        proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        client = make_app(settings, EMOQ_DATABASE_URL=proxied).test_client()
        assert client.get("/v1/jobs", headers=keys["submitter"]).status_code == 200
        proxy.stop()
        response, elapsed = timed(client, "GET", "/v1/jobs", headers=keys["submitter"])
        assert_unavailable(response, elapsed, "database_unavailable")
        proxy.start()
        assert client.get("/v1/jobs", headers=keys["submitter"]).status_code == 200
    finally:
        proxy.stop()


def test_the_api_recovers_when_storage_returns(settings, keys, sessions, redis_client):
    host, port = settings.storage.s3_endpoint.rsplit(":", 1)
    proxy = TcpProxy(host, int(port)).start()
    try:
        client = make_app(settings, EMOQ_S3_ENDPOINT=f"127.0.0.1:{proxy.port}").test_client()
        assert client.post("/v1/jobs", headers=keys["submitter"], **upload()).status_code == 202
        proxy.stop()
        response, elapsed = timed(client, "POST", "/v1/jobs", headers=keys["submitter"], **upload())
        assert_unavailable(response, elapsed, "storage_unavailable")
        proxy.start()
        assert client.post("/v1/jobs", headers=keys["submitter"], **upload()).status_code == 202
    finally:
        proxy.stop()
