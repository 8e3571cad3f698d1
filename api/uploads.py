"""Receive an upload: spool it to a temporary file while hashing, check that
it is audio we accept, then hand it to S3 under a server-generated key."""

from __future__ import annotations

import hashlib
import tempfile
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import soundfile

from analysis.probe import MAX_CHANNELS, MIN_DURATION_SECONDS, probe_duration, sniff_audio_format, wav_is_truncated
from api.errors import Problem
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


@dataclass(frozen=True)
class Upload:
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


def object_key_for(job_id: uuid.UUID) -> str:
    day = datetime.now(UTC).strftime("%Y/%m/%d")
    return f"recordings/{day}/{job_id}"


def spool(stream: IO[bytes], directory: Path, max_bytes: int) -> tuple[Path, str, int]:
    directory.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    with tempfile.NamedTemporaryFile(dir=directory, prefix="upload-", delete=False) as out:
        path = Path(out.name)
        try:
            for chunk in iter(lambda: stream.read(_CHUNK), b""):
                size += len(chunk)
                if size > max_bytes:
                    raise Problem(413, "upload_too_large", f"uploads are limited to {max_bytes} bytes")
                digest.update(chunk)
                out.write(chunk)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
    return path, digest.hexdigest(), size


def receive(stream: IO[bytes], settings: Settings) -> Upload:
    """Validate and spool an upload; the caller deletes ``Upload.path``."""
    path, sha256, size = spool(stream, settings.storage.work_dir, settings.server.max_upload_bytes)
    try:
        if size == 0:
            raise Problem(400, "empty_upload", "the uploaded file is empty")
        with path.open("rb") as fh:
            audio_format = sniff_audio_format(fh.read(64))
        if audio_format is None:
            raise Problem(
                415,
                "not_audio",
                "the upload is not a recognised audio format (wav, flac, ogg, mp3, m4a/aac, amr, opus, webm)",
            )
        if audio_format in ("wav", "rf64") and wav_is_truncated(path):
            raise Problem(
                400, "truncated_audio", "the WAV file is shorter than its header declares (truncated upload?)"
            )
        rate = channels = None
        try:
            info = soundfile.info(str(path))
            rate, channels = int(info.samplerate), int(info.channels)
            if info.frames == 0:
                raise Problem(400, "empty_audio", "the recording holds no samples")
        except RuntimeError:  # soundfile.LibsndfileError included
            if audio_format in ("wav", "flac"):
                raise Problem(400, "undecodable_audio", f"the {audio_format} header could not be read") from None
        duration = probe_duration(path, settings.storage.ffmpeg_exe())
        if duration is not None and duration > settings.server.max_duration_seconds:
            raise Problem(
                422,
                "recording_too_long",
                f"the recording lasts {duration:.0f} s; the limit is {settings.server.max_duration_seconds:.0f} s",
            )
        if duration is not None and duration < MIN_DURATION_SECONDS:
            raise Problem(
                422,
                "audio_too_short",
                f"the recording lasts {duration:.3f} s; at least {MIN_DURATION_SECONDS} s is needed",
            )
        if channels is not None and channels > MAX_CHANNELS:
            raise Problem(400, "too_many_channels", f"{channels} channels; at most {MAX_CHANNELS} are supported")
        return Upload(path, sha256, size, audio_format, duration, rate, channels)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
