"""Domain profiles: estimated from reviewed items, versioned, never silent."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import update

from analysis.profile import Profile
from calibration.profiles import ProfileRefused, activate_profile, active_profile, build_profile, estimate_prior_shift
from models import EMOTION_LABELS, ReviewItem
from models.db import transaction
from tests.factories import key_id, make_review_item


def test_prior_shift_moves_towards_the_observed_labels():
    raw = np.tile(np.full(9, 1 / 9), (40, 1))
    labels = ["angry"] * 30 + ["neutral"] * 10
    shift = estimate_prior_shift(labels, raw)
    assert shift["angry"] > shift["neutral"] > 0 > shift["happy"]
    adjusted = Profile("customer_service", 1, shift).apply(np.full(9, 1 / 9))
    assert adjusted.sum() == pytest.approx(1.0)
    assert EMOTION_LABELS[int(np.argmax(adjusted))] == "angry"


def test_neutral_profile_changes_nothing_and_says_so():
    profile = Profile("medical", None)
    scores = np.linspace(1, 9, 9) / 45
    np.testing.assert_allclose(profile.apply(scores), scores)
    assert profile.describe() == {
        "domain": "medical",
        "version": None,
        "applied": False,
        "why": "no active profile: neutral",
    }


def test_build_activate_and_read_back(sessions, keys):
    submitter = key_id(sessions, "submitter")
    items = [make_review_item(sessions, submitter) for _ in range(4)]
    with transaction(sessions) as session:
        session.execute(
            update(ReviewItem)
            .where(ReviewItem.id.in_(items))
            .values(status="resolved", final_labels=["disgusted"], domain="customer_service")
        )
    with transaction(sessions) as session:
        with pytest.raises(ProfileRefused, match="4 reviewed items"):
            build_profile(session, "customer_service", min_items=5)
        version = build_profile(session, "customer_service", min_items=4).version
    with sessions() as session:
        assert active_profile(session, "customer_service").neutral  # built, not yet active
    activate_profile(sessions, version)
    with sessions() as session:
        profile = active_profile(session, "customer_service")
        assert profile.version == version and profile.prior_shift["disgusted"] > 0
        assert active_profile(session, "education").neutral


def test_cli_builds_and_activates_a_profile(cli_env, sessions, keys, capsys):
    from ops.cli import main

    submitter = key_id(sessions, "submitter")
    items = [make_review_item(sessions, submitter) for _ in range(3)]
    with transaction(sessions) as session:
        session.execute(
            update(ReviewItem)
            .where(ReviewItem.id.in_(items))
            .values(status="resolved", final_labels=["angry"], domain="medical")
        )
    assert main(["profile", "medical", "--min-items", "5"]) == 1
    assert "3 reviewed items" in capsys.readouterr().err
    assert main(["profile", "medical", "--min-items", "3", "--activate"]) == 0
    assert "active" in capsys.readouterr().out
    with sessions() as session:
        assert active_profile(session, "medical").prior_shift["angry"] > 0
