"""Liveness and readiness.

Ready means two things, reported apart: the API is *accepting uploads*
(PostgreSQL and S3 answer; Redis may be down, since a committed job is
published by the sweep once it is back) and *analysis is ready* (a worker
with a loaded model sends heartbeats). ``/readyz`` is 200 only when both
hold. The checks run side by side, each bounded, so the answer comes within
``CHECK_SECONDS`` even while a service hangs."""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait

import redis
from flask import Blueprint
from sqlalchemy import text

from api.services import Services, services
from broker import HEARTBEAT_PREFIX

bp = Blueprint("health", __name__)

CHECK_SECONDS = 1.5


@bp.get("/healthz")
def healthz() -> dict:
    return {"status": "ok"}


def _workers(client: redis.Redis) -> list[dict]:
    keys = list(client.scan_iter(f"{HEARTBEAT_PREFIX}*", count=100))
    return [json.loads(v) for v in client.mget(keys) if v] if keys else []


def _checks(svc: Services) -> dict[str, Callable[[], list[dict] | None]]:
    client = redis.Redis.from_url(
        svc.settings.queue.redis_url, socket_timeout=CHECK_SECONDS, socket_connect_timeout=CHECK_SECONDS
    )

    def database() -> None:
        with svc.sessions() as session:
            session.execute(text("SELECT 1"))

    def broker() -> list[dict]:
        client.ping()
        return _workers(client)

    return {"database": database, "redis": broker, "s3": svc.store.ping}


def run_checks(svc: Services) -> tuple[dict[str, dict], list[dict]]:
    """Each check's outcome (within CHECK_SECONDS in all) and the workers' heartbeats."""
    executor = ThreadPoolExecutor(max_workers=3, thread_name_prefix="readyz")
    futures = {name: executor.submit(check) for name, check in _checks(svc).items()}
    wait(futures.values(), timeout=CHECK_SECONDS)
    # A check still running is reported as failed; its thread ends within its own timeout.
    executor.shutdown(wait=False, cancel_futures=True)
    results: dict[str, dict] = {}
    workers: list[dict] = []
    for name, future in futures.items():
        if not future.done():
            results[name] = {"ok": False, "error": f"no answer within {CHECK_SECONDS} s"}
        elif (error := future.exception()) is not None:
            results[name] = {"ok": False, "error": str(error)[:300]}
        else:
            results[name] = {"ok": True}
            if name == "redis":
                workers = future.result() or []
    return results, workers


@bp.get("/readyz")
def readyz() -> tuple[dict, int]:
    checks, workers = run_checks(services())
    accepting = checks["database"]["ok"] and checks["s3"]["ok"]
    analysis_ready = any(w.get("model_loaded") for w in workers)
    body = {
        "ready": accepting and analysis_ready,
        "accepting_uploads": accepting,
        "analysis_ready": analysis_ready,
        "checks": checks,
        "workers": {"present": bool(workers), "model_loaded": analysis_ready, "processes": workers},
    }
    return body, 200 if body["ready"] else 503
