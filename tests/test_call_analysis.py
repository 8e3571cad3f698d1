"""Whole calls through the API and a real worker: stereo per channel, frame
timelines, aggregates, and recordings too poor to judge."""

from __future__ import annotations

import io

import numpy as np
import pytest

from tests.conftest import submit, voiced, wait_for_job, wav_bytes

RATE = 16000


def stereo_call(turns: list[tuple[int, float]], gap: float = 0.8) -> np.ndarray:
    """(channel, seconds) turns separated by short silences, one speaker per channel."""
    total = sum(seconds + gap for _, seconds in turns)
    call = np.zeros((int(total * RATE), 2), dtype=np.float32)
    t = 0.0
    for i, (channel, seconds) in enumerate(turns):
        speech = voiced(seconds, seed=i)
        a = int(t * RATE)
        call[a : a + len(speech), channel] = speech
        t += seconds + gap
    return call


def test_stereo_call_is_analysed_per_channel_with_timelines(client, keys, worker):
    call = stereo_call([(0, 6.0), (1, 4.0), (0, 12.0), (1, 3.5)])
    response = submit(client, keys["submitter"], wav_bytes(call), granularity="frame", channels="agent,customer")
    assert response.status_code == 202, response.get_json()
    job = wait_for_job(client, keys["submitter"], response.get_json()["id"], timeout=180)
    assert job["status"] == "succeeded", job["error"]
    result = job["result"]
    assert job["recording"]["channels"] == 2 and job["recording"]["channel_roles"] == ["agent", "customer"]

    segments = result["segments"]
    assert {s["role"] for s in segments} == {"agent", "customer"}
    for s in segments:
        # Each segment lies inside one of its channel's turns, never across speakers.
        assert 0 <= s["start"] < s["end"] <= len(call) / RATE + 0.01
        assert s["end"] - s["start"] <= 30.0
        assert sum(s["scores"].values()) == pytest.approx(1.0, abs=1e-4)
        assert s["quality"]["speech_ratio"] > 0.5
        timeline = s["timeline"]
        assert timeline["window_seconds"] == 0.4 and timeline["hop_seconds"] == 0.1
        assert len(timeline["scores"]) == len(timeline["starts"]) and len(timeline["scores"][0]) == 9
        assert timeline["runs"][0]["start"] == pytest.approx(s["start"], abs=0.01)
        assert all(a["end"] > a["start"] for a in timeline["runs"])
    agent_speech = sum(s["end"] - s["start"] for s in segments if s["role"] == "agent")
    assert agent_speech == pytest.approx(18.0, abs=2.0)

    aggregate = result["aggregate"]
    assert set(aggregate["by_role"]) == {"agent", "customer"}
    assert sum(aggregate["speech_share"].values()) == pytest.approx(1.0, abs=1e-3)
    assert aggregate["speech_seconds"] == pytest.approx(25.5, abs=2.5)
    assert len(aggregate["peak_negative_moments"]) == min(3, len(segments))

    frames = client.get(f"/v1/jobs/{job['id']}/segments/0/frames", headers=keys["submitter"])
    assert frames.status_code == 200
    array = np.load(io.BytesIO(frames.data))
    assert array.shape[1] == 64
    seconds = segments[0]["end"] - segments[0]["start"]
    assert array.shape[0] == pytest.approx(seconds * 50, abs=2)


def test_silence_is_unknown_with_no_speech_not_a_guess(client, keys, worker):
    response = submit(client, keys["submitter"], wav_bytes(np.zeros(RATE * 3, dtype=np.float32)))
    job = wait_for_job(client, keys["submitter"], response.get_json()["id"])
    assert job["status"] == "succeeded"
    assert job["result"]["primary"]["label"] == "unknown"
    assert "no_speech" in job["result"]["flags"]


def test_very_short_clip_is_flagged_too_short(client, keys, worker):
    response = submit(client, keys["submitter"], wav_bytes(voiced(0.4)))
    job = wait_for_job(client, keys["submitter"], response.get_json()["id"])
    assert job["status"] == "succeeded"
    assert "too_short" in job["result"]["flags"]


def test_nan_samples_are_cleaned_not_fatal(client, keys, worker):
    samples = voiced(2.0)
    samples[1000:1100] = np.nan
    response = submit(client, keys["submitter"], wav_bytes(samples, subtype="FLOAT"))
    job = wait_for_job(client, keys["submitter"], response.get_json()["id"])
    assert job["status"] == "succeeded", job["error"]
    assert all(np.isfinite(v) for v in job["result"]["scores"].values())


def test_eight_khz_telephony_mp3_is_decoded(client, keys, worker, tmp_path):
    from tests.audio_fixtures import encode_with_ffmpeg, write_wav

    src = write_wav(tmp_path / "call.wav", voiced(3.0, rate=8000), 8000)
    mp3 = encode_with_ffmpeg(src, tmp_path / "call.mp3", ["-c:a", "libmp3lame", "-b:a", "32k"])
    response = submit(client, keys["submitter"], mp3.read_bytes(), filename="call.mp3")
    assert response.status_code == 202, response.get_json()
    job = wait_for_job(client, keys["submitter"], response.get_json()["id"])
    assert job["status"] == "succeeded", job["error"]
    assert job["recording"]["sample_rate"] == 8000
    assert job["recording"]["duration_seconds"] == pytest.approx(3.0, abs=0.1)
