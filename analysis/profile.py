"""A domain's prior correction as the analysis applies it; built and
versioned from reviewers' labels by ``calibration.profiles``."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from analysis.labels import EMOTION_LABELS


@dataclass(frozen=True)
class Profile:
    domain: str | None
    version: int | None
    prior_shift: dict[str, float] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)

    @property
    def neutral(self) -> bool:
        return not self.prior_shift and not self.thresholds

    def apply(self, scores: np.ndarray) -> np.ndarray:
        if not self.prior_shift:
            return scores
        shift = np.array([self.prior_shift.get(label, 0.0) for label in EMOTION_LABELS])
        adjusted = np.asarray(scores, dtype=np.float64) * np.exp(shift)
        return adjusted / adjusted.sum()

    def describe(self) -> dict:
        if self.neutral:
            return {"domain": self.domain, "version": None, "applied": False, "why": "no active profile: neutral"}
        return {
            "domain": self.domain,
            "version": self.version,
            "applied": True,
            "prior_shift": self.prior_shift,
            "thresholds": self.thresholds,
        }
