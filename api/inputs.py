"""What the API accepts as text, forms, URLs and headers. Hostile input is
refused here with a code naming what was wrong, before it reaches the
database (which refuses NUL bytes with an error easily taken for an outage)
or a parser that would give up silently."""

from __future__ import annotations

import re
from typing import IO, Any

from flask import Flask, Request, request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.formparser import FormDataParser

from api.errors import Problem

# C0 and C1 control characters, DEL, lone surrogates (from JSON "\udc80") and
# U+FFFD, which is what a non-UTF-8 byte in a form field decodes to.
_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufffd]")
_FORBIDDEN_MULTILINE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffd]")

# The app answers these itself, as problem+json; gunicorn.conf.py sets gunicorn's
# own (plain-text) limits above them so that requests reach the app first.
MAX_URL_BYTES = 4096
MAX_HEADER_BYTES = 8192
MAX_HEADERS = 100
MAX_FORM_PARTS = 100
# Werkzeug applies this to its read buffer too (64 KiB chunks), so it must stay well above that.
MAX_FORM_FIELD_BYTES = 500_000


def clean_text(name: str, value: Any, max_length: int, *, multiline: bool = False) -> str:
    """``value`` as text fit to store, or a 400 ``invalid_<name>``."""
    if not isinstance(value, str):
        raise Problem(400, f"invalid_{name}", f"{name} must be a string")
    if len(value) > max_length:
        raise Problem(400, f"invalid_{name}", f"{name} is limited to {max_length} characters")
    if (_FORBIDDEN_MULTILINE if multiline else _FORBIDDEN).search(value):
        raise Problem(400, f"invalid_{name}", f"{name} must be valid UTF-8 text without control characters")
    return value


def optional_text(name: str, value: Any, max_length: int) -> str | None:
    return None if value is None or value == "" else clean_text(name, value, max_length)


class _CountingStream:
    """Counts multipart boundaries as the parser reads, so that a refusal can
    say whether there were too many fields or one field was too large."""

    def __init__(self, stream: IO[bytes], boundary: bytes) -> None:
        self._stream = stream
        self._marker = b"--" + boundary
        self._tail = b""
        self.parts = -1  # the closing boundary is not a part

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        window = self._tail + data
        self.parts += window.count(self._marker) - self._tail.count(self._marker)
        self._tail = window[-(len(self._marker) - 1) :] if len(self._marker) > 1 else b""
        return data


class _FormParser(FormDataParser):
    def _parse_multipart(
        self, stream: IO[bytes], mimetype: str, content_length: int | None, options: dict[str, str]
    ) -> Any:
        counting = _CountingStream(stream, options.get("boundary", "").encode("latin-1"))
        try:
            return super()._parse_multipart(counting, mimetype, content_length, options)  # type: ignore[arg-type]
        except RequestEntityTooLarge:
            if self.max_form_parts is not None and counting.parts > self.max_form_parts:
                raise Problem(
                    413, "too_many_form_fields", f"a form may have at most {self.max_form_parts} fields"
                ) from None
            if content_length is None or self.max_content_length is None or content_length <= self.max_content_length:
                raise Problem(
                    413,
                    "form_field_too_large",
                    f"a form field other than the file is limited to {MAX_FORM_FIELD_BYTES} bytes",
                ) from None
            raise
        except UnicodeDecodeError:
            # Werkzeug would drop the whole form silently (then: "file missing").
            raise Problem(400, "invalid_filename", "a form part's name or filename is not valid UTF-8") from None
        except ValueError as exc:
            raise Problem(400, "invalid_multipart", f"the multipart body could not be read: {exc}") from None


class ApiRequest(Request):
    form_data_parser_class = _FormParser


def _refuse_oversized_request() -> None:
    environ = request.environ
    url_bytes = len(environ.get("PATH_INFO", "")) + len(environ.get("QUERY_STRING", ""))
    if url_bytes > MAX_URL_BYTES:
        raise Problem(414, "uri_too_long", f"the URL is limited to {MAX_URL_BYTES} bytes")
    headers = list(request.headers.items())
    if len(headers) > MAX_HEADERS:
        raise Problem(431, "too_many_headers", f"a request may carry at most {MAX_HEADERS} headers")
    for name, value in headers:
        if len(name) + len(value) > MAX_HEADER_BYTES:
            raise Problem(431, "header_too_large", f"the {name[:64]} header is over {MAX_HEADER_BYTES} bytes")


def install(app: Flask) -> None:
    app.request_class = ApiRequest
    app.config["MAX_FORM_PARTS"] = MAX_FORM_PARTS
    app.config["MAX_FORM_MEMORY_SIZE"] = MAX_FORM_FIELD_BYTES
    app.before_request(_refuse_oversized_request)
