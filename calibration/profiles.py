"""Domain profiles: class-prior adjustments per domain (customer_service,
medical, education, …), estimated from reviewed items of that domain.

The shift for each class is log(observed share among reviewers' labels /
the model's mean score on the same items), smoothed and clipped, and is
applied as a prior correction: p' ∝ p · exp(shift). Reviewed items are the
ones the model was unsure about, not a random sample, which is why profiles
are versioned, shown on every result that used one, and activated by an
operator rather than silently. Without data a domain's profile is neutral.
"""

from __future__ import annotations

import numpy as np
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from analysis.profile import Profile
from models import EMOTION_LABELS, DomainProfile, ReviewItem, ReviewStatus
from models.db import transaction

MAX_SHIFT = 2.0


class ProfileRefused(ValueError):
    pass


def estimate_prior_shift(true_labels: list[str], raw_scores: np.ndarray, smoothing: float = 1.0) -> dict[str, float]:
    # The same pseudo-count on both sides: a class nobody saw and the model never
    # predicted gets no shift, instead of a large one from a tiny denominator.
    counts = np.array([true_labels.count(label) for label in EMOTION_LABELS], dtype=np.float64)
    predicted_mass = np.asarray(raw_scores, dtype=np.float64).sum(axis=0)
    total = counts.sum() + smoothing * len(EMOTION_LABELS)
    observed = (counts + smoothing) / total
    predicted = (predicted_mass + smoothing) / total
    shift = np.clip(np.log(observed / predicted), -MAX_SHIFT, MAX_SHIFT)
    return {label: round(float(s), 4) for label, s in zip(EMOTION_LABELS, shift)}


def build_profile(session: Session, domain: str, *, min_items: int) -> DomainProfile:
    # Final answers only (single-reviewed, agreed, adjudicated or corrected); the first label of a dual emotion.
    rows = session.execute(
        select(ReviewItem.final_labels[1].label("label"), ReviewItem.model_scores).where(
            ReviewItem.status == ReviewStatus.resolved.value, ReviewItem.domain == domain
        )
    ).all()
    if len(rows) < min_items:
        raise ProfileRefused(f"domain {domain!r} has {len(rows)} reviewed items; at least {min_items} are needed")
    labels = [r.label for r in rows]
    raw = np.array([[r.model_scores[label] for label in EMOTION_LABELS] for r in rows])
    profile = DomainProfile(
        domain=domain,
        prior_shift=estimate_prior_shift(labels, raw),
        thresholds={},
        counts={label: labels.count(label) for label in EMOTION_LABELS if labels.count(label)},
        items=len(rows),
        active=False,
    )
    session.add(profile)
    session.flush()
    return profile


def activate_profile(sessions: sessionmaker[Session], version: int) -> DomainProfile:
    with transaction(sessions) as session:
        profile = session.get(DomainProfile, version)
        if profile is None:
            raise ProfileRefused(f"no domain profile version {version}")
        session.execute(update(DomainProfile).where(DomainProfile.domain == profile.domain).values(active=False))
        session.flush()
        profile.active = True
        return profile


def active_profile(session: Session, domain: str | None) -> Profile:
    if not domain:
        return Profile(domain=None, version=None)
    row = session.scalar(select(DomainProfile).where(DomainProfile.domain == domain, DomainProfile.active))
    if row is None:
        return Profile(domain=domain, version=None)
    return Profile(domain=domain, version=row.version, prior_shift=row.prior_shift, thresholds=row.thresholds)
