"""The recordings on disk: folders walked for audio files, each named by its
path below the folder it was found in (its external id), hashed, and given an
idempotency key from the batch, its content and its name — so a re-run sends
the same keys and the API makes no second job."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

AUDIO_SUFFIXES = frozenset(
    {".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".mp4", ".aac", ".amr", ".webm", ".caf"}
    | {".aif", ".aiff", ".mka"}
)
_CHUNK = 1 << 20


@dataclass(frozen=True)
class LocalFile:
    path: Path
    external_id: str
    size: int


def find_audio(paths: list[Path]) -> list[LocalFile]:
    """Files named on the command line are taken as they are; folders are walked
    (hidden entries skipped) for audio by suffix. Sorted, without repeats."""
    found: dict[Path, LocalFile] = {}
    for given in paths:
        if given.is_dir():
            for root, dirs, names in os.walk(given):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(names):
                    path = Path(root) / name
                    if not name.startswith(".") and path.suffix.lower() in AUDIO_SUFFIXES and path.is_file():
                        external_id = path.relative_to(given).as_posix()
                        found.setdefault(path.resolve(), LocalFile(path, external_id, path.stat().st_size))
        elif given.is_file():
            found.setdefault(given.resolve(), LocalFile(given, given.name, given.stat().st_size))
        else:
            raise FileNotFoundError(f"no such file or folder: {given}")
    return sorted(found.values(), key=lambda f: (f.external_id, str(f.path)))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def idempotency_key(batch_id: str, sha256: str, external_id: str) -> str:
    return "emoq-file-" + hashlib.sha256(f"{batch_id}\n{sha256}\n{external_id}".encode()).hexdigest()


def batch_key(name: str) -> str:
    return "emoq-batch-" + hashlib.sha256(name.encode()).hexdigest()
