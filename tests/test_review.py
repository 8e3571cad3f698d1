"""The review queue: claims are leases, exactly one reviewer wins."""

from __future__ import annotations

import threading

from tests.conftest import wait_until
from tests.factories import key_id, make_review_item


def test_claim_and_resolve(client, keys, sessions):
    item_id = make_review_item(sessions, key_id(sessions, "submitter"))
    pending = client.get("/v1/review-items?status=pending", headers=keys["reviewer"]).get_json()["items"]
    assert [i["id"] for i in pending] == [str(item_id)]
    assert pending[0]["reasons"] == ["fear_disgust_ambiguous"]

    claimed = client.post(f"/v1/review-items/{item_id}/claim", headers=keys["reviewer"])
    assert claimed.status_code == 200 and claimed.get_json()["status"] == "claimed"
    assert client.get("/v1/review-items?status=pending", headers=keys["reviewer"]).get_json()["items"] == []

    other = client.post(f"/v1/review-items/{item_id}/resolve", json={"label": "fearful"}, headers=keys["reviewer2"])
    assert other.status_code == 409 and other.get_json()["code"] == "not_claimed"
    bad = client.post(f"/v1/review-items/{item_id}/resolve", json={"label": "scared"}, headers=keys["reviewer"])
    assert bad.status_code == 400 and bad.get_json()["code"] == "invalid_label"

    done = client.post(
        f"/v1/review-items/{item_id}/resolve", json={"label": "disgusted", "note": "retching"}, headers=keys["reviewer"]
    )
    assert done.status_code == 200
    assert done.get_json()["resolved_label"] == "disgusted" and done.get_json()["status"] == "resolved"
    again = client.post(f"/v1/review-items/{item_id}/resolve", json={"label": "fearful"}, headers=keys["reviewer"])
    assert again.status_code == 409 and again.get_json()["code"] == "already_resolved"
    resolved = client.get("/v1/review-items?status=resolved", headers=keys["reviewer"]).get_json()["items"]
    assert [i["note"] for i in resolved] == ["retching"]


def test_concurrent_claims_have_exactly_one_winner(app, keys, sessions):
    submitter = key_id(sessions, "submitter")
    for _ in range(10):
        item_id = make_review_item(sessions, submitter)
        barrier = threading.Barrier(2)
        statuses: list[int] = []

        def claim(headers):
            client = app.test_client()
            barrier.wait()
            statuses.append(client.post(f"/v1/review-items/{item_id}/claim", headers=headers).status_code)

        threads = [threading.Thread(target=claim, args=(keys[name],)) for name in ("reviewer", "reviewer2")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(statuses) == [200, 409]


def test_expired_lease_returns_the_item_to_the_queue(settings, database, redis_client, store, keys, sessions):
    from api import create_app

    app = create_app(settings.model_copy(update={"review_lease_seconds": 1}))
    client = app.test_client()
    item_id = make_review_item(sessions, key_id(sessions, "submitter"))
    assert client.post(f"/v1/review-items/{item_id}/claim", headers=keys["reviewer"]).status_code == 200
    assert client.post(f"/v1/review-items/{item_id}/claim", headers=keys["reviewer2"]).status_code == 409
    wait_until(
        lambda: client.get("/v1/review-items?status=pending", headers=keys["reviewer2"]).get_json()["items"],
        10,
        "the lease to expire",
    )
    assert client.post(f"/v1/review-items/{item_id}/claim", headers=keys["reviewer2"]).status_code == 200
    late = client.post(f"/v1/review-items/{item_id}/resolve", json={"label": "fearful"}, headers=keys["reviewer"])
    assert late.status_code == 409


def test_claim_next_takes_the_oldest_and_reports_an_empty_queue(client, keys, sessions):
    submitter = key_id(sessions, "submitter")
    first, second = make_review_item(sessions, submitter), make_review_item(sessions, submitter)
    assert client.post("/v1/review-items/claim-next", headers=keys["reviewer"]).get_json()["id"] == str(first)
    assert client.post("/v1/review-items/claim-next", headers=keys["reviewer2"]).get_json()["id"] == str(second)
    empty = client.post("/v1/review-items/claim-next", headers=keys["reviewer"])
    assert empty.status_code == 404 and empty.get_json()["code"] == "queue_empty"


def test_release_puts_the_item_back(client, keys, sessions):
    item_id = make_review_item(sessions, key_id(sessions, "submitter"))
    client.post(f"/v1/review-items/{item_id}/claim", headers=keys["reviewer"])
    assert client.post(f"/v1/review-items/{item_id}/release", headers=keys["reviewer2"]).status_code == 409
    assert client.post(f"/v1/review-items/{item_id}/release", headers=keys["reviewer"]).status_code == 200
    assert client.post(f"/v1/review-items/{item_id}/claim", headers=keys["reviewer2"]).status_code == 200
