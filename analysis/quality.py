"""Cheap signal-quality measures for one channel, used to flag recordings
whose emotion scores deserve less trust."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from config.settings import QualitySettings

_FRAME_SECONDS = 0.02
_CLIP_LEVEL = 0.999
# Noise power floor (-100 dBFS): digital silence would otherwise make the
# SNR infinite.
_POWER_FLOOR = 1e-10
# Below this many non-speech frames (0.5 s) the noise estimate is too thin
# to trust, so the percentile estimate is used instead.
_MIN_NOISE_FRAMES = 25
# Used only without a VAD mask: a frame is speech when it stands this far
# above the quiet frames and above a -60 dBFS silence floor.
_ENERGY_SPEECH_DB = 10.0
_SILENCE_POWER = 1e-6


@dataclass(frozen=True)
class AudioQuality:
    duration_seconds: float
    speech_seconds: float
    speech_ratio: float
    snr_db: float | None
    clipping_ratio: float
    flags: tuple[str, ...]


def measure(
    samples: np.ndarray,
    sample_rate: int,
    speech_mask: np.ndarray | None,
    thresholds: QualitySettings,
) -> AudioQuality:
    """Measure one channel.

    `samples` should be the decoded audio before any loudness normalisation,
    so that clipping at full scale is still visible. `speech_mask` is a
    boolean array spread evenly over the whole channel: one value per sample
    or per frame at any fixed rate (e.g. segment.py's 32 ms VAD frames,
    whose partial last frame shifts the mapping by under one frame). Without
    it, loud frames stand in for speech.
    """
    n = len(samples)
    duration = n / sample_rate
    clipping_ratio = float(np.count_nonzero(np.abs(samples) >= _CLIP_LEVEL) / n) if n else 0.0

    frame = max(1, round(_FRAME_SECONDS * sample_rate))
    n_frames = n // frame
    frames = samples[: n_frames * frame].reshape(n_frames, frame)
    power = np.square(frames, dtype=np.float64).mean(axis=1)
    if speech_mask is not None and len(speech_mask) and n:
        mask = np.asarray(speech_mask, dtype=bool)
        speech_seconds = float(mask.mean()) * duration
        centres = (np.arange(n_frames) * frame + frame // 2) * len(mask) // n
        is_speech = mask[centres]
    else:
        is_speech = _loud_frames(power)
        speech_seconds = float(is_speech.sum()) * frame / sample_rate if n_frames else 0.0

    snr_db = _snr_db(power, is_speech) if is_speech.any() else None
    flags: list[str] = []
    if speech_seconds == 0.0:
        flags.append("no_speech")
    elif speech_seconds < thresholds.min_speech_seconds:
        flags.append("too_short")
    if snr_db is not None and snr_db < thresholds.low_snr_db:
        flags.append("low_snr")
    if clipping_ratio > thresholds.clipping_ratio_max:
        flags.append("clipping")
    return AudioQuality(
        duration_seconds=duration,
        speech_seconds=speech_seconds,
        speech_ratio=speech_seconds / duration if duration else 0.0,
        snr_db=snr_db,
        clipping_ratio=clipping_ratio,
        flags=tuple(flags),
    )


def _loud_frames(power: np.ndarray) -> np.ndarray:
    if not len(power):
        return np.zeros(0, dtype=bool)
    quiet = max(float(np.percentile(power, 10)), _POWER_FLOOR)
    return (power > quiet * 10 ** (_ENERGY_SPEECH_DB / 10)) & (power > _SILENCE_POWER)


def _snr_db(power: np.ndarray, is_speech: np.ndarray) -> float:
    if np.count_nonzero(~is_speech) >= _MIN_NOISE_FRAMES:
        # Median: VAD edges leak a few speech frames into the non-speech
        # set, and one of them would dominate a mean of quiet frames.
        signal, noise = power[is_speech].mean(), np.median(power[~is_speech])
    else:
        # Speech everywhere (or VAD fooled by noise): the loudest frames
        # against the quietest still separate clean from noisy audio.
        signal, noise = np.percentile(power, [95, 10])
    # Speech frames hold speech plus noise; subtract the noise to get the
    # speech power, floored so equal powers give a finite, very low SNR.
    ratio = max(signal / max(noise, _POWER_FLOOR) - 1.0, 1e-3)
    return float(10 * np.log10(ratio))
