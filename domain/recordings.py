"""What a recording must be before it is queued: audio we recognise, not
truncated, holding samples, within the duration and channel limits. Checked
from the header alone, before anything is decoded — by the API on uploads and
by the workers on recordings they import from a URL or a bucket."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

import soundfile

from analysis.probe import MAX_CHANNELS, MIN_DURATION_SECONDS, probe_duration, sniff_audio_format, wav_is_truncated
from config import Settings

_CHUNK = 1 << 20
_CONTENT_TYPES = {
    "wav": "audio/wav",
    "flac": "audio/flac",
    "ogg": "audio/ogg",
    "mp3": "audio/mpeg",
    "aac": "audio/aac",
    "m4a": "audio/mp4",
    "amr": "audio/amr",
    "webm": "audio/webm",
}


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class RecordingRefused(Exception):
    """Not a recording we queue; ``code`` is stable, ``status`` the HTTP answer the API gives."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Recording:
    path: Path
    sha256: str
    size_bytes: int
    audio_format: str
    duration_seconds: float | None
    sample_rate: int | None
    channels: int | None

    @property
    def content_type(self) -> str:
        return _CONTENT_TYPES.get(self.audio_format, "application/octet-stream")


def copy_hashing(stream: Readable, out: IO[bytes], max_bytes: int) -> tuple[str, int]:
    """Copy ``stream`` to ``out``; its SHA-256 and size. Stops at ``max_bytes``."""
    digest = hashlib.sha256()
    size = 0
    for chunk in iter(lambda: stream.read(_CHUNK), b""):
        size += len(chunk)
        if size > max_bytes:
            raise RecordingRefused(413, "upload_too_large", f"recordings are limited to {max_bytes} bytes")
        digest.update(chunk)
        out.write(chunk)
    return digest.hexdigest(), size


def inspect(path: Path, sha256: str, size: int, settings: Settings) -> Recording:
    if size == 0:
        raise RecordingRefused(400, "empty_upload", "the uploaded file is empty")
    with path.open("rb") as fh:
        audio_format = sniff_audio_format(fh.read(64))
    if audio_format is None:
        raise RecordingRefused(
            415,
            "not_audio",
            "the upload is not a recognised audio format (wav, flac, ogg, mp3, m4a/aac, amr, opus, webm)",
        )
    if audio_format in ("wav", "rf64") and wav_is_truncated(path):
        raise RecordingRefused(
            400, "truncated_audio", "the WAV file is shorter than its header declares (truncated upload?)"
        )
    rate = channels = None
    try:
        info = soundfile.info(str(path))
        rate, channels = int(info.samplerate), int(info.channels)
        if info.frames == 0:
            raise RecordingRefused(400, "empty_audio", "the recording holds no samples")
    except RuntimeError:  # soundfile.LibsndfileError included
        if audio_format in ("wav", "flac"):
            raise RecordingRefused(400, "undecodable_audio", f"the {audio_format} header could not be read") from None
    duration = probe_duration(path, settings.storage.ffmpeg_exe())
    if duration is not None and duration > settings.server.max_duration_seconds:
        raise RecordingRefused(
            422,
            "recording_too_long",
            f"the recording lasts {duration:.0f} s; the limit is {settings.server.max_duration_seconds:.0f} s",
        )
    if duration is not None and duration < MIN_DURATION_SECONDS:
        raise RecordingRefused(
            422, "audio_too_short", f"the recording lasts {duration:.3f} s; at least {MIN_DURATION_SECONDS} s is needed"
        )
    if channels is not None and channels > MAX_CHANNELS:
        raise RecordingRefused(400, "too_many_channels", f"{channels} channels; at most {MAX_CHANNELS} are supported")
    return Recording(path, sha256, size, audio_format, duration, rate, channels)
