"""Focus window for an ambiguous fear/disgust segment: the short stretch
where the two classes separate most, found on the frame timeline and then
re-scored on its own audio, so the decision (and the reviewer) can lean on
the most telling moment instead of the whole utterance's average."""

from __future__ import annotations

import numpy as np

from analysis.engine import SAMPLE_RATE, EmotionEngine
from analysis.labels import EMOTION_LABELS
from analysis.timeline import pool_windows

_FEAR, _DISGUST = EMOTION_LABELS.index("fearful"), EMOTION_LABELS.index("disgusted")
WINDOW_WIDTHS = (0.3, 0.5, 0.8)
# A crop shorter than this gives the model too few frames to score; such a
# window is widened to the right.
_MIN_CROP_SECONDS = 0.3


def find_window(
    frames: np.ndarray, frame_rate: float, engine: EmotionEngine, hop_seconds: float = 0.05
) -> tuple[float, float, np.ndarray] | None:
    """(start, end, window scores) relative to the segment, or None when too short."""
    best: tuple[float, float, np.ndarray] | None = None
    best_gap = -1.0
    for width in WINDOW_WIDTHS:
        if len(frames) < width * frame_rate:
            continue
        starts, pooled = pool_windows(frames, frame_rate, width, hop_seconds)
        scores = engine.classify(pooled)
        gaps = np.abs(scores[:, _FEAR] - scores[:, _DISGUST])
        i = int(np.argmax(gaps))
        if gaps[i] > best_gap:
            best_gap = float(gaps[i])
            best = (float(starts[i]), float(starts[i]) + width, scores[i])
    return best


def focus_evidence(engine: EmotionEngine, clip: np.ndarray) -> dict | None:
    """Find the window on one forward pass's frames, then score the crop alone."""
    (scored,) = engine.score([clip], keep_frames=True)
    if scored.frames is None:
        return None
    found = find_window(scored.frames, engine.info.frame_rate, engine)
    if found is None:
        return None
    start, end, window_scores = found
    a = max(0, int(start * SAMPLE_RATE))
    b = min(len(clip), max(int(end * SAMPLE_RATE), a + int(_MIN_CROP_SECONDS * SAMPLE_RATE)))
    (crop,) = engine.score([clip[a:b]])
    pair = crop.scores[_FEAR] + crop.scores[_DISGUST]
    return {
        "start": round(start, 3),
        "end": round(end, 3),
        "window_scores": {label: round(float(p), 4) for label, p in zip(EMOTION_LABELS, window_scores)},
        "crop_scores": {label: round(float(p), 4) for label, p in zip(EMOTION_LABELS, crop.scores)},
        "crop_fear_share": float(crop.scores[_FEAR] / pair) if pair > 0 else 0.5,
    }
