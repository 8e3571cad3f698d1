from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator

import pytest
import redis

from tests.conftest import wait_until


def test_healthz(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}


def test_readyz_reports_services_and_a_worker_with_its_model(client, worker, model_dir):
    def ready():
        body = client.get("/readyz").get_json()
        return body if body["workers"]["model_loaded"] else None

    body = wait_until(ready, 30, "a worker heartbeat")
    assert body["ready"] is True and body["accepting_uploads"] is True and body["analysis_ready"] is True
    assert all(check["ok"] for check in body["checks"].values())
    (process,) = [p for p in body["workers"]["processes"] if p["model_loaded"]]
    assert process["model"]["id"] == str(model_dir) and process["model"]["random_weights"] is True


def test_readyz_is_503_when_a_dependency_is_down(settings, database, redis_client, store):
    from api import create_app

    broken = create_app(settings.override({"EMOQ_REDIS_URL": "redis://127.0.0.1:1/0"}))
    response = broken.test_client().get("/readyz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["checks"]["redis"]["ok"] is False and body["checks"]["database"]["ok"] is True


def test_the_api_does_not_load_the_model_stack():
    """The API only stores and publishes: torch and FunASR stay in the workers."""
    import subprocess
    import sys

    probe = "import sys; from api import create_app; print('torch' in sys.modules or 'funasr' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.fixture
def empty_redis(tmp_path) -> Iterator[str]:
    """A throwaway Redis that no worker reports to (stopped by its own pid)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    try:
        wait_until(lambda: _pings(client), 10, "throwaway redis to start")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


def test_readyz_is_not_ready_without_a_worker_with_a_loaded_model(settings, database, store, empty_redis):
    from api import create_app

    response = create_app(settings.override({"EMOQ_REDIS_URL": empty_redis})).test_client().get("/readyz")
    assert response.status_code == 503 and response.headers["Retry-After"]
    body = response.get_json()
    assert body["accepting_uploads"] is True and body["analysis_ready"] is False and body["ready"] is False
    assert all(check["ok"] for check in body["checks"].values())


def test_a_worker_process_withdraws_its_heartbeat_when_it_stops(settings, redis_client, monkeypatch):
    """Else /readyz would count a stopped worker as present for the heartbeat's lifetime."""
    from types import SimpleNamespace

    from worker import context

    monkeypatch.setattr(context, "_context", SimpleNamespace(settings=settings))
    monkeypatch.setattr(context, "_stopping", context.threading.Event())
    key = context._heartbeat_key()
    redis_client.set(key, "{}", ex=60)
    context.stop_heartbeat()
    assert redis_client.exists(key) == 0 and context._stopping.is_set()
