"""The human answer reaches the analysts: the job's result, the list filter,
the exports and the review.resolved webhook."""

from __future__ import annotations

import csv
import io
import json
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import select, update

from analysis.labels import EMOTION_LABELS
from domain.review_outcome import SegmentReview, with_reviews
from models import Batch, Job, Result, ReviewDecision, ReviewItem
from models.db import transaction
from tests.conftest import wait_until
from tests.factories import key_id
from tests.test_webhooks import receiver  # noqa: F401  (a fixture)
from worker.webhooks import deliver_review, signature


def scores(**values: float) -> dict[str, float]:
    return {label: values.get(label, 0.0) for label in EMOTION_LABELS}


def segment(index: int, start: float, end: float, label: str, no_speech: bool = False, **values: float) -> dict:
    return {
        "index": index,
        "channel": 0,
        "role": "customer",
        "start": start,
        "end": end,
        "scores": scores(**values),
        "primary": {"label": label, "confidence": max(values.values())},
        "flags": ["no_speech"] if no_speech else [],
        "quality": {"flags": ["no_speech"] if no_speech else []},
    }


CALL = [
    segment(0, 0.0, 4.0, "neutral", neutral=0.6, angry=0.4),
    segment(1, 4.0, 6.0, "fearful", fearful=0.5, disgusted=0.45, neutral=0.05),
    segment(2, 6.0, 9.0, "unknown", no_speech=True, unknown=0.9, neutral=0.1),
]


def human(labels: list[str]) -> SegmentReview:
    return SegmentReview(uuid.uuid4(), "resolved", ["fear_disgust_ambiguous"], labels, "reviewer", datetime.now(UTC))


def result_of(segments: list[dict]) -> dict:
    return {"primary": {"label": "neutral", "confidence": 0.42}, "segments": segments}


def test_without_a_human_answer_the_final_label_is_the_model_s():
    pending = SegmentReview(uuid.uuid4(), "pending", ["fear_disgust_ambiguous"], None, None, None)
    reviewed = with_reviews(result_of(CALL), {1: pending})
    assert reviewed["final"] == {"label": "neutral", "confidence": 0.42, "source": "model", "human_segments": 0}
    assert reviewed["segments"][1]["final"] == {"label": "fearful", "labels": ["fearful"], "source": "model"}
    assert reviewed["segments"][1]["review"]["status"] == "pending"
    assert reviewed["segments"][0]["review"] is None
    assert "final" not in CALL[1] and "review" not in CALL[1]  # the stored result is left alone


def test_human_labels_take_the_segment_s_place_in_the_duration_weighted_rule():
    # neutral 4·0.6 = 2.4, angry 4·0.4 = 1.6; segment 1 (2 s) becomes disgusted: 2.0. Silence does not count.
    one = with_reviews(result_of(CALL), {1: human(["disgusted"])})
    assert one["segments"][1]["final"] == {"label": "disgusted", "labels": ["disgusted"], "source": "human"}
    assert one["final"]["label"] == "neutral" and one["final"]["source"] == "human"
    assert one["final"]["confidence"] == pytest.approx(2.4 / 6.0)
    # The first segment heard as angry: angry 4, disgusted 2 (of 6 s of speech).
    two = with_reviews(result_of(CALL), {0: human(["angry"]), 1: human(["disgusted"])})
    assert (two["final"]["label"], two["final"]["human_segments"]) == ("angry", 2)
    assert two["final"]["confidence"] == pytest.approx(4 / 6)
    # Two labels share their segment's weight (2 s each here; a tie goes to the first label in the 9's order).
    dual = with_reviews(result_of(CALL), {0: human(["sad", "angry"])})
    assert dual["final"]["label"] == "angry" and dual["final"]["confidence"] == pytest.approx(2.0 / 6.0)
    # A human answer on the silence alone does not move a call that has speech.
    silent = with_reviews(result_of(CALL), {2: human(["neutral"])})
    assert silent["final"]["source"] == "model"


def make_reviewed_job(
    sessions, submitter, *, external_id: str, callback_url: str | None = None, batch_id: uuid.UUID | None = None
) -> uuid.UUID:
    """A succeeded job with the CALL result and a pending review item on segment 1."""
    with transaction(sessions) as session:
        job = Job(
            object_key="recordings/none", sha256="0" * 64, size_bytes=1, submitter_id=submitter, status="succeeded",
            granularity="utterance", external_id=external_id, callback_url=callback_url,
            finished_at=datetime.now(UTC), batch_id=batch_id,
        )  # fmt: skip
        session.add(job)
        session.flush()
        result = Result(
            job_id=job.id, model_id="test", model_revision="test", model_random_weights=True, primary_label="neutral",
            primary_confidence=0.42, scores=scores(neutral=0.42), embedding=[0.0] * 4, embedding_dim=4,
            enhancement={}, flags=["fear_disgust_ambiguous"], segments=CALL, aggregate={},
        )  # fmt: skip
        session.add(result)
        session.flush()
        item = ReviewItem(
            job_id=job.id, result_id=result.id, segment_index=1, start_seconds=4.0, end_seconds=6.0,
            channel_role="customer", embedding=[0.0] * 4, model_scores=CALL[1]["scores"], model_label="fearful",
            reasons=["fear_disgust_ambiguous"], reason_details={}, status="pending",
        )  # fmt: skip
        session.add(item)
        session.flush()
        return item.id


def resolve(client, headers, item_id, labels) -> None:
    assert client.post(f"/v1/review-items/{item_id}/claim", headers=headers).status_code == 200
    done = client.post(f"/v1/review-items/{item_id}/resolve", json={"labels": labels}, headers=headers)
    assert done.status_code == 200, done.get_json()


def test_the_human_label_is_in_the_job_the_list_and_the_exports(client, keys, sessions):
    submitter = key_id(sessions, "submitter")
    item_id = make_reviewed_job(sessions, submitter, external_id="call-1")
    other = make_reviewed_job(sessions, submitter, external_id="call-2")
    with sessions() as session:
        job_id = session.get(ReviewItem, item_id).job_id
        other_job = session.get(ReviewItem, other).job_id

    def listed(review: str) -> list[str]:
        return [j["id"] for j in client.get(f"/v1/jobs?review={review}", headers=keys["submitter"]).get_json()["items"]]

    assert sorted(listed("pending")) == sorted([str(job_id), str(other_job)]) and listed("resolved") == []
    resolve(client, keys["reviewer"], item_id, ["disgusted", "angry"])
    assert listed("pending") == [str(other_job)] and listed("resolved") == [str(job_id)]
    bad = client.get("/v1/jobs?review=maybe", headers=keys["submitter"])
    assert bad.status_code == 400 and bad.get_json()["code"] == "invalid_review"

    body = client.get(f"/v1/jobs/{job_id}", headers=keys["submitter"]).get_json()
    seg = body["result"]["segments"][1]
    assert seg["primary"]["label"] == "fearful"  # what the model said stays as it was
    assert seg["final"] == {"label": "disgusted", "labels": ["disgusted", "angry"], "source": "human"}
    assert seg["review"]["status"] == "resolved" and seg["review"]["labels"] == ["disgusted", "angry"]
    assert seg["review"]["reviewer"] == "reviewer" and seg["review"]["resolved_at"]
    assert body["result"]["primary"]["label"] == "neutral" and body["result"]["final"]["source"] == "human"
    assert body["review"] == {"items": 1, "resolved": 1, "open": 0}
    summary = next(
        j for j in client.get("/v1/jobs", headers=keys["reviewer"]).get_json()["items"] if j["id"] == str(job_id)
    )
    assert summary["final"]["source"] == "human" and summary["review"]["resolved"] == 1

    exported = client.get("/v1/exports/results?format=csv", headers=keys["submitter"]).get_data(as_text=True)
    rows = {r["external_id"]: r for r in csv.DictReader(io.StringIO(exported))}
    assert rows["call-1"]["human_labels"] == "1:disgusted+angry" and rows["call-1"]["reviewers"] == "reviewer"
    assert (rows["call-1"]["review_items"], rows["call-1"]["review_resolved"]) == ("1", "1")
    assert rows["call-1"]["final_source"] == "human" and rows["call-1"]["last_resolved_at"]
    assert rows["call-2"]["human_labels"] == "" and rows["call-2"]["final_source"] == "model"
    lines = client.get("/v1/exports/results?format=jsonl", headers=keys["reviewer"]).get_data(as_text=True)
    by_id = {line["external_id"]: line for line in map(json.loads, lines.splitlines())}
    assert by_id["call-1"]["result"]["segments"][1]["final"]["labels"] == ["disgusted", "angry"]


def test_a_final_answer_is_announced_to_the_job_s_callback(client, keys, sessions, worker, settings, request):
    url, received, _ = request.getfixturevalue("receiver")
    item_id = make_reviewed_job(sessions, key_id(sessions, "submitter"), external_id="call-5", callback_url=url)
    resolve(client, keys["reviewer"], item_id, ["disgusted"])
    wait_until(lambda: received, 60, "the review.resolved webhook")
    (hit,) = received
    event = json.loads(hit["body"])
    assert hit["headers"]["X-Emoq-Event"] == "review.resolved"
    with sessions() as session:
        job_id = str(session.get(ReviewItem, item_id).job_id)
    assert event == {
        "event": "review.resolved",
        "id": event["id"],
        "job_id": job_id,
        "external_id": "call-5",
        "review_item_id": str(item_id),
        "segment": {"index": 1, "start": 4.0, "end": 6.0, "role": "customer"},
        "labels": ["disgusted"],
        "model_label": "fearful",
        "decision": "review",
        "reviewer": "reviewer",
        "resolved_at": event["resolved_at"],
        "links": {"job": f"/v1/jobs/{job_id}", "history": f"/v1/review-items/{item_id}/history"},
    }

    # Signed like job.finished; a reopened item has nothing final to announce.
    signed = settings.webhooks.model_copy(update={"secret": "s3cret"})
    decision = uuid.UUID(event["id"])
    assert deliver_review(sessions, signed, item_id, decision) is True
    assert received[-1]["headers"]["X-Emoq-Signature"] == signature(received[-1]["body"], "s3cret")
    with transaction(sessions) as session:
        session.execute(update(ReviewItem).where(ReviewItem.id == item_id).values(status="pending", final_labels=None))
    assert deliver_review(sessions, signed, item_id, decision) is False


def test_no_callback_no_announcement(client, keys, sessions, settings):
    item_id = make_reviewed_job(sessions, key_id(sessions, "submitter"), external_id="call-6")
    resolve(client, keys["reviewer"], item_id, ["sad"])
    with sessions() as session:
        decision = session.scalar(select(ReviewDecision.id).where(ReviewDecision.item_id == item_id))
    assert decision is not None
    assert deliver_review(sessions, settings.webhooks, item_id, decision) is False


def test_a_batch_s_items_are_found_by_batch_and_announced_to_the_batch(client, keys, sessions, worker, request):
    """A batch's jobs carry no callback of their own: people's answers go to the batch's URL."""
    url, received, _ = request.getfixturevalue("receiver")
    submitter = key_id(sessions, "submitter")
    with transaction(sessions) as session:
        batch = Batch(submitter_id=submitter, name="nightly", callback_url=url)
        session.add(batch)
        session.flush()
        batch_id = batch.id
    item_id = make_reviewed_job(sessions, submitter, external_id="call-7", batch_id=batch_id)
    other = make_reviewed_job(sessions, submitter, external_id="call-8")

    listed = client.get(f"/v1/review-items?batch_id={batch_id}", headers=keys["reviewer"]).get_json()["items"]
    assert [i["id"] for i in listed] == [str(item_id)] and str(other) not in {i["id"] for i in listed}
    by_name = client.get("/v1/review-items?batch_id=nightly", headers=keys["reviewer"]).get_json()["items"]
    assert [i["id"] for i in by_name] == [str(item_id)]
    assert (
        client.get("/v1/review-items?batch_id=nope", headers=keys["reviewer"]).get_json()["code"] == "batch_not_found"
    )
    evidence = client.get(f"/v1/review-items/{item_id}", headers=keys["reviewer"]).get_json()["evidence"]
    assert evidence["call"]["batch_id"] == str(batch_id)

    claimed = client.post(f"/v1/review-items/claim-next?batch_id={batch_id}", headers=keys["reviewer"]).get_json()
    assert claimed["id"] == str(item_id)
    done = client.post(f"/v1/review-items/{item_id}/resolve", json={"labels": ["sad"]}, headers=keys["reviewer"])
    assert done.status_code == 200, done.get_json()
    wait_until(lambda: received, 60, "the review.resolved webhook at the batch's URL")
    event = json.loads(received[0]["body"])
    assert event["event"] == "review.resolved" and event["review_item_id"] == str(item_id)
