"""Fear/disgust enhancement rules on hand-made score vectors."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.enhance import Centroids, enhance, similarity_probability
from config.settings import EnhancementSettings
from models import EMOTION_LABELS

POLICY = EnhancementSettings()
FEAR_DIR = np.array([1.0, 0.0, 0.0, 0.0])
DISGUST_DIR = np.array([0.0, 1.0, 0.0, 0.0])
CENTROIDS = Centroids(labels=("fearful", "disgusted"), vectors=np.stack([FEAR_DIR, DISGUST_DIR]), temperature=0.1)


def scores(**values: float) -> np.ndarray:
    rest = 1.0 - sum(values.values())
    out = np.array([values.get(label, 0.0) for label in EMOTION_LABELS])
    out[EMOTION_LABELS.index("other")] += rest
    return out


def test_neutral_clip_with_close_small_fear_and_disgust_is_left_alone():
    s = scores(neutral=0.9, fearful=0.01, disgusted=0.02)
    d = enhance(s, DISGUST_DIR, CENTROIDS, POLICY)
    assert d.label == "neutral"
    assert d.flags == []
    assert d.details["fear_disgust"] is None
    np.testing.assert_allclose(d.scores, s)


def test_close_fear_disgust_is_redecided_towards_the_nearer_centroid():
    s = scores(fearful=0.46, disgusted=0.40, neutral=0.14)
    d = enhance(s, DISGUST_DIR * 3 + 0.1 * FEAR_DIR, CENTROIDS, POLICY)
    assert d.label == "disgusted"
    fd = d.details["fear_disgust"]
    assert fd["redecision"] == "applied" and fd["changed_decision"] is True
    # pair mass is kept; only its split changes: 0.6 * model + 0.4 * similarity
    assert d.scores[1] + d.scores[2] == pytest.approx(0.86)
    _, p = similarity_probability(DISGUST_DIR * 3 + 0.1 * FEAR_DIR, CENTROIDS)
    expected_fear = 0.86 * (0.6 * 0.46 / 0.86 + 0.4 * p["fearful"])
    assert d.scores[EMOTION_LABELS.index("fearful")] == pytest.approx(expected_fear)
    assert d.scores.sum() == pytest.approx(1.0)


def test_clear_fear_is_not_redecided():
    s = scores(fearful=0.7, disgusted=0.2, neutral=0.1)
    d = enhance(s, DISGUST_DIR, CENTROIDS, POLICY)
    assert d.label == "fearful" and d.details["fear_disgust"] is None and d.flags == []


def test_ambiguous_pair_is_flagged_for_review_and_without_centroids_says_so():
    s = scores(fearful=0.45, disgusted=0.40, neutral=0.15)
    d = enhance(s, FEAR_DIR, None, POLICY)
    assert d.label == "fearful"
    assert "fear_disgust_ambiguous" in d.flags and "calibration_missing" in d.flags
    assert d.details["fear_disgust"]["redecision"].startswith("skipped")


def test_margin_between_redecide_and_review_only_flags():
    s = scores(fearful=0.53, disgusted=0.40, neutral=0.07)  # margin 0.13: no re-decision, still under 0.15
    d = enhance(s, FEAR_DIR, CENTROIDS, POLICY)
    assert d.details["fear_disgust"] is None
    assert d.flags == ["fear_disgust_ambiguous"]


def test_dual_emotion_when_both_high_and_close():
    s = scores(angry=0.42, sad=0.40, neutral=0.18)
    d = enhance(s, FEAR_DIR, CENTROIDS, POLICY)
    assert "dual_emotion" in d.flags
    assert d.details["dual_emotion"]["labels"] == ["angry", "sad"]


def test_low_confidence_threshold_is_configurable():
    s = scores(happy=0.35, neutral=0.25, surprised=0.2)
    assert "low_confidence" in enhance(s, FEAR_DIR, CENTROIDS, POLICY).flags
    assert "low_confidence" not in enhance(s, FEAR_DIR, CENTROIDS, EnhancementSettings(low_confidence=0.3)).flags


def test_thresholds_are_recorded_with_the_decision():
    d = enhance(scores(neutral=1.0), FEAR_DIR, CENTROIDS, EnhancementSettings(review_margin=0.2))
    assert d.details["policy"]["review_margin"] == 0.2


def test_centroids_round_trip_through_npz(tmp_path):
    path = tmp_path / "c.npz"
    path.write_bytes(CENTROIDS.to_npz_bytes())
    loaded = Centroids.from_npz(path)
    assert loaded.labels == CENTROIDS.labels and loaded.temperature == 0.1
    np.testing.assert_allclose(loaded.vectors, CENTROIDS.vectors)
    with pytest.raises(ValueError):
        Centroids(labels=("angry",), vectors=np.zeros((1, 4)), temperature=0.1)


def test_focus_window_evidence_enters_the_fusion():
    s = scores(fearful=0.45, disgusted=0.42, neutral=0.13)
    focus = {"start": 1.2, "end": 1.7, "crop_fear_share": 0.0, "window_scores": {}, "crop_scores": {}}
    without = enhance(s, FEAR_DIR, None, POLICY)
    with_focus = enhance(s, FEAR_DIR, None, POLICY, focus)
    assert without.label == "fearful" and with_focus.label == "disgusted"
    share = (1 - POLICY.focus_weight) * 0.45 / 0.87
    assert with_focus.scores[EMOTION_LABELS.index("fearful")] == pytest.approx(0.87 * share)
    assert with_focus.details["fear_disgust"]["focus_window"]["start"] == 1.2


def test_close_fear_disgust_call_only_for_close_calls_with_the_pair_on_top():
    from analysis.enhance import close_fear_disgust_call

    assert close_fear_disgust_call(scores(fearful=0.45, disgusted=0.40, neutral=0.15), POLICY)
    assert not close_fear_disgust_call(scores(fearful=0.7, disgusted=0.2, neutral=0.1), POLICY)
    assert not close_fear_disgust_call(scores(neutral=0.9, fearful=0.01, disgusted=0.02), POLICY)
