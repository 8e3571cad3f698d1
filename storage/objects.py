"""The one place that talks to S3 (MinIO in production, SeaweedFS's S3 gateway locally)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import urllib3
from minio import Minio
from minio.deleteobjects import DeleteObject
from minio.error import S3Error, ServerError

from config.settings import StorageSettings

_MISSING = ("NoSuchKey", "NoSuchObject")


class ObjectMissing(KeyError):
    """The key is not in the bucket (deleted, or never written)."""


@dataclass(frozen=True)
class ListedObject:
    key: str
    size: int


class RemovalRefused(Exception):
    """S3 answered a bulk delete with an error for one of the keys."""


def unavailable(exc: BaseException) -> bool:
    """True when S3 could not be reached or failed on its side (an outage, not a refusal)."""
    if isinstance(exc, urllib3.exceptions.HTTPError | ServerError):
        return True  # refused, timed out, reset; or a 5xx without an S3 error body
    return isinstance(exc, S3Error) and exc.response is not None and exc.response.status >= 500


def _http_client(settings: StorageSettings) -> urllib3.PoolManager:
    # The SDK's default pool retries a refused connection five times with backoff
    # (6-10 s), holding an API worker while S3 is down. Here a connection is tried
    # once; only a dropped keep-alive connection or a 5xx answer is tried again.
    return urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=settings.s3_connect_timeout_seconds, read=settings.s3_read_timeout_seconds),
        maxsize=10,
        retries=urllib3.Retry(total=2, connect=0, read=1, backoff_factor=0.1, status_forcelist=(500, 502, 503, 504)),
    )


class ObjectStore:
    def __init__(self, settings: StorageSettings) -> None:
        self.bucket = settings.s3_bucket
        self.client = Minio(
            settings.s3_endpoint,
            access_key=settings.s3_access_key,
            secret_key=settings.s3_secret_key,
            secure=settings.s3_secure,
            region=settings.s3_region,
            http_client=_http_client(settings),
        )

    def ensure_bucket(self) -> None:
        if not self.client.bucket_exists(self.bucket):
            try:
                self.client.make_bucket(self.bucket)
            except S3Error as exc:  # another process created it first
                if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise

    def ping(self) -> None:
        self.client.bucket_exists(self.bucket)

    def put_stream(self, key: str, stream: BinaryIO, length: int, content_type: str) -> None:
        self.client.put_object(self.bucket, key, stream, length, content_type=content_type)

    def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        self.put_stream(key, io.BytesIO(data), len(data), content_type)

    def get_bytes(self, key: str) -> bytes:
        try:
            response = self.client.get_object(self.bucket, key)
        except S3Error as exc:
            raise (ObjectMissing(key) if exc.code in _MISSING else exc) from None
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()

    def download(self, key: str, path: Path) -> None:
        try:
            self.client.fget_object(self.bucket, key, str(path))
        except S3Error as exc:
            raise (ObjectMissing(key) if exc.code in _MISSING else exc) from None

    def remove(self, key: str) -> None:
        self.client.remove_object(self.bucket, key)

    def keys(self, prefix: str) -> list[str]:
        return [o.key for o in self.list_objects(self.bucket, prefix)]

    def remove_many(self, keys: list[str]) -> None:
        """Remove keys (a missing one is no error); raises when S3 refuses one."""
        for error in self.client.remove_objects(self.bucket, (DeleteObject(k) for k in keys)):
            raise RemovalRefused(f"S3 refused to remove {error.name}: {error.code} {error.message}")

    # Other buckets: recordings a batch imports from where they already are,
    # read with the service's own credentials.

    def list_objects(self, bucket: str, prefix: str) -> Iterator[ListedObject]:
        for obj in self.client.list_objects(bucket, prefix=prefix, recursive=True):
            if not obj.is_dir and obj.object_name is not None:
                yield ListedObject(obj.object_name, int(obj.size or 0))

    @contextmanager
    def open_object(self, bucket: str, key: str) -> Iterator[BinaryIO]:
        """A readable stream of any bucket's object; ObjectMissing if it is gone."""
        try:
            response = self.client.get_object(bucket, key)
        except S3Error as exc:
            raise (ObjectMissing(key) if exc.code in _MISSING else exc) from None
        try:
            yield response  # type: ignore[misc]
        finally:
            response.close()
            response.release_conn()
