"""Fear/disgust enhancement and review flags for one scored segment.

emotion2vec+ confuses fearful and disgusted more than any other pair. When
one of them is on top and the other is close, the decision between the two
is re-made by fusing the model's pair-normalised score with a probability
derived from the embedding's cosine similarity to the fear and disgust
centroids (softmax over similarities at a temperature, never raw cosines
mixed with probabilities). The rule only fires when a pair member is on top:
a neutral clip whose small fearful and disgusted scores happen to be close
is left alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from analysis.labels import EMOTION_LABELS
from config.settings import EnhancementSettings

FEAR, DISGUST = "fearful", "disgusted"
PAIR = (FEAR, DISGUST)
_INDEX = {label: i for i, label in enumerate(EMOTION_LABELS)}


@dataclass(frozen=True)
class Centroids:
    """Class centroids in embedding space; fear and disgust at least."""

    labels: tuple[str, ...]
    vectors: np.ndarray  # (k, D), one row per label
    temperature: float
    version: int | None = None
    source: str = "file"

    def __post_init__(self) -> None:
        missing = [label for label in PAIR if label not in self.labels]
        if missing:
            raise ValueError(f"centroids lack {missing}")

    def vector(self, label: str) -> np.ndarray:
        return self.vectors[self.labels.index(label)]

    def to_npz_bytes(self) -> bytes:
        import io

        buffer = io.BytesIO()
        np.savez(buffer, labels=np.array(self.labels), vectors=self.vectors, temperature=self.temperature)
        return buffer.getvalue()

    @classmethod
    def from_npz(cls, data: bytes | Path, *, version: int | None = None, source: str = "file") -> Centroids:
        import io

        with np.load(io.BytesIO(data) if isinstance(data, bytes) else data) as npz:
            return cls(
                labels=tuple(str(x) for x in npz["labels"]),
                vectors=np.asarray(npz["vectors"], dtype=np.float32),
                temperature=float(npz["temperature"]),
                version=version,
                source=source,
            )


@dataclass
class Decision:
    scores: np.ndarray  # (9,) after enhancement, sums to 1
    label: str
    confidence: float
    flags: list[str]
    details: dict = field(default_factory=dict)

    def scores_dict(self) -> dict[str, float]:
        return {label: float(p) for label, p in zip(EMOTION_LABELS, self.scores)}


def similarity_probability(embedding: np.ndarray, centroids: Centroids) -> tuple[dict, dict]:
    """Cosine similarity to the fear and disgust centroids, and its softmax at the centroid temperature."""
    e = embedding / (np.linalg.norm(embedding) + 1e-12)
    sims = {}
    for label in PAIR:
        c = centroids.vector(label)
        sims[label] = float(e @ c / (np.linalg.norm(c) + 1e-12))
    logits = np.array([sims[label] for label in PAIR]) / centroids.temperature
    logits -= logits.max()
    probs = np.exp(logits) / np.exp(logits).sum()
    return sims, {label: float(p) for label, p in zip(PAIR, probs)}


def _top_two(scores: np.ndarray) -> tuple[int, int]:
    order = np.argsort(-scores, kind="stable")
    return int(order[0]), int(order[1])


def close_fear_disgust_call(scores: np.ndarray, policy: EnhancementSettings) -> bool:
    """Fearful or disgusted on top with the other within the re-decision margin:
    such a segment is re-decided and gets a focus window."""
    top = EMOTION_LABELS[int(np.argmax(scores))]
    return top in PAIR and abs(scores[_INDEX[FEAR]] - scores[_INDEX[DISGUST]]) < policy.redecide_margin


def enhance(
    scores: np.ndarray,
    embedding: np.ndarray,
    centroids: Centroids | None,
    policy: EnhancementSettings,
    focus: dict | None = None,
) -> Decision:
    """``focus``: the focus window's evidence (analysis.focus), when one was found."""
    scores = np.asarray(scores, dtype=np.float64)
    fear, disgust = scores[_INDEX[FEAR]], scores[_INDEX[DISGUST]]
    top, _ = _top_two(scores)
    top_label = EMOTION_LABELS[top]
    margin_before = float(abs(fear - disgust))
    details: dict = {"policy": policy.policy(), "fear_disgust": None}
    flags: list[str] = []
    out = scores.copy()

    if close_fear_disgust_call(scores, policy):
        fd: dict = {"margin_before": margin_before, "model": {FEAR: float(fear), DISGUST: float(disgust)}}
        mass = fear + disgust
        fused_fear = fear / mass
        if centroids is None:
            fd["redecision"] = "skipped: no calibration centroids"
            flags.append("calibration_missing")
        else:
            sims, sim_prob = similarity_probability(embedding, centroids)
            w = policy.model_weight
            fused_fear = w * fused_fear + (1 - w) * sim_prob[FEAR]
            fd.update(
                redecision="applied",
                similarity=sims,
                similarity_probability=sim_prob,
                temperature=centroids.temperature,
                calibration_version=centroids.version,
                centroid_source=centroids.source,
            )
        if focus is not None:
            fused_fear = (1 - policy.focus_weight) * fused_fear + policy.focus_weight * focus["crop_fear_share"]
            fd["focus_window"] = focus
        out[_INDEX[FEAR]] = mass * fused_fear
        out[_INDEX[DISGUST]] = mass * (1 - fused_fear)
        fd["margin_after"] = float(abs(out[_INDEX[FEAR]] - out[_INDEX[DISGUST]]))
        details["fear_disgust"] = fd

    top, second = _top_two(out)
    label = EMOTION_LABELS[top]
    if label in PAIR:
        margin = float(abs(out[_INDEX[FEAR]] - out[_INDEX[DISGUST]]))
        if margin < policy.review_margin:
            flags.append("fear_disgust_ambiguous")
        if details["fear_disgust"] is not None:
            details["fear_disgust"]["changed_decision"] = label != top_label
    if out[second] >= policy.dual_min_score and out[top] - out[second] < policy.dual_margin:
        flags.append("dual_emotion")
        details["dual_emotion"] = {
            "labels": [label, EMOTION_LABELS[second]],
            "scores": [float(out[top]), float(out[second])],
        }
    if out[top] < policy.low_confidence:
        flags.append("low_confidence")
    return Decision(scores=out, label=label, confidence=float(out[top]), flags=flags, details=details)
