"""Shared fixtures. Everything here is real: PostgreSQL (database emoq_test),
Redis (database 15, a queue of this run's own), the S3 server (bucket
emoq-test) and, for end-to-end tests, a Celery worker process running a
random-weight tiny emotion2vec model (the one stand-in: real weights can't be
downloaded here)."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import psycopg
import pytest
import redis
import soundfile as sf
from alembic import command
from alembic.config import Config
from sqlalchemy import text
from werkzeug.serving import make_server

from broker import HEARTBEAT_PREFIX
from config import Settings
from models.db import make_engine, make_session_factory, transaction
from tests.audio_fixtures import speech_like

# Fixtures of the bulk-intake tests (live API server, webhook receiver).
pytest_plugins = ["tests.batch_fixtures"]

ROOT = Path(__file__).resolve().parent.parent
TEST_DB_URL = os.environ.get("EMOQ_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/emoq_test")
TEST_REDIS_URL = os.environ.get("EMOQ_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


# Tests are marked by what their fixtures start: `make test-unit` runs the
# `unit` ones with no service at all.
_SERVICE_FIXTURES = frozenset(
    {
        "database",
        "empty_database",
        "sessions",
        "redis_client",
        "store",
        "app",
        "client",
        "keys",
        "clean_db",
        "cli_env",
        "worker",
        "fault_stack",
    }
)
_BROWSER_FIXTURES = frozenset({"browser", "page", "live_server"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        if used & _BROWSER_FIXTURES:
            item.add_marker(pytest.mark.browser)
        item.add_marker(pytest.mark.integration if used & (_SERVICE_FIXTURES | _BROWSER_FIXTURES) else pytest.mark.unit)


@contextmanager
def serving(app) -> Iterator[str]:
    """The app on 127.0.0.1 at a free port (the OS picks it), in a background thread."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="test-api-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(10)
        server.server_close()


def wait_until(predicate: Callable[[], object], timeout: float, message: str, interval: float = 0.1):
    """Poll with a deadline; returns the first truthy value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s: {message}")
        time.sleep(interval)


def wav_bytes(samples: np.ndarray, rate: int = 16000, subtype: str = "PCM_16") -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format="WAV", subtype=subtype)
    return buffer.getvalue()


def voiced(seconds: float, rate: int = 16000, seed: int = 0) -> np.ndarray:
    """Synthetic speech that Silero VAD takes for speech (no corpus ships here)."""
    return speech_like(seconds, rate, seed=seed)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    from ops.random_model import write_random_model

    return write_random_model(tmp_path_factory.mktemp("models") / "random-tiny", "tiny")


@pytest.fixture(scope="session")
def test_env(model_dir, tmp_path_factory) -> dict[str, str]:
    return {
        "EMOQ_DATABASE_URL": TEST_DB_URL,
        "EMOQ_REDIS_URL": TEST_REDIS_URL,
        "EMOQ_S3_BUCKET": "emoq-test",
        "EMOQ_QUEUE": f"emoq.test.{os.getpid()}",
        "EMOQ_MODEL": str(model_dir),
        "EMOQ_WORK_DIR": str(tmp_path_factory.mktemp("work")),
        "EMOQ_WORKER_HEARTBEAT_SECONDS": "1",
        "EMOQ_RETRY_BACKOFF_MAX_SECONDS": "1",
        # The tests' webhook receiver and URL-import server listen on loopback.
        "EMOQ_WEBHOOK_ALLOW_PRIVATE": "true",
        "EMOQ_IMPORT_ALLOW_PRIVATE": "true",
        "EMOQ_WEBHOOK_SECRET": "test-webhook-secret",
    }


@pytest.fixture(scope="session")
def settings(test_env) -> Settings:
    return Settings.from_env(test_env)


def _ensure_database(url: str) -> None:
    """A new, empty database of that name. Dropped first rather than migrated
    down: a run of another branch may have left it at a revision this one
    doesn't know (test_migrations covers the downgrade path)."""
    name = url.rsplit("/", 1)[1]
    admin = url.replace("postgresql+psycopg://", "postgresql://").rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def alembic_config(url: str) -> Config:
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    config.attributes["database_url"] = url
    return config


@pytest.fixture(scope="session")
def database(settings) -> str:
    _ensure_database(settings.storage.database_url)
    command.upgrade(alembic_config(settings.storage.database_url), "head")
    return settings.storage.database_url


@pytest.fixture(scope="session")
def sessions(database):
    return make_session_factory(make_engine(database))


@pytest.fixture(scope="session")
def redis_client(settings) -> redis.Redis:
    client = redis.Redis.from_url(settings.queue.redis_url)
    client.flushdb()
    return client


@pytest.fixture(scope="session")
def store(settings):
    from storage import ObjectStore

    s = ObjectStore(settings.storage)
    s.ensure_bucket()
    return s


@pytest.fixture(scope="session")
def worker_ctx(settings, sessions, store):
    """A worker's context with the test model loaded, once for the session (tests only read it)."""
    from worker.context import WorkerContext

    ctx = WorkerContext(settings, sessions, store)
    ctx.load_model()
    assert ctx.engine is not None, ctx.model_error
    return ctx


@pytest.fixture
def clean_db(sessions) -> None:
    with transaction(sessions) as session:
        # Tables in the order the worker locks them (jobs, then results, then
        # review items): a job still finishing from an earlier test then makes
        # this wait instead of deadlocking with it.
        session.execute(text("TRUNCATE jobs, results, review_items, calibrations, batches, idempotency_keys CASCADE"))


@pytest.fixture
def app(settings, database, redis_client, store):
    from api import create_app

    return create_app(settings)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="session")
def _key_values(sessions) -> dict[str, str]:
    from domain.api_keys import create_key
    from models import Role

    values = {}
    with transaction(sessions) as session:
        session.execute(text("TRUNCATE jobs, results, review_items, calibrations, api_keys CASCADE"))
        for name, role in [
            ("admin", Role.admin),
            ("submitter", Role.submitter),
            ("submitter2", Role.submitter),
            ("reviewer", Role.reviewer),
            ("reviewer2", Role.reviewer),
        ]:
            _, values[name] = create_key(session, name, role)
    return values


@pytest.fixture
def keys(_key_values, clean_db) -> dict[str, dict[str, str]]:
    """A bearer header per role (and a second submitter and reviewer), on an emptied database."""
    return {name: {"Authorization": f"Bearer {value}"} for name, value in _key_values.items()}


@pytest.fixture
def cli_env(test_env, database, store, monkeypatch):
    """EMOQ_* variables as an operator's shell would have them, for ``emoq`` commands."""
    from config import load_settings

    for name, value in test_env.items():
        monkeypatch.setenv(name, value)
    load_settings.cache_clear()
    yield
    load_settings.cache_clear()


def _worker_status(client: redis.Redis) -> list[dict]:
    keys = list(client.scan_iter(f"{HEARTBEAT_PREFIX}*"))
    return [json.loads(v) for v in client.mget(keys) if v] if keys else []


@pytest.fixture(scope="session")
def metrics_dir(tmp_path_factory) -> Path:
    """PROMETHEUS_MULTIPROC_DIR of the worker, which the API's /metrics reads."""
    return tmp_path_factory.mktemp("metrics")


@pytest.fixture(scope="session")
def worker(test_env, database, redis_client, store, metrics_dir, tmp_path_factory) -> Iterator[subprocess.Popen]:
    """A real Celery worker process (prefork, one child) on this run's queue; its log is ``worker.log_path``."""
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    env = {**os.environ, **test_env, "PYTHONUNBUFFERED": "1", "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    with log.open("w") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "worker.celery_app",
                "worker",
                "-Q",
                f"{test_env['EMOQ_QUEUE']},emoq.maintenance",
                "--concurrency",
                "1",
                "--loglevel",
                "INFO",
                "-n",
                f"test-{uuid.uuid4().hex[:6]}@%h",
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    proc.log_path = log  # type: ignore[attr-defined]
    try:
        wait_until(
            lambda: proc.poll() is not None or any(w["model_loaded"] for w in _worker_status(redis_client)),
            90,
            "worker model load",
        )
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited: {log.read_text()[-3000:]}")
        yield proc
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        if os.environ.get("EMOQ_TEST_SHOW_WORKER_LOG"):
            print(log.read_text())


def submit(client, headers, data: bytes, filename: str = "call.wav", **fields):
    form = {"file": (io.BytesIO(data), filename), **fields}
    return client.post("/v1/jobs", data=form, headers=headers, content_type="multipart/form-data")


def wait_for_job(client, headers, job_id: str, timeout: float = 90) -> dict:
    def finished():
        body = client.get(f"/v1/jobs/{job_id}", headers=headers).get_json()
        return body if body["status"] in ("succeeded", "failed") else None

    return wait_until(finished, timeout, f"job {job_id} to finish", interval=0.2)
