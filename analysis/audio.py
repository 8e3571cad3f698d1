"""Decode uploaded recordings into separate 16 kHz float32 channels.

Each channel stays separate: call recorders often put agent and customer on
their own channel, and averaging them would blend two speakers into one.
"""

from __future__ import annotations

import re
import struct
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO

import numpy as np
import soundfile as sf
import soxr

from analysis.probe import (
    MAX_CHANNELS,
    MIN_DURATION_SECONDS,
    SOUNDFILE_FORMATS,
    probe_duration,
    sniff_audio_format,
    wav_is_truncated,
)

SAMPLE_RATE = 16_000

# Bounded blocks keep memory near the size of the 16 kHz output even for
# two-hour 48 kHz multichannel files.
_BLOCK_SECONDS = 10
_LOG_PREFIX_RE = re.compile(r"^(\[[^\]]*\]\s*)+")


class AudioError(Exception):
    """A recording that cannot be analysed; `code` is stable, `message` is for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class DecodedAudio:
    channels: np.ndarray  # float32, (n_channels, n_samples) at SAMPLE_RATE
    source_sample_rate: int
    source_channels: int
    source_format: str
    duration_seconds: float
    nonfinite_samples: int = 0  # NaN/inf source samples replaced by silence


@dataclass(frozen=True)
class _Stream:
    sample_rate: int
    channels: int
    blocks: Iterator[np.ndarray]  # float32, (frames, channels) at sample_rate


def decode(path: Path, *, ffmpeg: str, max_duration_seconds: float, max_channels: int = MAX_CHANNELS) -> DecodedAudio:
    """Decode to float32 channels at 16 kHz, or raise AudioError with code
    undecodable_audio, empty_audio, audio_too_short or recording_too_long."""
    if path.stat().st_size == 0:
        raise AudioError("empty_audio", "the file is empty")
    with path.open("rb") as f:
        fmt = sniff_audio_format(f.read(64))
    if fmt is None:
        raise AudioError("undecodable_audio", "not a recognised audio format")
    probed = probe_duration(path, ffmpeg)
    if probed is not None and probed > max_duration_seconds:
        raise _too_long(probed, max_duration_seconds)

    try:
        with _open_stream(path, fmt, ffmpeg) as stream:
            if stream.channels > max_channels:
                raise AudioError(
                    "undecodable_audio",
                    f"{stream.channels} channels; at most {max_channels} are supported",
                )
            channels, source_frames, nonfinite = _read_resampled(stream, max_duration_seconds)
    except sf.LibsndfileError as error:  # corrupt data past a readable header
        raise AudioError("undecodable_audio", error.error_string) from error

    if source_frames == 0:
        if fmt in ("wav", "rf64") and wav_is_truncated(path):
            raise AudioError("undecodable_audio", "the file holds a header but no audio data")
        raise AudioError("empty_audio", "the recording has no samples")
    if nonfinite == source_frames * stream.channels:
        raise AudioError("undecodable_audio", "every sample is NaN or infinite")
    if source_frames < MIN_DURATION_SECONDS * stream.sample_rate:
        raise AudioError(
            "audio_too_short",
            f"the recording lasts {source_frames / stream.sample_rate:.3f} s; at least {MIN_DURATION_SECONDS} s is needed",
        )
    # A constant offset from cheap recording hardware skews energy-based
    # measures (SNR, loudness), so each channel is centred on zero.
    channels -= channels.mean(axis=1, dtype=np.float64, keepdims=True).astype(np.float32)
    return DecodedAudio(
        channels=channels,
        source_sample_rate=stream.sample_rate,
        source_channels=stream.channels,
        source_format=fmt,
        duration_seconds=channels.shape[1] / SAMPLE_RATE,
        nonfinite_samples=nonfinite,
    )


def _too_long(seconds: float, limit: float) -> AudioError:
    return AudioError("recording_too_long", f"the recording lasts {seconds:.0f} s; the limit is {limit:.0f} s")


def _read_resampled(stream: _Stream, max_duration_seconds: float) -> tuple[np.ndarray, int, int]:
    """Return (channels-first 16 kHz audio, source frames, non-finite samples)."""
    max_frames = max_duration_seconds * stream.sample_rate
    resampler = (
        None
        if stream.sample_rate == SAMPLE_RATE
        else soxr.ResampleStream(stream.sample_rate, SAMPLE_RATE, stream.channels, dtype="float32", quality="HQ")
    )
    out: list[np.ndarray] = []
    frames = nonfinite = 0
    for block in stream.blocks:
        frames += len(block)
        if frames > max_frames:
            # The header under-stated the length (or had none): stop now
            # rather than decode hours of audio that will be refused anyway.
            raise _too_long(frames / stream.sample_rate, max_duration_seconds)
        # Cleaned before resampling, since one NaN would smear across the
        # whole filter window.
        bad = ~np.isfinite(block)
        if bad.any():
            nonfinite += int(bad.sum())
            block[bad] = 0.0
        out.append((block if resampler is None else resampler.resample_chunk(block)).T)
    if resampler is not None:
        out.append(resampler.resample_chunk(np.zeros((0, stream.channels), np.float32), last=True).T)
    # One copy straight into a C-ordered array, so each channel is contiguous.
    joined = np.empty((stream.channels, sum(block.shape[1] for block in out)), np.float32)
    if out:
        np.concatenate(out, axis=1, out=joined)
    return joined, frames, nonfinite


@contextmanager
def _open_stream(path: Path, fmt: str, ffmpeg: str) -> Iterator[_Stream]:
    if fmt in SOUNDFILE_FORMATS:
        try:
            sound = sf.SoundFile(str(path))
        except sf.LibsndfileError:
            pass  # e.g. a WAV holding MP3 or G.729, which ffmpeg can decode
        else:
            with sound:
                yield _Stream(sound.samplerate, sound.channels, _soundfile_blocks(sound))
            return
    with _ffmpeg_stream(path, ffmpeg) as stream:
        yield stream


def _soundfile_blocks(sound: sf.SoundFile) -> Iterator[np.ndarray]:
    # Not SoundFile.blocks(): it trusts the header's frame count, and where
    # that is an estimate (MP3 inside WAV) it pads the last block with
    # uninitialised memory.
    frames = sound.samplerate * _BLOCK_SECONDS
    while len(block := sound.read(frames, dtype="float32", always_2d=True)):
        yield block


@contextmanager
def _ffmpeg_stream(path: Path, ffmpeg: str) -> Iterator[_Stream]:
    # WAV on stdout carries the source rate and channel count in its header,
    # so no fragile parsing of ffmpeg's human-readable stream description.
    # stderr goes to a file: a corrupt input can log enough to fill a pipe
    # and deadlock ffmpeg while we are blocked reading stdout. Only local
    # files may be opened, so a playlist-like input cannot make ffmpeg fetch
    # URLs.
    command = [
        ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error",
        "-protocol_whitelist", "file",
        "-i", f"file:{path}",
        "-map", "0:a:0", "-c:a", "pcm_f32le", "-f", "wav", "-",
    ]  # fmt: skip
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors)
        assert proc.stdout is not None
        try:
            header = _read_wav_header(proc.stdout)
            if header is None:
                proc.wait()
                raise _ffmpeg_error(errors, path)
            sample_rate, channels = header
            yield _Stream(sample_rate, channels, _ffmpeg_blocks(proc, path, channels, sample_rate, errors))
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            proc.stdout.close()


def _ffmpeg_blocks(
    proc: subprocess.Popen[bytes], path: Path, channels: int, sample_rate: int, errors: BinaryIO
) -> Iterator[np.ndarray]:
    assert proc.stdout is not None
    frame_bytes = 4 * channels
    block_bytes = frame_bytes * sample_rate * _BLOCK_SECONDS
    while chunk := proc.stdout.read(block_bytes):
        usable = len(chunk) - len(chunk) % frame_bytes
        # astype copies: frombuffer's view is read-only, and NaNs are zeroed
        # in place later.
        yield np.frombuffer(chunk[:usable], dtype="<f4").astype(np.float32).reshape(-1, channels)
    if proc.wait() != 0:
        raise _ffmpeg_error(errors, path)


def _read_wav_header(stream: IO[bytes]) -> tuple[int, int] | None:
    """Read up to the data chunk of ffmpeg's WAV output; return (rate, channels)."""
    riff = stream.read(12)
    if len(riff) < 12 or riff[:4] != b"RIFF" or riff[8:12] != b"WAVE":
        return None
    fmt: tuple[int, int] | None = None
    while True:
        header = stream.read(8)
        if len(header) < 8:
            return None
        (size,) = struct.unpack("<I", header[4:])
        if header[:4] == b"data":
            return fmt
        body = stream.read(size + (size & 1))
        if header[:4] == b"fmt ":
            channels, sample_rate = struct.unpack_from("<HI", body, 2)
            fmt = (sample_rate, channels)


def _ffmpeg_error(errors: BinaryIO, path: Path) -> AudioError:
    errors.seek(0)
    text = errors.read().decode("utf-8", "replace").replace(f"file:{path}", "input")
    # The last line is ffmpeg's summary; the "[demuxer @ 0x...]" prefix and
    # the storage path mean nothing to the person who uploaded the file.
    lines = [_LOG_PREFIX_RE.sub("", line).strip() for line in text.splitlines()]
    reason = next((line for line in reversed(lines) if line), "ffmpeg could not decode it")
    return AudioError("undecodable_audio", reason[:200])
