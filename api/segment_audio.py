"""A review item's audio as a WAV a reviewer can listen to: one channel (a
stereo call's customer side never carries the agent), 16 kHz 16-bit mono.
The segment comes with a little context on each side; "the whole call" is
the call around the segment, up to a cap (a reviewer's browser decodes it
whole), on the segment's channel or the other one. Always clamped to the
recording.

The recording is downloaded into a temporary folder under ``work_dir`` and cut
with ffmpeg; the folder is removed whatever happens. ffmpeg writes raw PCM and
the WAV header is written here, so its sizes are exact (ffmpeg cannot go back
and fill them in on a pipe)."""

from __future__ import annotations

import io
import re
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

from storage import ObjectMissing, ObjectStore

CONTEXT_SECONDS = 1.0
SAMPLE_RATE = 16_000
FFMPEG_TIMEOUT_SECONDS = 60.0
# ffmpeg's channel layouts stop well short of this; it only bounds the filter string.
MAX_CHANNEL = 63
_PREFIX = re.compile(r"^\[[^\]]*@ 0x[0-9a-f]+\]\s*")


class RecordingMissing(Exception):
    """The recording is no longer in object storage."""


class AudioUnavailable(Exception):
    """The recording could not be cut (ffmpeg failed, timed out or gave nothing)."""


@dataclass(frozen=True)
class Clip:
    wav: bytes
    start: float  # the second of the recording where the clip starts


def window(start: float, end: float, recording_seconds: float | None, context: float) -> tuple[float, float]:
    """(clip start, clip length): the segment plus context, clamped to the recording."""
    clip_start = max(0.0, start - context)
    clip_end = end + context
    if recording_seconds is not None and recording_seconds > 0:
        clip_end = min(clip_end, recording_seconds)
    return clip_start, max(0.0, clip_end - clip_start)


def call_window(start: float, end: float, recording_seconds: float | None, max_seconds: float) -> tuple[float, float]:
    """(clip start, clip length): the whole recording when it fits in ``max_seconds``,
    else ``max_seconds`` centred on the segment and shifted to stay inside the recording."""
    if recording_seconds is not None and 0 < recording_seconds <= max_seconds:
        return 0.0, recording_seconds
    clip_start = max(0.0, (start + end) / 2 - max_seconds / 2)
    if recording_seconds is not None and recording_seconds > 0:
        clip_start = max(0.0, min(clip_start, recording_seconds - max_seconds))
    return clip_start, max_seconds


def cut(path: Path, *, ffmpeg: str, start: float, seconds: float, channel: int, timeout: float) -> bytes:
    """One channel of ``path`` from ``start`` for ``seconds``, as a 16 kHz 16-bit mono WAV."""
    if not 0 <= channel <= MAX_CHANNEL:
        raise AudioUnavailable(f"channel {channel} is out of range")
    if seconds <= 0:
        raise AudioUnavailable("the segment lies outside the recording")
    # Only local files may be opened, so a playlist-like recording cannot make ffmpeg fetch URLs.
    command = [
        ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error",
        "-protocol_whitelist", "file",
        "-ss", f"{start:.3f}", "-t", f"{seconds:.3f}",
        "-i", f"file:{path}",
        # channelmap, not pan=mono|c0=cN: pan gives silence for a channel the file lacks.
        "-map", "0:a:0", "-af", f"channelmap=map={channel}:channel_layout=mono",
        "-ar", str(SAMPLE_RATE), "-c:a", "pcm_s16le", "-f", "s16le", "-",
    ]  # fmt: skip
    try:
        done = subprocess.run(command, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise AudioUnavailable(f"cutting the recording took longer than {timeout:g} s") from exc
    if done.returncode != 0:
        # The first line is the cause; later ones are consequences. Drop the "[demuxer @ 0x...]" prefix.
        lines = [_PREFIX.sub("", line).strip() for line in done.stderr.decode("utf-8", "replace").splitlines()]
        reason = next((line for line in lines if line), f"ffmpeg exited with status {done.returncode}")
        raise AudioUnavailable(reason[:300])
    pcm = done.stdout[: len(done.stdout) // 2 * 2]
    if not pcm:
        raise AudioUnavailable("the recording has no audio in this segment")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(pcm)
    return buffer.getvalue()


def recording_clip(
    store: ObjectStore,
    *,
    object_key: str,
    start: float,
    seconds: float,
    channel: int,
    work_dir: Path,
    ffmpeg: str,
    timeout: float = FFMPEG_TIMEOUT_SECONDS,
) -> Clip:
    work_dir.mkdir(parents=True, exist_ok=True)
    # A folder, not a file: the S3 client downloads to a ".part" file beside the target first.
    with tempfile.TemporaryDirectory(prefix="review-audio-", dir=work_dir) as tmp:
        path = Path(tmp) / "recording"
        try:
            store.download(object_key, path)
        except ObjectMissing as exc:
            raise RecordingMissing(f"the recording {object_key} is no longer in storage") from exc
        wav = cut(path, ffmpeg=ffmpeg, start=start, seconds=seconds, channel=channel, timeout=timeout)
    return Clip(wav=wav, start=start)
