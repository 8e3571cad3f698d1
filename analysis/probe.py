"""What an upload is, read from its first bytes and header alone: the
container, whether a WAV stops early, and the duration. The API checks
uploads with these before anything is decoded; the decoder uses them too."""

from __future__ import annotations

import re
import struct
import subprocess
from pathlib import Path

import soundfile as sf

# Call recorders rarely exceed stereo; more channels than this is not a call.
MAX_CHANNELS = 8
# Shorter recordings can't be analysed: the model's convolutional front end
# needs 25 ms for a single frame, and a tenth of a second says nothing about emotion.
MIN_DURATION_SECONDS = 0.1
# libsndfile reads these natively; everything else goes through ffmpeg.
SOUNDFILE_FORMATS = frozenset({"wav", "rf64", "flac", "ogg", "aiff", "caf"})
_PROBE_TIMEOUT_SECONDS = 60
_DURATION_RE = re.compile(rb"Duration:\s*(\d+):(\d{2}):(\d{2}(?:\.\d+)?)")
# ISO-BMFF brands of still images, which share the `ftyp` box with audio.
_IMAGE_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"mif1", b"msf1", b"avif", b"avis")


def sniff_audio_format(head: bytes) -> str | None:
    """Name the audio container from a file's first bytes (64 are plenty)."""
    if len(head) >= 12 and head[8:12] == b"WAVE":
        if head[:4] in (b"RIFF", b"RIFX"):
            return "wav"
        if head[:4] == b"RF64":
            return "rf64"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:4] == b"OggS":
        return "opus" if head[28:36] == b"OpusHead" else "ogg"
    if head[:3] == b"ID3":
        return "mp3"
    if head[:5] == b"#!AMR":
        return "amr"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "webm" if b"webm" in head[:64] else "matroska"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "aiff"
    if head[:4] == b"caff":
        return "caf"
    if head[4:8] == b"ftyp" and len(head) >= 12 and head[8:12] not in _IMAGE_BRANDS:
        return "m4a" if head[8:11] in (b"M4A", b"M4B") else "mp4"
    if len(head) >= 3 and head[0] == 0xFF:
        return _sniff_frame_sync(head[1], head[2])
    return None


def _sniff_frame_sync(b1: int, b2: int) -> str | None:
    # ADTS: 12 sync bits and layer 00; MPEG audio: 11 sync bits, a valid
    # version and layer, and a bitrate/sample-rate pair that is not reserved.
    if b1 & 0xF6 == 0xF0:
        return "aac"
    valid_header = (
        b1 & 0xE0 == 0xE0
        and (b1 >> 3) & 0x3 != 0x1
        and (b1 >> 1) & 0x3 != 0x0
        and b2 >> 4 != 0xF
        and (b2 >> 2) & 0x3 != 0x3
    )
    return "mp3" if valid_header else None


def wav_is_truncated(path: Path) -> bool:
    """True when a RIFF/RF64 WAVE file ends before its data chunk does."""
    size = path.stat().st_size
    with path.open("rb") as f:
        riff = f.read(12)
        if len(riff) < 12 or riff[8:12] != b"WAVE" or riff[:4] not in (b"RIFF", b"RF64"):
            return False
        ds64_data_size: int | None = None
        pos = 12
        while True:
            header = f.read(8)
            if len(header) < 8:
                return True  # the upload stopped before any audio data
            chunk_id = header[:4]
            (chunk_size,) = struct.unpack("<I", header[4:])
            if chunk_id == b"ds64":
                body = f.read(16)
                if len(body) == 16:
                    (ds64_data_size,) = struct.unpack_from("<Q", body, 8)
            if chunk_id == b"data":
                if chunk_size == 0xFFFFFFFF:
                    if ds64_data_size is None:
                        return False  # streaming writers leave the size unknown
                    chunk_size = ds64_data_size
                return pos + 8 + chunk_size > size
            pos += 8 + chunk_size + (chunk_size & 1)
            f.seek(pos)


def probe_duration(path: Path, ffmpeg: str) -> float | None:
    """Duration from the file header alone, or None when it does not say."""
    with path.open("rb") as f:
        fmt = sniff_audio_format(f.read(64))
    if fmt in SOUNDFILE_FORMATS:
        try:
            info = sf.info(str(path))
        except sf.LibsndfileError:
            pass
        else:
            if info.samplerate > 0:
                return info.frames / info.samplerate
    try:
        result = subprocess.run(
            [ffmpeg, "-hide_banner", "-nostdin", "-protocol_whitelist", "file", "-i", f"file:{path}"],
            capture_output=True,
            timeout=_PROBE_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return None
    match = _DURATION_RE.search(result.stderr)
    if match is None:
        return None
    hours, minutes, seconds = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
