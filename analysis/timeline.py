"""Frame-level emotion timelines from one forward pass: pool the frame
features over sliding windows, then apply the classification head."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from analysis.labels import EMOTION_LABELS


def pool_windows(
    frames: np.ndarray, frame_rate: float, window_seconds: float, hop_seconds: float
) -> tuple[np.ndarray, np.ndarray]:
    """Mean frame features per window → (starts in seconds, pooled (W, D))."""
    n = len(frames)
    width = max(1, round(window_seconds * frame_rate))
    hop = max(1, round(hop_seconds * frame_rate))
    if n <= width:
        return np.zeros(1), frames.mean(axis=0, keepdims=True)
    starts = np.arange(0, n - width + 1, hop)
    csum = np.concatenate([np.zeros((1, frames.shape[1])), np.cumsum(frames, axis=0, dtype=np.float64)])
    pooled = (csum[starts + width] - csum[starts]) / width
    return starts / frame_rate, pooled.astype(np.float32)


def dominant_runs(starts: np.ndarray, scores: np.ndarray, window_seconds: float, offset: float) -> list[dict]:
    """Merge consecutive windows with the same top label into runs."""
    top = scores.argmax(axis=1)
    runs: list[dict] = []
    begin = 0
    for i in range(1, len(top) + 1):
        if i == len(top) or top[i] != top[begin]:
            label = int(top[begin])
            runs.append(
                {
                    "label": EMOTION_LABELS[label],
                    "start": round(offset + float(starts[begin]), 3),
                    "end": round(offset + float(starts[i - 1]) + window_seconds, 3),
                    "mean_score": round(float(scores[begin:i, label].mean()), 4),
                }
            )
            begin = i
    return runs


def build_timeline(
    frames: np.ndarray,
    frame_rate: float,
    classify: Callable[[np.ndarray], np.ndarray],
    *,
    window_seconds: float,
    hop_seconds: float,
    offset: float,
) -> dict:
    starts, pooled = pool_windows(frames, frame_rate, window_seconds, hop_seconds)
    scores = classify(pooled)
    return {
        "window_seconds": window_seconds,
        "hop_seconds": hop_seconds,
        "labels": list(EMOTION_LABELS),
        "starts": [round(offset + float(s), 3) for s in starts],
        "scores": np.round(scores, 4).tolist(),
        "runs": dominant_runs(starts, scores, window_seconds, offset),
    }
