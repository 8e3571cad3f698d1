"""The API over HTTP: JSON calls and streamed uploads, with retries of what is
worth retrying — connection errors, 429 and 502/503/504 (honouring
Retry-After), and 409 ``request_in_progress`` — with exponential backoff.
Anything else is an ``ApiError`` carrying the problem's ``code``."""

from __future__ import annotations

import io
import json
import random
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import urllib3

USER_AGENT = "emoq-client/1"
_RETRY_STATUSES = (429, 502, 503, 504)
_MAX_RETRY_AFTER = 300.0


class ApiError(Exception):
    """The API refused, or could not be reached (``status`` 0)."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class Upload:
    """A file to send as multipart: its fields and where its bytes come from."""

    path: Path
    filename: str
    fields: tuple[tuple[str, str], ...] = ()


class _MultipartBody(io.RawIOBase):
    """A multipart/form-data body read straight from the file, never held in memory."""

    def __init__(self, upload: Upload, boundary: str, on_bytes: Callable[[int], None]) -> None:
        head = b"".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
            for name, value in upload.fields
        )
        filename = upload.filename.replace('"', "%22")
        head += (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        tail = f"\r\n--{boundary}--\r\n".encode()
        self.length = len(head) + upload.path.stat().st_size + len(tail)
        self._file = upload.path.open("rb")
        self._parts: Iterator[io.BufferedIOBase | io.BytesIO] = iter([io.BytesIO(head), self._file, io.BytesIO(tail)])
        self._current = next(self._parts)
        self._on_bytes = on_bytes

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while True:
            data = self._current.read(len(buffer))
            if data:
                buffer[: len(data)] = data
                if self._current is self._file:  # progress counts the file's bytes, not the framing
                    self._on_bytes(len(data))
                return len(data)
            self._current.close()
            following = next(self._parts, None)
            if following is None:
                return 0
            self._current = following

    def close(self) -> None:
        self._current.close()
        for part in self._parts:
            part.close()
        super().close()


class Api:
    def __init__(self, url: str, key: str, *, pool_size: int = 8, attempts: int = 8, timeout: float = 300.0) -> None:
        self.url = url.rstrip("/")
        self.attempts = attempts
        self._headers = {"Authorization": f"Bearer {key}", "User-Agent": USER_AGENT}
        self._pool = urllib3.PoolManager(
            maxsize=pool_size, block=True, retries=False, timeout=urllib3.Timeout(connect=10.0, read=timeout)
        )

    def _url(self, path: str, query: dict[str, Any] | None) -> str:
        query = {k: v for k, v in (query or {}).items() if v is not None}
        return self.url + path + (f"?{urlencode(query)}" if query else "")

    def _send(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, Any] | None = None,
        body: Callable[[], tuple[Any, dict[str, str]]] | None = None,
        headers: dict[str, str] | None = None,
        stream: bool = False,
    ) -> urllib3.BaseHTTPResponse:
        """One call with retries; ``body`` makes a fresh body (and its headers) for each attempt."""
        url = self._url(path, query)
        for attempt in range(self.attempts):
            payload, body_headers = body() if body else (None, {})
            try:
                response = self._pool.request(
                    method,
                    url,
                    body=payload,
                    headers={**self._headers, **(headers or {}), **body_headers},
                    preload_content=not stream,
                    redirect=False,
                )
            except urllib3.exceptions.HTTPError as exc:
                if attempt + 1 >= self.attempts:
                    raise ApiError(0, "unreachable", f"{self.url}: {exc}") from None
                time.sleep(_backoff(attempt))
                continue
            finally:
                if isinstance(payload, io.IOBase):
                    payload.close()
            if response.status < 400:
                return response
            problem = _problem(response)
            retry = response.status in _RETRY_STATUSES or problem.code == "request_in_progress"
            if not retry or attempt + 1 >= self.attempts:
                raise problem
            time.sleep(_retry_after(response) or _backoff(attempt))
        raise ApiError(0, "unreachable", f"{self.url}: no attempt made")

    def json(self, method: str, path: str, *, query: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        data = kwargs.pop("data", None)
        encoded = None if data is None else json.dumps(data).encode()

        def body() -> tuple[Any, dict[str, str]]:
            return encoded, {"Content-Type": "application/json"}

        response = self._send(method, path, query=query, body=body if encoded is not None else None, **kwargs)
        return json.loads(response.data or b"null")

    def upload(
        self, path: str, upload: Upload, *, idempotency_key: str, on_bytes: Callable[[int], None]
    ) -> dict[str, Any]:
        """POST one file as multipart; ``on_bytes`` counts the file's bytes sent (taken back before a retry)."""
        sent = 0

        def count(n: int) -> None:
            nonlocal sent
            sent += n
            on_bytes(n)

        def body() -> tuple[Any, dict[str, str]]:
            nonlocal sent
            if sent:
                on_bytes(-sent)
                sent = 0
            boundary = uuid.uuid4().hex
            stream = _MultipartBody(upload, boundary, count)
            return stream, {
                "Content-Type": f"multipart/form-data; boundary={boundary}",
                "Content-Length": str(stream.length),
            }

        response = self._send("POST", path, body=body, headers={"Idempotency-Key": idempotency_key})
        return json.loads(response.data)

    def download(self, path: str, query: dict[str, Any], out: Any) -> int:
        response = self._send("GET", path, query=query, stream=True)
        written = 0
        try:
            for chunk in response.stream(1 << 16):
                out.write(chunk)
                written += len(chunk)
        finally:
            response.release_conn()
        return written


def batch_path(batch_id: str, *rest: str) -> str:
    return "/".join([f"/v1/batches/{quote(batch_id)}", *rest])


def _backoff(attempt: int) -> float:
    return min(30.0, 0.5 * 2**attempt) * random.uniform(0.5, 1.0)


def _retry_after(response: urllib3.BaseHTTPResponse) -> float | None:
    try:
        return min(_MAX_RETRY_AFTER, max(0.0, float(response.headers.get("Retry-After", ""))))
    except ValueError:
        return None


def _problem(response: urllib3.BaseHTTPResponse) -> ApiError:
    try:
        body = json.loads(response.data)
        return ApiError(response.status, str(body.get("code", "http_error")), str(body.get("detail", "")))
    except (ValueError, AttributeError):
        return ApiError(response.status, "http_error", f"HTTP {response.status}")
