"""VAD benchmark: Silero frame by frame (what the worker did before) against
analysis.segment.speech_probabilities, on synthetic call channels.

    python -m bench.vad [--minutes N] [--device cpu|cuda] [--repeats N]

Reports the time per channel-minute of each, the speed-up, and how well they
agree: 32 ms frames on the same side of the 0.5 threshold, and the segments
segment_channel makes from each (start and end within 64 ms). Prints JSON last.

The calls are made here with numpy alone: a harmonic voice (a wandering pitch
whose harmonics are shaped by vowel formants, in syllables of 120-220 ms with
a sin^2 envelope) in turns of 1-8 s between pauses of 0.3-6 s, over a noise
floor; every other channel is band-limited to 4 kHz like upsampled telephony.
Silero hears most of the voice as speech and the pauses as none (the report
says how much), but not always surely: that is where its state's long memory
shows (see worker/segment.py).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from analysis.audio import SAMPLE_RATE
from analysis.segment import (
    MASK_FRAME_SECONDS,
    Segment,
    framewise_speech_probabilities,
    segment_channel,
    speech_probabilities,
)
from analysis.synthetic import VOWEL_FORMANTS_HZ
from config.settings import SegmentationSettings

THRESHOLD = 0.5  # analysis.segment's speech threshold
BOUNDARY_TOLERANCE_SECONDS = 0.064  # two frames
_VOWELS = VOWEL_FORMANTS_HZ.astype(np.float32)
_FORMANT_WIDTH_HZ = 80.0
_VOICE_MAX_HZ = 3800.0


@dataclass(frozen=True)
class Channel:
    samples: np.ndarray  # 16 kHz float32
    speech: list[tuple[float, float]]  # where the voice talks, in seconds


def voice(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """A vowel-like voice, loudest 1.0."""
    n = round(seconds * SAMPLE_RATE)
    t = np.arange(n, dtype=np.float32) / SAMPLE_RATE
    syllables = np.concatenate([[0.0], np.cumsum(rng.uniform(0.12, 0.22, int(seconds / 0.12) + 2))])
    which = np.searchsorted(syllables, t, side="right") - 1
    envelope = np.sin(np.pi * (t - syllables[which]) / np.diff(syllables)[which]) ** 2
    envelope *= rng.uniform(0.4, 1.0, len(syllables))[which]
    knots = np.arange(0.0, seconds + 0.5, 0.25)
    f0 = np.interp(t, knots, rng.uniform(100, 210) * np.exp(rng.normal(0, 0.1, len(knots)))).astype(np.float32)
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    formants = _VOWELS[rng.integers(len(_VOWELS), size=len(syllables))][which]  # (n, 3)
    out = np.zeros(n, dtype=np.float32)
    for k in range(1, int(_VOICE_MAX_HZ / 100) + 1):
        freq = k * f0
        gain = (1 / (1 + ((freq[:, None] - formants) / _FORMANT_WIDTH_HZ) ** 2)).sum(axis=1) / np.sqrt(k)
        out += gain * (freq < _VOICE_MAX_HZ) * np.sin(k * phase)
    out *= envelope
    out += 0.05 * out.std() * rng.standard_normal(n).astype(np.float32)  # breath
    return out / np.abs(out).max()


def call_channel(seconds: float, seed: int, telephone: bool) -> Channel:
    """One party's channel: turns of the voice between pauses (where the
    other party talks), over a noise floor."""
    rng = np.random.default_rng(seed)
    samples = np.zeros(round(seconds * SAMPLE_RATE), dtype=np.float32)
    speech = []
    t = float(rng.uniform(0.3, 2.0))
    while t < seconds - 1.0:
        turn = min(float(rng.uniform(1.0, 8.0)), seconds - t)
        start = round(t * SAMPLE_RATE)
        samples[start : start + round(turn * SAMPLE_RATE)] = rng.uniform(0.1, 0.6) * voice(turn, rng)
        speech.append((t, t + turn))
        t += turn + float(rng.uniform(0.3, 6.0))
    samples += 10 ** rng.uniform(-4, -2) * rng.standard_normal(len(samples)).astype(np.float32)
    if telephone:
        spectrum = np.fft.rfft(samples)
        spectrum[np.fft.rfftfreq(len(samples), 1 / SAMPLE_RATE) > 4000] = 0
        samples = np.fft.irfft(spectrum, len(samples)).astype(np.float32)
    return Channel(samples, speech)


def synthetic_channels(minutes: float, seed: int = 0) -> list[Channel]:
    """Channels of 2-6 minutes, `minutes` in all."""
    rng = np.random.default_rng(seed)
    channels: list[Channel] = []
    left = minutes * 60
    while left > 0:
        seconds = min(float(rng.uniform(120, 360)), max(left, 30.0))
        channels.append(call_channel(seconds, seed + len(channels), telephone=len(channels) % 2 == 1))
        left -= seconds
    return channels


def frame_agreement(reference: np.ndarray, other: np.ndarray) -> float:
    """Share of frames on the same side of the threshold."""
    return float(np.mean((reference >= THRESHOLD) == (other >= THRESHOLD)))


def matched(reference: list[Segment], other: list[Segment]) -> int:
    """How many of `reference`'s segments have a segment in `other` whose start
    and end are each within BOUNDARY_TOLERANCE_SECONDS of theirs. Taken both
    ways, this counts a merge or split of two segments as misses on each side
    rather than hiding it."""
    starts = np.array([s.start for s in other])
    ends = np.array([s.end for s in other])
    tolerance = BOUNDARY_TOLERANCE_SECONDS
    return sum(bool(np.any((abs(starts - s.start) <= tolerance) & (abs(ends - s.end) <= tolerance))) for s in reference)


def detection(probs: np.ndarray, speech: list[tuple[float, float]]) -> dict:
    """How Silero hears the synthetic voice: the share of frames marked speech
    well inside turns (0.2 s in from each end) and well inside pauses."""
    centres = (np.arange(len(probs)) + 0.5) * MASK_FRAME_SECONDS
    inside = np.zeros(len(probs), dtype=bool)
    near = np.zeros(len(probs), dtype=bool)
    for start, end in speech:
        inside |= (centres > start + 0.2) & (centres < end - 0.2)
        near |= (centres > start - 0.3) & (centres < end + 0.3)
    return {
        "in_speech": float(np.mean(probs[inside] >= THRESHOLD)),
        "in_pauses": float(np.mean(probs[~near] >= THRESHOLD)),
    }


def segments_from(samples: np.ndarray, probs: np.ndarray) -> list[Segment]:
    """segment_channel's segments of a channel, given its speech probabilities."""
    return segment_channel(samples, 0, SegmentationSettings(), vad=lambda _: probs)[0]


def _seconds(fn: Callable[[np.ndarray], np.ndarray], samples: np.ndarray) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    out = fn(samples)
    return time.perf_counter() - start, out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="channel-minutes of synthetic calls")
    parser.add_argument("--device", default="cpu", help="where the batched VAD runs (cpu or cuda)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each; the fastest counts")
    args = parser.parse_args(argv)
    channels = synthetic_channels(args.minutes)
    minutes = sum(len(c.samples) for c in channels) / SAMPLE_RATE / 60
    speech_probabilities(channels[0].samples[: 10 * SAMPLE_RATE], args.device)  # load and warm up

    def batched(samples: np.ndarray) -> np.ndarray:
        return speech_probabilities(samples, args.device)

    reference_seconds, batched_seconds = [np.inf] * len(channels), [np.inf] * len(channels)
    reference_probs, batched_probs = [np.empty(0)] * len(channels), [np.empty(0)] * len(channels)
    for _ in range(args.repeats):
        for i, channel in enumerate(channels):  # interleaved, so both see the same machine
            seconds, probs = _seconds(framewise_speech_probabilities, channel.samples)
            reference_seconds[i] = min(reference_seconds[i], seconds)
            reference_probs[i] = probs
            seconds, probs = _seconds(batched, channel.samples)
            batched_seconds[i] = min(batched_seconds[i], seconds)
            batched_probs[i] = probs

    # A stereo call's two channels go through the LSTM together (analysis.pipeline does so).
    pairs = [
        np.stack([a.samples[:n], b.samples[:n]])
        for a, b in zip(channels[::2], channels[1::2])
        if (n := min(len(a.samples), len(b.samples)))
    ]
    stereo_seconds = [min(_seconds(batched, pair)[0] for _ in range(args.repeats)) for pair in pairs]
    if not pairs:
        parser.error("--minutes too small for two channels")
    stereo_ms = 1000 * sum(stereo_seconds) / (sum(pair.size for pair in pairs) / SAMPLE_RATE / 60)

    frames_same = sum(frame_agreement(r, b) * len(r) for r, b in zip(reference_probs, batched_probs))
    frames = sum(len(r) for r in reference_probs)
    max_difference = max(float(np.abs(r - b).max()) for r, b in zip(reference_probs, batched_probs))
    reference_segments = [segments_from(c.samples, p) for c, p in zip(channels, reference_probs)]
    batched_segments = [segments_from(c.samples, p) for c, p in zip(channels, batched_probs)]
    reference_count = sum(map(len, reference_segments))
    batched_count = sum(map(len, batched_segments))
    reference_matched = sum(matched(r, b) for r, b in zip(reference_segments, batched_segments))
    batched_matched = sum(matched(b, r) for r, b in zip(reference_segments, batched_segments))
    heard = [detection(p, c.speech) for c, p in zip(channels, reference_probs)]

    reference_ms = 1000 * sum(reference_seconds) / minutes
    batched_ms = 1000 * sum(batched_seconds) / minutes
    cpu = f"cpu ({platform.machine()}, {os.cpu_count()} cores; each VAD call keeps to one torch thread)"
    report: dict[str, Any] = {
        "device": f"batched on {torch.cuda.get_device_name(0)}, reference on {cpu}"
        if args.device.startswith("cuda")
        else cpu,
        "channels": len(channels),
        "channel_minutes": round(minutes, 2),
        "reference_ms_per_channel_minute": round(reference_ms, 1),
        "batched_ms_per_channel_minute": round(batched_ms, 2),
        "speedup": round(reference_ms / batched_ms, 1),
        "stereo_ms_per_channel_minute": round(stereo_ms, 2),
        "stereo_speedup": round(reference_ms / stereo_ms, 1),
        "frame_agreement": round(frames_same / frames, 5),
        "max_probability_difference": float(f"{max_difference:.2g}"),
        "reference_segments": reference_count,
        "batched_segments": batched_count,
        "reference_segments_matched": round(reference_matched / max(reference_count, 1), 4),
        "batched_segments_matched": round(batched_matched / max(batched_count, 1), 4),
        "silero_on_synthetic_voice": {
            "in_speech": round(float(np.mean([h["in_speech"] for h in heard])), 3),
            "in_pauses": round(float(np.mean([h["in_pauses"] for h in heard])), 4),
        },
    }
    print(f"{report['channels']} channels, {minutes:.1f} channel-minutes; {report['device']}")
    print(f"reference (frame by frame): {reference_ms:8.1f} ms per channel-minute")
    print(f"batched:                    {batched_ms:8.2f} ms per channel-minute  ({report['speedup']}x)")
    print(
        f"batched, stereo together:   {report['stereo_ms_per_channel_minute']:8.2f} ms per channel-minute"
        f"  ({report['stereo_speedup']}x)"
    )
    agreement = 100 * report["frame_agreement"]
    print(f"frames on the same side of {THRESHOLD}: {agreement:.3f}%  (max |dp| {max_difference:.2g})")
    print(
        f"segments within {1000 * BOUNDARY_TOLERANCE_SECONDS:.0f} ms: {reference_matched}/{reference_count} reference, "
        f"{batched_matched}/{batched_count} batched"
    )
    heard_as_speech = report["silero_on_synthetic_voice"]
    print(
        f"Silero hears {100 * heard_as_speech['in_speech']:.1f}% of the voice's frames "
        f"and {100 * heard_as_speech['in_pauses']:.2f}% of the pauses' as speech"
    )
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
