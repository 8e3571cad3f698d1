"""S3 smoke check for the local stack (run by `scripts/stack.sh check`).

Round trip with the MinIO SDK against EMOQ_S3_ENDPOINT using the configured
keys (make_bucket, put, get, list, remove), then checks that a wrong secret,
an unknown access key and anonymous requests are all refused.
"""

from __future__ import annotations

import io
import os
import sys
import time
import uuid

from minio import Minio
from minio.error import S3Error


def main() -> int:
    endpoint = os.environ.get("EMOQ_S3_ENDPOINT", "127.0.0.1:8333")
    endpoint = endpoint.split("://", 1)[-1].rstrip("/")
    access = os.environ.get("EMOQ_S3_ACCESS_KEY", "emoq")
    secret = os.environ.get("EMOQ_S3_SECRET_KEY", "emoq-secret-key")
    region = os.environ.get("EMOQ_S3_REGION", "us-east-1")

    def client(a: str | None, s: str | None) -> Minio:
        return Minio(endpoint, access_key=a, secret_key=s, secure=False, region=region)

    t0 = time.monotonic()
    c = client(access, secret)
    bucket = f"stack-check-{uuid.uuid4().hex[:12]}"
    c.make_bucket(bucket)
    try:
        body = os.urandom(70_000)
        c.put_object(bucket, "dir/blob.bin", io.BytesIO(body), len(body))
        resp = c.get_object(bucket, "dir/blob.bin")
        try:
            got = resp.read()
        finally:
            resp.close()
            resp.release_conn()
        assert got == body, "object read back differs"
        names = [o.object_name for o in c.list_objects(bucket, recursive=True)]
        assert names == ["dir/blob.bin"], names
        c.remove_object(bucket, "dir/blob.bin")
    finally:
        c.remove_bucket(bucket)

    refused = 0
    for label, cl in (
        ("wrong secret", client(access, secret + "-wrong")),
        ("unknown access key", client("not-" + access, secret)),
        ("anonymous", client(None, None)),
    ):
        try:
            cl.list_buckets()
        except S3Error as exc:
            refused += 1
            print(f"  {label}: refused ({exc.code})")
        else:
            print(f"  {label}: ACCEPTED", file=sys.stderr)
    if refused != 3:
        print("S3 check FAILED: bad credentials were accepted", file=sys.stderr)
        return 1
    print(f"S3 check ok at {endpoint} ({time.monotonic() - t0:.2f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
