"""The settings object: typed groups, flat variable names, closed choices refused."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from config import Settings


def test_each_variable_reaches_its_group(monkeypatch):
    monkeypatch.setenv("EMOQ_PRECISION", "bf16")
    monkeypatch.setenv("EMOQ_QUEUE", "emoq.gpu")
    monkeypatch.setenv("EMOQ_SEGMENT_MIN_SECONDS", "2.5")
    monkeypatch.setenv("EMOQ_FD_FOCUS_WEIGHT", "0.3")
    monkeypatch.setenv("EMOQ_WEBHOOK_ALLOW_PRIVATE", "true")
    settings = Settings.from_env()
    assert settings.engine.precision == "bf16"
    assert settings.queue.analysis_queue == "emoq.gpu"
    assert settings.segmentation.min_seconds == 2.5
    assert settings.enhancement.focus_weight == 0.3
    assert settings.webhooks.allow_private is True


def test_overrides_are_validated_and_leave_the_original_alone():
    base = Settings.from_env()
    changed = base.override({"EMOQ_REVIEW_LEASE_SECONDS": "5", "EMOQ_DEVICE": "cuda:1"})
    assert changed.review.lease_seconds == 5 and changed.engine.device == "cuda:1"
    assert base.review.lease_seconds == 900
    with pytest.raises(ValueError, match="unknown setting"):
        base.override({"EMOQ_NO_SUCH_THING": 1})


@pytest.mark.parametrize(
    "variable, value",
    [
        ("EMOQ_PRECISION", "fp8"),
        ("EMOQ_DEVICE", "tpu"),
        ("EMOQ_REVIEW_FLAGS", ["low_snr", "not_a_flag"]),
        ("EMOQ_TASK_TIME_LIMIT_SECONDS", "99999"),  # must stay below the broker's visibility timeout
    ],
)
def test_closed_choices_and_cross_checks_are_refused(variable, value):
    with pytest.raises(ValidationError):
        Settings.from_env({variable: value})


def test_the_stored_policy_names_and_order_are_stable():
    # Every result stores this dict; a rename would change finished jobs' JSON.
    assert list(Settings.from_env().enhancement.policy()) == [
        "redecide_margin",
        "model_weight",
        "review_margin",
        "dual_margin",
        "dual_min_score",
        "low_confidence",
        "focus_weight",
    ]
