"""Fixtures for the bulk tests: the API served over real HTTP (the client and
concurrent repeats need a socket, not Flask's test client), a webhook receiver
that checks signatures, and folders of small WAV files."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import serving, voiced, wav_bytes


@dataclass
class Receiver:
    url: str
    received: list[dict] = field(default_factory=list)


@pytest.fixture
def api_server(settings, database, redis_client, store) -> Iterator[str]:
    """The API on 127.0.0.1 at a free port, threaded like gunicorn's gthread workers."""
    from api import create_app

    with serving(create_app(settings)) as base:
        yield base


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """An HTTP endpoint on loopback that records each POST's headers and body."""
    hooks = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            hooks.received.append({"headers": dict(self.headers), "body": body})
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    hooks.url = f"http://127.0.0.1:{server.server_port}/hooks/batches"
    yield hooks
    server.shutdown()
    server.server_close()


def write_calls(folder: Path, count: int, seconds: float = 0.5, start: int = 0) -> list[Path]:
    """``count`` distinct short WAV files (16 kHz mono) under ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(start, start + count):
        path = folder / f"call-{i:04d}.wav"
        path.write_bytes(wav_bytes(voiced(seconds, seed=i)))
        paths.append(path)
    return paths
