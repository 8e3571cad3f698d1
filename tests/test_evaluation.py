"""Evaluation numbers on a hand-made example, the confusion heat map, and
resolved review items as the source of truth."""

from __future__ import annotations

import matplotlib.image
import numpy as np
import pytest

from calibration.evaluation import NothingToEvaluate, confusion_png, evaluate, evaluate_reviewed
from models import EMOTION_LABELS
from tests.factories import key_id
from tests.test_calibration import Synthetic, insert_resolved, score_vector

REVIEW_FLAGS = {"fear_disgust_ambiguous", "low_confidence", "dual_emotion"}
# (true, raw argmax, enhanced, flags)
EXAMPLE = [
    ("fearful", "disgusted", "fearful", ["fear_disgust_ambiguous"]),  # changed, right
    ("disgusted", "disgusted", "fearful", []),  # changed, wrong
    ("fearful", "fearful", "fearful", ["low_confidence"]),
    ("neutral", "neutral", "neutral", ["low_snr"]),  # a flag, but not a review flag
    ("happy", "neutral", "neutral", []),
    ("disgusted", "disgusted", "disgusted", ["dual_emotion"]),
    ("disgusted", "fearful", "disgusted", ["fear_disgust_ambiguous"]),  # changed, right
]


def example_inputs():
    truth, raw, enhanced, flags = zip(*EXAMPLE)
    return list(truth), np.array([score_vector(**{label: 0.6}) for label in raw]), list(enhanced), list(flags)


def confusion(*cells: tuple[str, str, int]) -> list[list[int]]:
    matrix = np.zeros((9, 9), dtype=int)
    for true, predicted, count in cells:
        matrix[EMOTION_LABELS.index(true), EMOTION_LABELS.index(predicted)] = count
    return matrix.tolist()


def test_numbers_match_a_hand_computed_example():
    report = evaluate(*example_inputs(), REVIEW_FLAGS)
    assert report["n"] == 7
    assert report["raw"]["confusion"] == confusion(
        ("fearful", "disgusted", 1), ("fearful", "fearful", 1),
        ("disgusted", "disgusted", 2), ("disgusted", "fearful", 1),
        ("neutral", "neutral", 1), ("happy", "neutral", 1),
    )  # fmt: skip
    assert report["enhanced"]["confusion"] == confusion(
        ("fearful", "fearful", 2),
        ("disgusted", "fearful", 1), ("disgusted", "disgusted", 2),
        ("neutral", "neutral", 1), ("happy", "neutral", 1),
    )  # fmt: skip
    assert report["raw"]["accuracy"] == pytest.approx(4 / 7)
    assert report["enhanced"]["accuracy"] == pytest.approx(5 / 7)
    assert report["fear_vs_disgust"] == {"n": 5, "raw_accuracy": pytest.approx(3 / 5), "enhanced_accuracy": 0.8}
    assert report["review_rate"] == pytest.approx(4 / 7)
    assert report["changes"] == {"changed": 3, "changed_and_right": 2, "changed_and_wrong": 1}

    enhanced = report["enhanced"]["per_class"]
    assert enhanced["fearful"] == pytest.approx({"precision": 2 / 3, "recall": 1.0, "f1": 0.8, "support": 2})
    assert enhanced["disgusted"] == pytest.approx({"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "support": 3})
    assert enhanced["neutral"] == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1})
    assert enhanced["happy"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert enhanced["angry"]["support"] == 0
    assert report["raw"]["per_class"]["fearful"]["precision"] == 0.5


def test_no_fear_or_disgust_items_and_no_items_at_all():
    report = evaluate(["happy"], [score_vector(happy=0.9)], ["happy"], [[]], REVIEW_FLAGS)
    assert report["fear_vs_disgust"] == {"n": 0, "raw_accuracy": None, "enhanced_accuracy": None}
    assert report["review_rate"] == 0.0
    with pytest.raises(NothingToEvaluate):
        evaluate([], np.empty((0, 9)), [], [], REVIEW_FLAGS)
    with pytest.raises(ValueError, match="N enhanced labels"):
        evaluate(["happy"], [score_vector(happy=0.9)], [], [[]], REVIEW_FLAGS)


def test_confusion_png_is_a_valid_image(tmp_path):
    report = evaluate(*example_inputs(), REVIEW_FLAGS)
    path = tmp_path / "confusion.png"
    confusion_png(report["enhanced"]["confusion"], path)
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    height, width, _ = matplotlib.image.imread(path).shape
    assert width > 300 and height > 300


def test_evaluate_reviewed_reads_resolved_items(sessions, keys):
    truth, raw_scores, enhanced, flags = example_inputs()
    data = Synthetic(np.zeros((len(truth), 16)), truth, raw_scores)
    insert_resolved(sessions, key_id(sessions, "submitter"), data, reported=enhanced, flags=flags)
    with sessions() as session:
        report = evaluate_reviewed(session, REVIEW_FLAGS)
        only_dual = evaluate_reviewed(session, {"dual_emotion"})
    assert report == evaluate(truth, raw_scores, enhanced, flags, REVIEW_FLAGS)
    assert only_dual["review_rate"] == pytest.approx(1 / 7)
