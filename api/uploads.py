"""Receive an upload: spool it to a temporary file while hashing, check that
it is audio we accept (``domain.recordings``), then hand it to S3 under a
server-generated key."""

from __future__ import annotations

import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from api.errors import Problem
from config import Settings
from domain.recordings import Recording, RecordingRefused, copy_hashing, inspect


def object_key_for(job_id: uuid.UUID) -> str:
    day = datetime.now(UTC).strftime("%Y/%m/%d")
    return f"recordings/{day}/{job_id}"


def spool(stream: IO[bytes], directory: Path, max_bytes: int) -> tuple[Path, str, int]:
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=directory, prefix="upload-", delete=False) as out:
        path = Path(out.name)
        try:
            sha256, size = copy_hashing(stream, out, max_bytes)
        except RecordingRefused as exc:
            path.unlink(missing_ok=True)
            raise Problem(exc.status, exc.code, exc.message) from None
        except BaseException:
            path.unlink(missing_ok=True)
            raise
    return path, sha256, size


def receive(stream: IO[bytes], settings: Settings) -> Recording:
    """Validate and spool an upload; the caller deletes ``Recording.path``."""
    path, sha256, size = spool(stream, settings.storage.work_dir, settings.server.max_upload_bytes)
    try:
        return inspect(path, sha256, size, settings)
    except RecordingRefused as exc:
        path.unlink(missing_ok=True)
        raise Problem(exc.status, exc.code, exc.message) from None
    except BaseException:
        path.unlink(missing_ok=True)
        raise
