"""The one place that talks to S3 (MinIO in production, SeaweedFS's S3 gateway locally)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from minio import Minio
from minio.error import S3Error

from config.settings import StorageSettings

_MISSING = ("NoSuchKey", "NoSuchObject")


class ObjectMissing(KeyError):
    """The key is not in the bucket (deleted, or never written)."""


@dataclass(frozen=True)
class ListedObject:
    key: str
    size: int


class ObjectStore:
    def __init__(self, settings: StorageSettings) -> None:
        self.bucket = settings.s3_bucket
        self.client = Minio(
            settings.s3_endpoint,
            access_key=settings.s3_access_key,
            secret_key=settings.s3_secret_key,
            secure=settings.s3_secure,
            region=settings.s3_region,
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
