"""Recordings a batch imported by URL or from a bucket. The worker fetches
each once — streamed, size-limited, through the private-address guard at every
redirect (``worker.outbound``) — checks it as the API checks uploads, and stores
it under the job's own key; from then on the job is like any upload (and erasing
it erases our copy only)."""

from __future__ import annotations

from typing import IO
from urllib.parse import urljoin

import urllib3

from config import Settings
from domain.network import is_http_url
from domain.recordings import copy_hashing
from storage import ObjectMissing, ObjectStore
from worker.outbound import AddressRefused, send

MAX_REDIRECTS = 5
_REDIRECTS = (301, 302, 303, 307, 308)


class ImportRefused(Exception):
    """A permanent failure to fetch: the job fails with this code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class FetchUnavailable(ConnectionError):
    """Worth retrying: the server answered 429 or 5xx."""


def fetch(source: str, out: IO[bytes], store: ObjectStore, settings: Settings) -> tuple[str, int]:
    """Copy the source (http(s) URL or ``s3://bucket/key``) into ``out``; its SHA-256 and size."""
    limit = settings.server.max_upload_bytes
    if source.startswith("s3://"):
        bucket, _, key = source[len("s3://") :].partition("/")
        try:
            with store.open_object(bucket, key) as stream:
                return copy_hashing(stream, out, limit)
        except ObjectMissing:
            raise ImportRefused("object_missing", f"{source} is no longer in its bucket") from None
    return _download(source, out, limit, settings)


def _download(url: str, out: IO[bytes], limit: int, settings: Settings) -> tuple[str, int]:
    imports = settings.batches
    timeout = urllib3.Timeout(connect=imports.import_timeout_seconds, read=imports.import_timeout_seconds)
    for _ in range(MAX_REDIRECTS + 1):
        try:
            response = send(
                "GET", url, allow_private=imports.import_allow_private, timeout=timeout, preload_content=False
            )
        except AddressRefused as exc:
            raise ImportRefused("url_private", f"{exc.host} resolves to the private address {exc.address}") from None
        try:
            if response.status in _REDIRECTS:
                target = urljoin(url, response.headers.get("Location", ""))
                if not is_http_url(target):
                    raise ImportRefused("download_failed", f"{url} redirects to {target!r}, not an http(s) URL")
                url = target
                continue
            if response.status == 429 or response.status >= 500:
                raise FetchUnavailable(f"HTTP {response.status} from {url}")
            if response.status != 200:
                raise ImportRefused("download_failed", f"HTTP {response.status} from {url}")
            declared = int(response.headers.get("Content-Length") or 0)
            if declared > limit:
                raise ImportRefused("upload_too_large", f"{url} holds {declared} bytes; the limit is {limit}")
            return copy_hashing(response, out, limit)
        finally:
            response.close()  # an unread body is dropped with its connection
    raise ImportRefused("too_many_redirects", f"more than {MAX_REDIRECTS} redirects from the URL")
