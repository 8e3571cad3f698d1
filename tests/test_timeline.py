from __future__ import annotations

import numpy as np

from analysis.timeline import build_timeline, dominant_runs, pool_windows


def test_pool_windows_means_each_window():
    frames = np.arange(100, dtype=np.float32).reshape(50, 2)  # 1 s at 50 frames/s
    starts, pooled = pool_windows(frames, 50.0, 0.4, 0.1)
    assert starts[0] == 0 and np.allclose(np.diff(starts), 0.1)
    assert len(pooled) == (50 - 20) // 5 + 1
    np.testing.assert_allclose(pooled[1], frames[5:25].mean(axis=0))


def test_short_segment_gives_one_window():
    starts, pooled = pool_windows(np.ones((7, 3)), 50.0, 0.4, 0.1)
    assert list(starts) == [0.0] and pooled.shape == (1, 3)


def test_runs_merge_consecutive_windows_with_the_same_label():
    starts = np.array([0.0, 0.1, 0.2, 0.3])
    scores = np.zeros((4, 9))
    scores[:2, 2] = 0.8  # fearful
    scores[2:, 1] = 0.6  # disgusted
    runs = dominant_runs(starts, scores, 0.4, offset=10.0)
    assert runs == [
        {"label": "fearful", "start": 10.0, "end": 10.5, "mean_score": 0.8},
        {"label": "disgusted", "start": 10.2, "end": 10.7, "mean_score": 0.6},
    ]


def test_build_timeline_applies_the_head_per_window():
    frames = np.random.default_rng(0).standard_normal((60, 4)).astype(np.float32)
    timeline = build_timeline(
        frames, 50.0, lambda x: np.tile(np.eye(9)[3], (len(x), 1)), window_seconds=0.4, hop_seconds=0.1, offset=2.0
    )
    assert timeline["starts"][0] == 2.0
    assert len(timeline["scores"]) == len(timeline["starts"])
    assert timeline["runs"] == [{"label": "happy", "start": 2.0, "end": 3.2, "mean_score": 1.0}]
