"""Synthesise test recordings: tones, noise, speech-like audio, espeak-ng
speech, and the same audio re-encoded by ffmpeg into other containers.

Multichannel arrays are channels-first, (n_channels, n_samples), like
worker.audio.DecodedAudio.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from functools import cache
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
import soundfile as sf
from scipy.signal import lfilter

# Formant targets (F1, F2, F3 in Hz) of common English vowels.
_VOWELS = np.array(
    [
        (730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480),
        (640, 1190, 2390), (440, 1020, 2240), (660, 1720, 2410), (490, 1350, 1690),
    ],
    dtype=np.float64,
)  # fmt: skip
_F4_HZ = 3500.0
_FILTER_BLOCK_SECONDS = 0.005


@cache
def ffmpeg_exe() -> str:
    return imageio_ffmpeg.get_ffmpeg_exe()


@cache
def ffmpeg_has_encoder(name: str) -> bool:
    listing = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-encoders"], capture_output=True, text=True, check=True
    ).stdout
    return any(line.split()[1:2] == [name] for line in listing.splitlines())


def tone(seconds: float, rate: int, freq: float = 440.0, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def silence(seconds: float, rate: int) -> np.ndarray:
    return np.zeros(round(seconds * rate), dtype=np.float32)


def white_noise(seconds: float, rate: int, rms: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rms * rng.standard_normal(round(seconds * rate))).astype(np.float32)


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))


def dominant_frequency(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[np.argmax(spectrum)])


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

    voiced = _formant_filter(source, rate, syllables, _VOWELS[rng.integers(len(_VOWELS), size=len(syllables))])
    loudness = rng.uniform(0.5, 1.0, len(syllables))[which]
    out = voiced * np.sin(np.pi * phase_in_syllable) ** 2 * loudness
    fricative = (phase_in_syllable < 0.15) & (rng.random(len(syllables)) < 0.6)[which]
    out += 0.05 * np.abs(out).max() * np.diff(rng.standard_normal(n) * fricative, prepend=0.0)
    return (peak * out / np.abs(out).max()).astype(np.float32)


def _formant_filter(
    source: np.ndarray, rate: int, times: np.ndarray, targets: np.ndarray
) -> np.ndarray:
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


def write_wav(path: Path, samples: np.ndarray, rate: int, subtype: str = "PCM_16") -> Path:
    """Write 1-D or channels-first audio; subtype as soundfile names it
    (PCM_U8, PCM_16, PCM_24, PCM_32, FLOAT, DOUBLE, ...). The container
    follows the suffix (.wav, .flac, .ogg)."""
    sf.write(str(path), np.asarray(samples).T, rate, subtype=subtype)
    return path


def write_wav_header(path: Path, seconds: float, rate: int, channels: int = 1) -> Path:
    """A 16-bit PCM WAV of the given length whose data is a sparse hole, so a
    three-hour recording costs a 44-byte write and no disk space."""
    data_bytes = round(seconds * rate) * channels * 2
    header = b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE"
    header += b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * channels * 2, channels * 2, 16)
    header += b"data" + struct.pack("<I", data_bytes)
    with path.open("wb") as f:
        f.write(header)
        f.truncate(len(header) + data_bytes)
    return path


def encode_with_ffmpeg(src_wav: Path, dst: Path, codec_args: list[str]) -> Path:
    """Re-encode with ffmpeg; the container follows dst's suffix unless
    codec_args has -f."""
    result = subprocess.run(
        [ffmpeg_exe(), "-y", "-nostdin", "-loglevel", "error", "-i", str(src_wav), *codec_args, str(dst)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"ffmpeg {' '.join(codec_args)} failed: {result.stderr.strip()}")
    return dst


def speak(text: str, path: Path, *, voice: str = "en-us", words_per_minute: int = 160) -> Path:
    """Speak `text` into a WAV (22.05 kHz mono) with espeak-ng; skip the test
    when espeak-ng is not installed."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        pytest.skip("espeak-ng is not installed (apt-get install -y espeak-ng)")
    subprocess.run(
        [espeak, "-v", voice, "-s", str(words_per_minute), "-w", str(path), text],
        capture_output=True,
        check=True,
    )
    return path
