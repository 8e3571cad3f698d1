"""Split one 16 kHz channel into utterance segments with Silero VAD.

The emotion model scores best on 3-10 s of one speaker's speech, so VAD
regions are merged across short pauses, packed towards that length, and cut
when a stretch of speech has no pause to cut at.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from types import ModuleType
from typing import Any

import numpy as np
import torch

from analysis.audio import SAMPLE_RATE
from config.settings import SegmentationSettings

VAD_FRAME_SAMPLES = 512  # Silero's window at 16 kHz
MASK_FRAME_SECONDS = VAD_FRAME_SAMPLES / SAMPLE_RATE  # 32 ms per speech-mask value
_THRESHOLD = 0.5
_MIN_KEEP_SECONDS = 0.3
# Silero's LSTM starts from a blank state, so its first frames of speech
# score low (0.4-0.6 on espeak words); on clips under half a second that is
# much of the clip, so energy decides instead.
_VAD_MIN_SECONDS = 0.5
_SHORT_CLIP_SPEECH_DBFS = -45.0


@dataclass(frozen=True)
class Segment:
    channel: int
    start: float  # seconds from the start of the recording
    end: float


@cache
def _silero() -> ModuleType:
    # Importing silero_vad calls torch.set_num_threads(1) for the whole
    # process, which would starve the emotion model; put the setting back.
    threads = torch.get_num_threads()
    import silero_vad

    torch.set_num_threads(threads)
    return silero_vad


@cache
def load_vad() -> Any:
    """Silero's TorchScript model from the wheel (no network; the ONNX one
    would need onnxruntime). Not thread-safe: it keeps LSTM state between
    calls, so use one per process, as Celery's prefork pool does."""
    return _silero().load_silero_vad(onnx=False)


def speech_probabilities(samples: np.ndarray, vad: Any = None) -> np.ndarray:
    """Silero's speech probability for each 32 ms frame of 16 kHz audio."""
    model = vad if vad is not None else load_vad()
    n_frames = math.ceil(len(samples) / VAD_FRAME_SAMPLES)
    padded = np.zeros(n_frames * VAD_FRAME_SAMPLES, dtype=np.float32)
    padded[: len(samples)] = samples
    frames = torch.from_numpy(padded).reshape(n_frames, 1, VAD_FRAME_SAMPLES)
    model.reset_states()
    # One 32 ms frame is too little work to share between threads: with two,
    # each frame waits on a thread barrier, which costs twice the CPU when
    # the machine is idle and 10-20x the wall time when other processes
    # compete for the cores.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            probs = [model(frame, SAMPLE_RATE).item() for frame in frames]
    finally:
        torch.set_num_threads(threads)
    return np.array(probs, dtype=np.float32)


def segment_channel(
    samples: np.ndarray,
    channel: int,
    lengths: SegmentationSettings,
    *,
    join_gap_seconds: float = 2.0,
    vad: Any = None,
) -> tuple[list[Segment], np.ndarray]:
    """Segments of one 16 kHz channel and its speech mask (one bool per
    MASK_FRAME_SECONDS frame, for quality.measure).

    Regions closer than `lengths.merge_gap_seconds` are merged while the
    result stays within `lengths.target_seconds`; a piece shorter than
    `lengths.min_seconds` is also joined across a pause of up to
    `join_gap_seconds` (a longer pause on one channel usually means the other
    party spoke). Pieces over `lengths.max_seconds` are cut into equal parts
    of at most `lengths.target_seconds`; isolated bits under 0.3 s are dropped.
    """
    if len(samples) < _VAD_MIN_SECONDS * SAMPLE_RATE:
        regions, mask = _short_clip(samples)
    else:
        regions, mask = _vad_regions(speech_probabilities(samples, vad), len(samples))
    pieces = _pack(regions, lengths.min_seconds, lengths.target_seconds, lengths.merge_gap_seconds, join_gap_seconds)
    segments = [
        Segment(channel, round(start, 3), round(end, 3))
        for piece in pieces
        for start, end in _split_evenly(*piece, lengths.max_seconds, lengths.target_seconds)
        if end - start >= _MIN_KEEP_SECONDS
    ]
    return segments, mask


def _vad_regions(probs: np.ndarray, n_samples: int) -> tuple[list[tuple[float, float]], np.ndarray]:
    # Short minimums here: merging, packing and the 0.3 s floor come later,
    # where neighbouring regions are known.
    stamps = _silero().get_speech_timestamps_from_probs(
        probs.tolist(),
        sampling_rate=SAMPLE_RATE,
        threshold=_THRESHOLD,
        min_speech_duration_ms=100,
        min_silence_duration_ms=100,
        speech_pad_ms=30,
        audio_length_samples=n_samples,
    )
    mask = np.zeros(len(probs), dtype=bool)
    for stamp in stamps:
        mask[stamp["start"] // VAD_FRAME_SAMPLES : -(-stamp["end"] // VAD_FRAME_SAMPLES)] = True
    regions = [(s["start"] / SAMPLE_RATE, s["end"] / SAMPLE_RATE) for s in stamps]
    return regions, mask


def _short_clip(samples: np.ndarray) -> tuple[list[tuple[float, float]], np.ndarray]:
    """A very short clip is one region if it is louder than near-silence."""
    n_frames = math.ceil(len(samples) / VAD_FRAME_SAMPLES)
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if len(samples) else 0.0
    if rms <= 10 ** (_SHORT_CLIP_SPEECH_DBFS / 20):
        return [], np.zeros(n_frames, dtype=bool)
    return [(0.0, len(samples) / SAMPLE_RATE)], np.ones(n_frames, dtype=bool)


def _pack(
    regions: list[tuple[float, float]],
    min_seconds: float,
    target_max_seconds: float,
    merge_gap_seconds: float,
    join_gap_seconds: float,
) -> list[tuple[float, float]]:
    pieces: list[tuple[float, float]] = []
    for start, end in regions:
        if pieces:
            last_start, last_end = pieces[-1]
            gap = start - last_end
            short = last_end - last_start < min_seconds or end - start < min_seconds
            if end - last_start <= target_max_seconds and (
                gap <= merge_gap_seconds or (short and gap <= join_gap_seconds)
            ):
                pieces[-1] = (last_start, end)
                continue
        pieces.append((start, end))
    return pieces


def _split_evenly(
    start: float, end: float, hard_max_seconds: float, target_max_seconds: float
) -> list[tuple[float, float]]:
    if end - start <= hard_max_seconds:
        return [(start, end)]
    parts = math.ceil((end - start) / target_max_seconds)
    step = (end - start) / parts
    return [(start + i * step, start + (i + 1) * step) for i in range(parts)]
