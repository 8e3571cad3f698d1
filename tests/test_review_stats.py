"""Supervisors' figures: backlog, output per reviewer, time to decision,
agreement (raw and Cohen's kappa) and the model against people."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from sklearn.metrics import cohen_kappa_score

from domain.review_stats import agreement, cohen_kappa
from tests.factories import key_id, make_review_item
from tests.test_review_quality import claim_and_decide


def test_kappa_matches_scikit_learn():
    rng = random.Random(3)
    labels = ["fearful", "disgusted", "neutral", "angry"]
    for _ in range(20):
        first = [rng.choice(labels) for _ in range(30)]
        second = [a if rng.random() < 0.6 else rng.choice(labels) for a in first]
        assert cohen_kappa(first, second) == pytest.approx(cohen_kappa_score(first, second))
    assert cohen_kappa(["sad"] * 4, ["sad"] * 4) is None  # chance agreement 1: undefined
    assert cohen_kappa([], []) is None


def test_agreement_per_label():
    pairs = [("fearful", "fearful"), ("fearful", "disgusted"), ("disgusted", "disgusted"), ("neutral", "neutral")]
    report = agreement(pairs)
    assert report["pairs"] == 4 and report["raw"] == 0.75
    assert report["kappa"] == pytest.approx(cohen_kappa_score([a for a, _ in pairs], [b for _, b in pairs]), abs=1e-4)
    assert report["per_label"]["fearful"] == {"named": 3, "specific_agreement": round(2 / 3, 4), "kappa": 0.5}
    assert report["per_label"]["neutral"]["specific_agreement"] == 1.0
    assert "sad" not in report["per_label"]
    assert agreement([])["raw"] is None


def test_review_stats_route(client, keys, sessions):
    submitter = key_id(sessions, "submitter")
    agreed = make_review_item(sessions, submitter, required_decisions=2, label="fearful")
    split = make_review_item(sessions, submitter, required_decisions=2, label="fearful")
    single = make_review_item(sessions, submitter, label="disgusted")
    make_review_item(sessions, submitter, reasons=["low_snr"])  # still waiting
    claim_and_decide(client, keys["reviewer"], agreed, ["fearful"])
    claim_and_decide(client, keys["reviewer2"], agreed, ["fearful"])
    claim_and_decide(client, keys["reviewer"], split, ["fearful"])
    claim_and_decide(client, keys["reviewer2"], split, ["disgusted"])
    claim_and_decide(client, keys["reviewer"], single, ["sad"])

    assert client.get("/v1/review-stats", headers=keys["reviewer"]).status_code == 403
    response = client.get("/v1/review-stats", headers=keys["admin"])
    assert response.status_code == 200, response.get_json()
    stats = response.get_json()
    assert stats["backlog"] == {
        "fear_disgust_ambiguous": {"waiting": 0, "claimed": 0, "disagreement": 1},
        "low_snr": {"waiting": 1, "claimed": 0, "disagreement": 0},
    }
    today = datetime.now(UTC).date().isoformat()
    assert stats["cleared"] == [
        {"reviewer": "reviewer", "day": today, "decisions": 3},
        {"reviewer": "reviewer2", "day": today, "decisions": 2},
    ]
    assert stats["time_to_decision"]["decisions"] == 5 and stats["time_to_decision"]["median_seconds"] >= 0
    assert stats["agreement"]["pairs"] == 2 and stats["agreement"]["raw"] == 0.5
    confusion = stats["model_vs_human"]
    labels = confusion["labels"]
    assert confusion["items"] == 2 and confusion["model_agrees"] == 0.5  # fearful→fearful, disgusted→sad
    assert confusion["matrix"][labels.index("fearful")][labels.index("fearful")] == 1
    assert confusion["matrix"][labels.index("disgusted")][labels.index("sad")] == 1

    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    later = client.get(f"/v1/review-stats?since={tomorrow}", headers=keys["admin"]).get_json()
    assert later["cleared"] == [] and later["agreement"]["pairs"] == 0 and later["model_vs_human"]["items"] == 0
    assert later["backlog"] == stats["backlog"]  # the backlog is always now
    assert client.get("/v1/review-stats?since=soon", headers=keys["admin"]).get_json()["code"] == "invalid_since"
