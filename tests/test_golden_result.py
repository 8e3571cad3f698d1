"""The stored result of a fixed recording: refactors, new settings plumbing
and faster code paths must not change what a finished job says. The golden
file was written by the code before the architecture change (issue 8);
regenerate it only for a change that is meant to alter results, and say so
in the commit.

Everything but the numbers must be equal, and the numbers to float32
rounding: byte for byte held on one CPU, but another one's BLAS kernels round
differently (the same code on a 2-core AMD EPYC gave scores 1.5e-7 from the
Intel machine that wrote the file), and that is not a change of result:

    python -m tests.test_golden_result --write
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf

from analysis.engine import EmotionEngine
from analysis.pipeline import JobSpec, analyse
from analysis.synthetic import speech_like
from config import Settings
from ops.random_model import write_random_model
from worker.jobs import frame_key
from worker.results import result_values

GOLDEN = Path(__file__).parent / "golden" / "stereo-call-result.json"
JOB_ID = "00000000-0000-0000-0000-000000000001"


def fixed_call(directory: Path) -> Path:
    """20 s of 8 kHz stereo: the agent speaks, pauses while the customer speaks, speaks again."""
    rate = 8000
    agent = np.concatenate(
        [speech_like(6.0, rate, seed=1), np.zeros(rate * 5, np.float32), speech_like(4.0, rate, seed=3)]
    )
    gap = np.zeros(rate * 6, np.float32)
    customer = np.concatenate([gap, speech_like(5.5, rate, seed=2), np.zeros(int(rate * 3.5), np.float32)])
    path = directory / "call.wav"
    sf.write(path, np.stack([agent, customer], 1), rate, subtype="PCM_16")
    return path


def result_document(directory: Path) -> str:
    settings = Settings.from_env({"EMOQ_MODEL": str(write_random_model(directory / "model", "tiny", seed=0))})
    settings = settings.override({"EMOQ_DEVICE": "cpu"})
    engine = EmotionEngine.load(settings.engine)
    spec = JobSpec(job_id=JOB_ID, object_key="k", granularity="frame", channel_roles=("agent", "customer"))
    analysis = analyse(fixed_call(directory), spec, engine, None, settings, None)
    frame_keys = {s.index: frame_key(JOB_ID, s.index) for s in analysis.segments if s.frames is not None}
    values = result_values(analysis, settings.review.flags_for(spec.domain), frame_keys)
    # The model's id is the path it was loaded from: a temporary directory.
    del values["model_id"], values["enhancement"]["model"]["id"]
    return json.dumps(values)


FLOAT_TOLERANCE = 1e-6


def differences(expected: object, actual: object, path: str = "") -> Iterator[str]:
    """Where ``actual`` differs from ``expected``: any structure, text, integer
    or flag; a number by more than FLOAT_TOLERANCE."""
    if isinstance(expected, float) and isinstance(actual, (int, float)) and not isinstance(actual, bool):
        if abs(expected - actual) > FLOAT_TOLERANCE:
            yield f"{path}: {expected!r} -> {actual!r}"
    elif isinstance(expected, dict) and isinstance(actual, dict) and expected.keys() == actual.keys():
        for key in expected:
            yield from differences(expected[key], actual[key], f"{path}.{key}")
    elif isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        for index, (e, a) in enumerate(zip(expected, actual)):
            yield from differences(e, a, f"{path}[{index}]")
    elif type(expected) is not type(actual) or expected != actual:
        yield f"{path or 'document'}: {str(expected)[:80]} -> {str(actual)[:80]}"


def test_a_fixed_recording_gives_the_same_stored_result(tmp_path: Path) -> None:
    changed = list(differences(json.loads(GOLDEN.read_text()), json.loads(result_document(tmp_path))))
    assert changed == [], changed[:10]


def test_the_comparison_sees_a_changed_label_and_a_moved_score() -> None:
    golden = json.loads(GOLDEN.read_text())
    assert list(differences(golden, json.loads(GOLDEN.read_text()))) == []
    relabelled = json.loads(GOLDEN.read_text())
    relabelled["segments"][0]["primary"]["label"] = "sad"
    rescored = json.loads(GOLDEN.read_text())
    rescored["segments"][0]["scores"]["angry"] += 1e-5
    assert list(differences(golden, relabelled)) == [".segments[0].primary.label: angry -> sad"]
    assert [d.split(":")[0] for d in differences(golden, rescored)] == [".segments[0].scores.angry"]


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        GOLDEN.write_text(result_document(Path(tmp)))
