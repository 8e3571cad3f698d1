"""Processes a test starts for itself — its own Redis, and for the fault
suite (tests/faults) a whole stack — on spare loopback ports, never the
developer's services. Each runs in a session of its own and is stopped (or
killed, for a fault) through its own process group, by the id it was started
with; nothing else on the machine is touched."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tests.conftest import wait_until

ROOT = Path(__file__).resolve().parent.parent
# Ports no default service here uses (PostgreSQL 5432, Redis 6379, SeaweedFS
# 8333/8334/8888/9333 and their +10000 gRPC twins, the API's 7860).
_PORT_RANGE = (20000, 30000)
GRPC_OFFSET = 10000  # SeaweedFS's gRPC listeners sit at port + 10000
_handed_out: set[int] = set()


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def spare_port() -> int:
    """A free loopback port whose gRPC twin (port + 10000) is free too."""
    for _ in range(500):
        port = random.randrange(*_PORT_RANGE)
        if port not in _handed_out and _free(port) and _free(port + GRPC_OFFSET):
            _handed_out.add(port)
            return port
    raise RuntimeError("no spare loopback port")


@dataclass
class Process:
    """One long-running process of ours, in its own session, logging to a file."""

    name: str
    argv: list[str]
    log: Path
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    proc: subprocess.Popen | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv, cwd=ROOT, env=dict(self.env), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} not started"
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL to the whole group: the process and whatever it forked."""
        self._signal_group(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(30)

    def stop(self, timeout: float = 30) -> None:
        if self.proc is None:
            return
        self._signal_group(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def _signal_group(self, sig: signal.Signals) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):  # already gone
            os.killpg(self.proc.pid, sig)  # the group we created: start_new_session=True

    def log_size(self) -> int:
        return self.log.stat().st_size if self.log.exists() else 0

    def log_since(self, offset: int) -> str:
        with self.log.open("rb") as fh:
            fh.seek(offset)
            return fh.read().decode(errors="replace")

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def wait_ready(self, ready, timeout: float) -> None:
        def check() -> bool:
            if not self.running():
                raise RuntimeError(f"{self.name} exited:\n{self.tail()}")
            return bool(ready())

        try:
            wait_until(check, timeout, f"{self.name} ready", interval=0.2)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.name} log:\n{self.tail()}") from None


class RedisServer:
    """redis-server with an append-only file (every write synced), so a kill
    keeps the queue; ``wipe`` removes the data for an empty restart."""

    def __init__(self, root: Path, port: int | None = None, logs: Path | None = None) -> None:
        self.port = port or spare_port()
        self.dir = root / "redis"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.process = Process(
            "redis",
            [
                shutil.which("redis-server") or "redis-server",
                "--bind", "127.0.0.1",
                "--port", str(self.port),
                "--save", "",
                "--appendonly", "yes",
                "--appendfsync", "always",
                "--dir", str(self.dir),
                "--daemonize", "no",
                "--logfile", "",
            ],
            (logs or root) / "redis.log",
        )  # fmt: skip

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=5, socket_connect_timeout=2)

    def start(self) -> None:
        self.process.start()

        def pong() -> bool:
            try:
                with self.client() as client:
                    return bool(client.ping())
            except redis.RedisError:
                return False

        self.process.wait_ready(pong, 30)

    def kill(self) -> None:
        self.process.kill()

    def wipe(self) -> None:
        """Forget everything, as a Redis without persistence does on restart."""
        for path in self.dir.iterdir():
            shutil.rmtree(path) if path.is_dir() else path.unlink()

    def stop(self) -> None:
        self.process.stop()
