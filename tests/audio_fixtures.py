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

from worker.synthetic import speech_like  # noqa: F401  (re-exported for the tests)


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
