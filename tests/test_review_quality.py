"""Review v2 over HTTP: double review with blinding, adjudication, correction
and reopening by admins, the append-only history, filters, counts and priority."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from domain.review_queue import agreed_labels
from models import ReviewItem
from models.db import transaction
from tests.conftest import wait_until
from tests.factories import key_id, make_review_item
from tests.test_review import make_recorded_review_item, stereo_tones


def claim_and_decide(client, headers, item_id, labels, note=None) -> dict:
    claimed = client.post(f"/v1/review-items/{item_id}/claim", headers=headers)
    assert claimed.status_code == 200, claimed.get_json()
    done = client.post(f"/v1/review-items/{item_id}/resolve", json={"labels": labels, "note": note}, headers=headers)
    assert done.status_code == 200, done.get_json()
    return done.get_json()


def history(client, headers, item_id) -> list[dict]:
    response = client.get(f"/v1/review-items/{item_id}/history", headers=headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["events"]


def test_double_review_needs_two_different_reviewers_who_do_not_see_each_other(client, keys, sessions):
    item_id = make_review_item(sessions, key_id(sessions, "submitter"), required_decisions=2)

    first = claim_and_decide(client, keys["reviewer"], item_id, ["fearful"], note="a gasp")
    assert first["status"] == "pending" and first["decisions_made"] == 1 and first["final_labels"] is None
    assert first["your_labels"] == ["fearful"]

    again = client.post(f"/v1/review-items/{item_id}/claim", headers=keys["reviewer"])
    assert again.status_code == 409 and again.get_json()["code"] == "already_decided"
    assert client.post("/v1/review-items/claim-next", headers=keys["reviewer"]).get_json()["code"] == "queue_empty"
    assert client.get("/v1/review-items?status=pending", headers=keys["reviewer"]).get_json()["items"] == []

    # The second reviewer sees that someone decided, never what.
    waiting = client.get("/v1/review-items?status=pending", headers=keys["reviewer2"]).get_json()["items"]
    assert [i["id"] for i in waiting] == [str(item_id)]
    seen = client.get(f"/v1/review-items/{item_id}", headers=keys["reviewer2"]).get_json()
    assert "decisions" not in seen and seen["your_labels"] is None and seen["decisions_made"] == 1
    blind = history(client, keys["reviewer2"], item_id)
    assert [e["kind"] for e in blind] == ["claimed", "decided"]
    assert "fearful" not in json.dumps(blind) and "a gasp" not in json.dumps(blind)
    assert "fearful" in json.dumps(history(client, keys["admin"], item_id))  # admins see everything
    admin_view = client.get(f"/v1/review-items/{item_id}", headers=keys["admin"]).get_json()
    assert [d["labels"] for d in admin_view["decisions"]] == [["fearful"]]

    second = claim_and_decide(client, keys["reviewer2"], item_id, ["fearful", "sad"])
    assert second["status"] == "resolved" and second["final_labels"] == ["fearful"]  # agreed on the first label
    kinds = [e["kind"] for e in history(client, keys["reviewer2"], item_id)]
    assert kinds == ["claimed", "decided", "claimed", "decided", "resolved"]
    assert "fearful" in json.dumps(history(client, keys["reviewer2"], item_id))  # final: no longer blinded


def test_a_disagreement_waits_for_an_admin(client, keys, sessions):
    item_id = make_review_item(sessions, key_id(sessions, "submitter"), required_decisions=2)
    claim_and_decide(client, keys["reviewer"], item_id, ["disgusted"])
    split = claim_and_decide(client, keys["reviewer2"], item_id, ["fearful"])
    assert split["status"] == "disagreement" and split["final_labels"] is None

    refused = client.post(f"/v1/review-items/{item_id}/claim", headers=keys["reviewer2"])
    assert refused.status_code == 409 and refused.get_json()["code"] == "awaiting_adjudication"
    disputed = client.get("/v1/review-items?status=disagreement", headers=keys["admin"]).get_json()["items"]
    assert [(i["id"], len(i["decisions"])) for i in disputed] == [(str(item_id), 2)]
    as_reviewer = client.post(
        f"/v1/review-items/{item_id}/adjudicate", json={"labels": ["fearful"]}, headers=keys["reviewer"]
    )
    assert as_reviewer.status_code == 403

    ruled = client.post(
        f"/v1/review-items/{item_id}/adjudicate", json={"labels": ["disgusted"], "note": "retch"}, headers=keys["admin"]
    )
    assert ruled.status_code == 200, ruled.get_json()
    body = ruled.get_json()
    assert body["status"] == "resolved" and body["final_labels"] == ["disgusted"]
    assert [d["kind"] for d in body["decisions"]] == ["review", "review", "adjudication"]
    twice = client.post(f"/v1/review-items/{item_id}/adjudicate", json={"labels": ["sad"]}, headers=keys["admin"])
    assert twice.status_code == 409 and twice.get_json()["code"] == "not_in_disagreement"


def test_labels_one_or_two_different_ones_from_the_nine(client, keys, sessions):
    item_id = make_review_item(sessions, key_id(sessions, "submitter"))
    client.post(f"/v1/review-items/{item_id}/claim", headers=keys["reviewer"])
    for labels in (["fearful", "disgusted", "sad"], ["fearful", "fearful"], [], ["scared"]):
        bad = client.post(f"/v1/review-items/{item_id}/resolve", json={"labels": labels}, headers=keys["reviewer"])
        assert bad.status_code == 400 and bad.get_json()["code"] == "invalid_label", labels
    long_note = client.post(
        f"/v1/review-items/{item_id}/resolve", json={"label": "sad", "note": "x" * 4001}, headers=keys["reviewer"]
    )
    assert long_note.status_code == 400
    dual = client.post(
        f"/v1/review-items/{item_id}/resolve", json={"labels": ["fearful", "disgusted"]}, headers=keys["reviewer"]
    )
    assert dual.get_json()["final_labels"] == ["fearful", "disgusted"]


@pytest.mark.parametrize(
    "first, second, final",
    [
        (["fearful"], ["fearful"], ["fearful"]),
        (["fearful", "disgusted"], ["fearful", "disgusted"], ["fearful", "disgusted"]),
        (["fearful", "disgusted"], ["fearful", "sad"], ["fearful"]),
        (["fearful", "disgusted"], ["fearful"], ["fearful"]),
        (["fearful", "disgusted"], ["disgusted", "fearful"], None),
        (["sad"], ["angry"], None),
    ],
)
def test_two_decisions_agree_on_their_first_label(first, second, final):
    assert agreed_labels(first, second) == final


def test_an_admin_corrects_and_reopens_and_the_history_keeps_every_decision(client, keys, sessions):
    item_id = make_review_item(sessions, key_id(sessions, "submitter"))
    claim_and_decide(client, keys["reviewer"], item_id, ["fearful"])
    assert client.post(
        f"/v1/review-items/{item_id}/correct", json={"labels": ["sad"]}, headers=keys["reviewer"]
    ).status_code == 403  # fmt: skip
    corrected = client.post(
        f"/v1/review-items/{item_id}/correct", json={"labels": ["sad"], "note": "crying"}, headers=keys["admin"]
    )
    assert corrected.status_code == 200 and corrected.get_json()["final_labels"] == ["sad"]

    assert client.post(f"/v1/review-items/{item_id}/reopen", headers=keys["reviewer"]).status_code == 403
    reopened = client.post(f"/v1/review-items/{item_id}/reopen", json={"note": "listen again"}, headers=keys["admin"])
    body = reopened.get_json()
    assert reopened.status_code == 200 and body["status"] == "pending" and body["round"] == 2
    assert body["final_labels"] is None
    not_final = client.post(f"/v1/review-items/{item_id}/correct", json={"labels": ["sad"]}, headers=keys["admin"])
    assert not_final.status_code == 409 and not_final.get_json()["code"] == "not_resolved"
    # A new round: the first reviewer may decide again.
    final = claim_and_decide(client, keys["reviewer"], item_id, ["happy"])
    assert final["final_labels"] == ["happy"] and final["status"] == "resolved"

    events = history(client, keys["reviewer2"], item_id)
    assert [e["kind"] for e in events] == [
        "claimed", "decided", "resolved", "corrected", "reopened", "claimed", "decided", "resolved",
    ]  # fmt: skip
    assert [e["actor"]["name"] if e["actor"] else None for e in events] == [
        "reviewer", "reviewer", "reviewer", "admin", "admin", "reviewer", "reviewer", "reviewer",
    ]  # fmt: skip
    assert events[3]["details"]["previous"] == ["fearful"] and events[3]["details"]["labels"] == ["sad"]
    assert events[4]["details"] == {"previous": ["sad"], "note": "listen again"}
    decisions = client.get(f"/v1/review-items/{item_id}", headers=keys["admin"]).get_json()["decisions"]
    assert [(d["kind"], d["round"], d["labels"]) for d in decisions] == [
        ("review", 1, ["fearful"]), ("correction", 1, ["sad"]), ("review", 2, ["happy"]),
    ]  # fmt: skip
    unknown = client.get(f"/v1/review-items/{uuid.uuid4()}/history", headers=keys["admin"])
    assert unknown.status_code == 404 and unknown.get_json()["code"] == "review_item_not_found"
    assert client.get(f"/v1/review-items/{item_id}/history", headers=keys["submitter"]).status_code == 403


def test_release_an_expired_lease_and_playback_are_in_the_history(
    settings, database, redis_client, store, keys, sessions
):
    from api import create_app

    client = create_app(settings.override({"EMOQ_REVIEW_LEASE_SECONDS": 1})).test_client()
    item_id = make_review_item(sessions, key_id(sessions, "submitter"))
    assert client.post(f"/v1/review-items/{item_id}/claim", headers=keys["reviewer"]).status_code == 200
    assert client.post(f"/v1/review-items/{item_id}/claim", headers=keys["reviewer"]).status_code == 200  # renewed
    played = client.post(f"/v1/review-items/{item_id}/played", json={"scope": "focus"}, headers=keys["reviewer"])
    assert played.status_code == 204
    bad = client.post(f"/v1/review-items/{item_id}/played", json={"scope": "radio"}, headers=keys["reviewer"])
    assert bad.status_code == 400
    wait_until(
        lambda: client.get("/v1/review-items?status=pending", headers=keys["reviewer2"]).get_json()["items"],
        10,
        "the lease to expire",
    )
    assert client.post(f"/v1/review-items/{item_id}/claim", headers=keys["reviewer2"]).status_code == 200
    assert client.post(f"/v1/review-items/{item_id}/release", headers=keys["reviewer2"]).status_code == 200
    events = history(client, keys["admin"], item_id)
    assert [(e["kind"], e["actor"]["name"]) for e in events] == [
        ("claimed", "reviewer"),
        ("audio_played", "reviewer"),
        ("lease_expired", "reviewer"),
        ("claimed", "reviewer2"),
        ("released", "reviewer2"),
    ]
    assert events[1]["details"] == {"scope": "focus"}


def test_filters_counts_and_priority_steer_the_queue(client, keys, sessions):
    submitter = key_id(sessions, "submitter")
    oldest = make_review_item(sessions, submitter, reasons=["low_confidence"], priority=2, domain="support")
    fear = make_review_item(sessions, submitter, reasons=["fear_disgust_ambiguous"], priority=0, domain="sales")
    dual = make_review_item(
        sessions, submitter, reasons=["dual_emotion", "low_snr"], priority=1, domain="support",
        job_fields={"external_id": "call-9"},
    )  # fmt: skip
    reviewer = keys["reviewer"]

    counts = client.get("/v1/review-items/counts", headers=reviewer).get_json()
    assert counts == {
        "waiting": 3,
        "reasons": {"dual_emotion": 1, "fear_disgust_ambiguous": 1, "low_confidence": 1, "low_snr": 1},
        "you": {"name": "reviewer", "role": "reviewer"},
    }
    support = client.get("/v1/review-items/counts?domain=support&reason=low_snr", headers=reviewer).get_json()
    assert (support["waiting"], support["reasons"]) == (1, {"dual_emotion": 1, "low_confidence": 1, "low_snr": 1})

    def listed(query: str) -> list[str]:
        response = client.get(f"/v1/review-items?status=pending&{query}", headers=reviewer)
        assert response.status_code == 200, response.get_json()
        return [i["id"] for i in response.get_json()["items"]]

    assert listed("reason=dual_emotion") == [str(dual)]
    assert sorted(listed("reason=low_confidence,fear_disgust_ambiguous")) == sorted([str(oldest), str(fear)])
    assert listed("external_id=call-9") == [str(dual)]
    with sessions() as session:
        assert listed(f"job_id={session.get(ReviewItem, fear).job_id}") == [str(fear)]
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    assert listed(f"since={tomorrow}") == [] and len(listed(f"until={tomorrow}")) == 3
    bad = client.get("/v1/review-items?reason=boredom", headers=reviewer)
    assert bad.status_code == 400 and bad.get_json()["code"] == "invalid_reason"
    assert client.get("/v1/review-items?job_id=7", headers=reviewer).get_json()["code"] == "invalid_job_id"

    # Fear/disgust first, then by the configured order; within a filter, its first item.
    assert client.post("/v1/review-items/claim-next?domain=support", headers=reviewer).get_json()["id"] == str(dual)
    assert client.post("/v1/review-items/claim-next", headers=keys["reviewer2"]).get_json()["id"] == str(fear)
    assert client.post("/v1/review-items/claim-next", headers=keys["admin"]).get_json()["id"] == str(oldest)
    empty = client.post("/v1/review-items/claim-next?domain=sales", headers=reviewer)
    assert empty.status_code == 404 and empty.get_json()["code"] == "queue_empty"


def test_an_item_comes_with_its_evidence(client, keys, sessions, store):
    submitter = key_id(sessions, "submitter")
    item_id = make_recorded_review_item(
        sessions, store, stereo_tones(), submitter, start=2.0, end=3.5, channel=1, recording_seconds=6.0, channels=2
    )
    with transaction(sessions) as session:
        job = session.get(ReviewItem, item_id).result.job
        job.external_id, job.domain, job.channel_roles = "call-42", "support", ["agent", "customer"]
    body = client.get(f"/v1/review-items/{item_id}", headers=keys["reviewer"]).get_json()
    assert body["evidence"]["call"] == {
        "external_id": "call-42",
        "batch_id": None,  # not submitted in a batch
        "batch_name": None,
        "domain": "support",
        "duration_seconds": 6.0,
        "channels": 2,
        "channel_roles": ["agent", "customer"],
        "submitted_at": body["evidence"]["call"]["submitted_at"],
    }
    assert body["evidence"]["segment"] == {"index": 0, "role": "customer", "start": 2.0, "end": 3.5, "channel": 1}
    assert body["evidence"]["model"]["random_weights"] is True
    claimed = client.post("/v1/review-items/claim-next", headers=keys["reviewer"]).get_json()
    assert claimed["held_by_you"] is True and claimed["evidence"]["call"]["external_id"] == "call-42"
    assert client.get(f"/v1/review-items/{item_id}", headers=keys["reviewer2"]).get_json()["held_by_you"] is False
    assert client.get(f"/v1/review-items/{uuid.uuid4()}", headers=keys["reviewer"]).status_code == 404
    assert client.get(f"/v1/review-items/{item_id}", headers=keys["submitter"]).status_code == 403


def test_who_may_call_what(client, keys, sessions):
    item_id = make_review_item(sessions, key_id(sessions, "submitter"))
    routes = [
        ("get", "/v1/review-items/counts"),
        ("get", f"/v1/review-items/{item_id}"),
        ("get", f"/v1/review-items/{item_id}/history"),
        ("post", f"/v1/review-items/{item_id}/played"),
        ("post", f"/v1/review-items/{item_id}/adjudicate"),
        ("post", f"/v1/review-items/{item_id}/correct"),
        ("post", f"/v1/review-items/{item_id}/reopen"),
        ("get", "/v1/review-stats"),
    ]
    admin_only = {"adjudicate", "correct", "reopen", "review-stats"}
    for method, path in routes:
        call = getattr(client, method)
        assert call(path).status_code == 401, path
        assert call(path, headers=keys["submitter"]).status_code == 403, path
        as_reviewer = call(path, headers=keys["reviewer"], json={"scope": "segment"})
        if path.rsplit("/", 1)[-1] in admin_only:
            assert as_reviewer.status_code == 403, path
        else:
            assert as_reviewer.status_code in (200, 204), (path, as_reviewer.get_json())
