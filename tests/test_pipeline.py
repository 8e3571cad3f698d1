"""The pipeline's plain functions without services: stage timings and the
rows that persist writes (tiny random-weight model, no database)."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from analysis.engine import EmotionEngine
from analysis.pipeline import JobSpec, analyse
from analysis.synthetic import stereo_call
from config import Settings
from config.settings import EngineSettings
from models import EMOTION_LABELS
from tests.audio_fixtures import write_wav
from worker.results import result_values, review_item_values


@pytest.fixture(scope="module")
def engine(model_dir) -> EmotionEngine:
    return EmotionEngine.load(EngineSettings(model=str(model_dir), ncpu=2))


def test_analyse_reports_its_stage_timings_and_rows(engine, tmp_path):
    path = write_wav(tmp_path / "call.wav", stereo_call(20.0, 8000, seed=3), 8000)
    spec = JobSpec("job", "key", "utterance", None, ("agent", "customer"))
    settings = Settings()
    start = time.perf_counter()
    analysis = analyse(path, spec, engine, None, settings)
    wall = time.perf_counter() - start
    assert set(analysis.timings) == {"decode", "vad", "model", "focus", "enhance"}
    assert all(v >= 0 for v in analysis.timings.values())
    assert sum(analysis.timings.values()) <= wall + 1e-3
    assert {s.role for s in analysis.segments} == {"agent", "customer"}

    flags = settings.review.flags_for(spec.domain)
    result, review_items = result_values(analysis, flags, {}), review_item_values(analysis, spec, settings.review)
    assert list(result["scores"]) == list(EMOTION_LABELS)
    assert len(result["segments"]) == len(analysis.segments)
    assert all(item["reasons"] for item in review_items)
    # What the JSONB columns receive (an item's id is a UUID column of its own).
    json.dumps({"result": result, "review_items": [{k: v for k, v in i.items() if k != "id"} for i in review_items]})


def test_stereo_call_takes_turns_on_two_channels():
    call = stereo_call(30.0, 8000, seed=1)
    assert call.shape == (2, 240_000) and call.dtype == np.float32
    assert (np.abs(call[0]) > 0).mean() > 0.2 and (np.abs(call[1]) > 0).mean() > 0.2
    both = (np.abs(call[0]) > 0) & (np.abs(call[1]) > 0)
    assert both.mean() < 0.01  # one speaker at a time
    np.testing.assert_array_equal(call, stereo_call(30.0, 8000, seed=1))
