"""Synthetic audio for tests and benchmarks: speech-like signals that
Silero VAD takes for speech (no speech corpus ships with the project), and
stereo calls of two parties taking turns.

Multichannel arrays are channels-first, (n_channels, n_samples), like
analysis.audio.DecodedAudio.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import lfilter

# Formant targets (F1, F2, F3 in Hz) of common English vowels.
VOWEL_FORMANTS_HZ = np.array(
    [
        (730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480),
        (640, 1190, 2390), (440, 1020, 2240), (660, 1720, 2410), (490, 1350, 1690),
    ],
    dtype=np.float64,
)  # fmt: skip
_F4_HZ = 3500.0
_FILTER_BLOCK_SECONDS = 0.005


def speech_like(seconds: float, rate: int, seed: int = 0, peak: float = 0.5) -> np.ndarray:
    """Continuous vowel-like speech with no pauses longer than ~0.1 s.

    A glottal pulse train with a wandering pitch, breath noise and spectral
    tilt goes through four formant resonators whose targets glide from
    syllable to syllable (every 120-220 ms), with deep syllabic amplitude
    modulation and fricative bursts. Silero VAD marks about 99% of its
    frames as speech at 8, 16 and 44.1 kHz; steadier versions (shallow
    modulation, no breath noise) are detected for a second and then dropped.
    """
    rng = np.random.default_rng(seed)
    n = round(seconds * rate)
    t = np.arange(n) / rate
    syllables = np.concatenate([[0.0], np.cumsum(rng.uniform(0.12, 0.22, int(seconds / 0.12) + 2))])
    which = np.clip(np.searchsorted(syllables, t, side="right") - 1, 0, len(syllables) - 2)
    phase_in_syllable = (t - syllables[which]) / np.diff(syllables)[which]

    knots = np.arange(0.0, seconds + 0.5, 0.5)
    f0 = np.interp(t, knots, rng.uniform(100, 210) * np.exp(rng.normal(0, 0.12, len(knots))))
    pulses = np.diff(np.floor(np.cumsum(f0 / rate)), prepend=0.0)
    source = lfilter([1.0], [1.0, -0.97], lfilter([1.0], [1.0, -0.97], pulses))  # glottal roll-off
    source = np.diff(source, prepend=0.0)  # lip radiation
    source += 0.5 * source.std() * rng.standard_normal(n)  # breathiness

    voiced = _formant_filter(
        source, rate, syllables, VOWEL_FORMANTS_HZ[rng.integers(len(VOWEL_FORMANTS_HZ), size=len(syllables))]
    )
    loudness = rng.uniform(0.5, 1.0, len(syllables))[which]
    out = voiced * np.sin(np.pi * phase_in_syllable) ** 2 * loudness
    fricative = (phase_in_syllable < 0.15) & (rng.random(len(syllables)) < 0.6)[which]
    out += 0.05 * np.abs(out).max() * np.diff(rng.standard_normal(n) * fricative, prepend=0.0)
    return (peak * out / np.abs(out).max()).astype(np.float32)


def _formant_filter(source: np.ndarray, rate: int, times: np.ndarray, targets: np.ndarray) -> np.ndarray:
    # Time-varying resonators, run block by block with the filter state
    # carried over so the formants glide without clicks.
    block = max(1, round(_FILTER_BLOCK_SECONDS * rate))
    starts = np.arange(0, len(source), block)
    centres = (starts + block / 2) / rate
    tracks = [np.interp(centres, times, targets[:, k]) for k in range(3)]
    tracks.append(np.full(len(starts), _F4_HZ))
    out = np.zeros_like(source)
    for k, track in enumerate(tracks):
        state = np.zeros(2)
        for start, freq in zip(starts, track):
            if freq >= rate / 2:
                continue
            r = np.exp(-np.pi * (60 + 0.06 * freq) / rate)
            a = [1.0, -2 * r * np.cos(2 * np.pi * freq / rate), r * r]
            chunk = slice(start, start + block)
            filtered, state = lfilter([1 - r], a, source[chunk], zi=state)
            out[chunk] += 0.5**k * filtered
    return out


def stereo_call(
    seconds: float,
    rate: int = 16000,
    seed: int = 0,
    *,
    snippets: list[np.ndarray] | None = None,
    noise_dbfs: float | None = None,
) -> np.ndarray:
    """Agent and customer taking turns of 2-12 s, each on its own channel,
    with 0.2-1 s pauses between turns: (2, n_samples) float32.

    Each turn is synthesised with ``speech_like`` (about 7 ms of CPU per
    second of audio), or, with ``snippets`` (speech at ``rate``), cut from a
    random one of them at a random gain: long calls in bulk for benchmarks.
    ``noise_dbfs`` adds a floor of white noise to both channels."""
    rng = np.random.default_rng(seed)
    call = np.zeros((2, int(seconds * rate)), dtype=np.float32)
    t, speaker = 0.0, 0
    while t < seconds - 1:
        turn = min(float(rng.uniform(2, 12)), seconds - t)
        a = int(t * rate)
        if snippets:
            source = snippets[int(rng.integers(len(snippets)))]
            n = min(int(turn * rate), len(source))
            b = int(rng.integers(0, len(source) - n + 1))
            speech = source[b : b + n] * np.float32(rng.uniform(0.4, 1.0))
        else:
            speech = speech_like(turn, rate, seed=seed * 100_003 + int(t * 10))
        speech = speech[: call.shape[1] - a]
        call[speaker, a : a + len(speech)] = speech
        t += turn + float(rng.uniform(0.2, 1.0))
        speaker = 1 - speaker
    if noise_dbfs is not None:
        call += np.float32(10 ** (noise_dbfs / 20)) * rng.standard_normal(call.shape, dtype=np.float32)
    return call
