"""Who may do what on every route."""

from __future__ import annotations

import uuid

import pytest

from tests.conftest import submit, voiced, wav_bytes

ANY_ID = uuid.uuid4()

ROUTES = [
    ("post", "/v1/jobs"),
    ("get", "/v1/jobs"),
    ("get", f"/v1/jobs/{ANY_ID}"),
    ("get", f"/v1/jobs/{ANY_ID}/embedding"),
    ("get", "/v1/review-items"),
    ("post", f"/v1/review-items/{ANY_ID}/claim"),
    ("post", "/v1/review-items/claim-next"),
    ("post", f"/v1/review-items/{ANY_ID}/resolve"),
    ("get", "/v1/api-keys"),
    ("post", "/v1/api-keys"),
]


@pytest.mark.parametrize(("method", "url"), ROUTES)
def test_every_v1_route_needs_a_key(client, keys, method, url):
    for headers in ({}, {"Authorization": "Bearer not-a-key"}, {"Authorization": "Basic abc"}):
        response = getattr(client, method)(url, headers=headers)
        assert response.status_code == 401, (url, headers)
        assert response.mimetype == "application/problem+json"
        assert response.get_json()["code"] == "unauthorized"


@pytest.mark.parametrize(
    ("role", "method", "url"),
    [
        ("submitter", "get", "/v1/review-items"),
        ("submitter", "post", "/v1/review-items/claim-next"),
        ("submitter", "post", f"/v1/review-items/{ANY_ID}/resolve"),
        ("reviewer", "post", "/v1/jobs"),
        ("reviewer", "get", "/v1/api-keys"),
        ("submitter", "post", "/v1/api-keys"),
    ],
)
def test_wrong_role_is_forbidden(client, keys, role, method, url):
    response = getattr(client, method)(url, headers=keys[role])
    assert response.status_code == 403
    assert response.get_json()["code"] == "forbidden"


def test_submitters_see_only_their_own_jobs(client, keys):
    job_id = submit(client, keys["submitter"], wav_bytes(voiced(1.0))).get_json()["id"]
    assert client.get(f"/v1/jobs/{job_id}", headers=keys["submitter"]).status_code == 200
    assert client.get(f"/v1/jobs/{job_id}", headers=keys["submitter2"]).status_code == 404
    assert job_id not in [j["id"] for j in client.get("/v1/jobs", headers=keys["submitter2"]).get_json()["items"]]
    assert client.get(f"/v1/jobs/{job_id}", headers=keys["reviewer"]).status_code == 200


def test_admin_creates_and_revokes_keys(client, keys):
    created = client.post("/v1/api-keys", json={"name": "qa-team", "role": "submitter"}, headers=keys["admin"])
    assert created.status_code == 201
    new = created.get_json()
    headers = {"Authorization": f"Bearer {new['key']}"}
    assert client.get("/v1/jobs", headers=headers).status_code == 200
    listed = client.get("/v1/api-keys", headers=keys["admin"]).get_json()["items"]
    assert all("key" not in k and "key_hash" not in k for k in listed)
    assert client.delete(f"/v1/api-keys/{new['id']}", headers=keys["admin"]).status_code == 200
    assert client.get("/v1/jobs", headers=headers).status_code == 401
    bad = client.post("/v1/api-keys", json={"name": "x", "role": "root"}, headers=keys["admin"])
    assert bad.status_code == 400 and bad.get_json()["code"] == "invalid_role"


def test_bootstrap_key_is_idempotent(settings, database, redis_client, store, sessions, keys):
    from sqlalchemy import func, select

    from api import create_app
    from models import ApiKey

    configured = settings.override({"EMOQ_BOOTSTRAP_API_KEY": "local-dev-admin-key"})
    create_app(configured)
    app = create_app(configured)
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(ApiKey).where(ApiKey.name == "bootstrap")) == 1
    response = app.test_client().get("/v1/api-keys", headers={"Authorization": "Bearer local-dev-admin-key"})
    assert response.status_code == 200


def test_unknown_route_and_method_are_problems(client, keys):
    assert client.get("/nope").get_json()["code"] == "not_found"
    response = client.put("/v1/jobs", headers=keys["admin"])
    assert response.status_code == 405 and response.mimetype == "application/problem+json"


def test_bootstrap_key_survives_api_processes_starting_together(
    settings, database, redis_client, store, sessions, keys
):
    import threading

    from sqlalchemy import func, select

    from api import create_app
    from domain.api_keys import lookup_of
    from models import ApiKey

    configured = settings.override({"EMOQ_BOOTSTRAP_API_KEY": "raced-admin-key"})
    barrier, errors = threading.Barrier(3), []

    def start():
        barrier.wait()
        try:
            create_app(configured)
        except Exception as exc:  # the race this test is about
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with sessions() as session:
        assert (
            session.scalar(
                select(func.count()).select_from(ApiKey).where(ApiKey.lookup == lookup_of("raced-admin-key"))
            )
            == 1
        )
