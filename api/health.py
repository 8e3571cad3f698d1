"""Liveness and readiness."""

from __future__ import annotations

import json

import redis
from flask import Blueprint
from sqlalchemy import text

from api.services import services
from broker import HEARTBEAT_PREFIX

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> dict:
    return {"status": "ok"}


def _check(fn) -> dict:
    try:
        fn()
        return {"ok": True}
    except Exception as exc:  # readiness reports any failure, whatever its kind
        return {"ok": False, "error": str(exc)[:300]}


def _workers(client: redis.Redis) -> list[dict]:
    keys = list(client.scan_iter(f"{HEARTBEAT_PREFIX}*", count=100))
    return [json.loads(v) for v in client.mget(keys) if v] if keys else []


@bp.get("/readyz")
def readyz() -> tuple[dict, int]:
    svc = services()
    client = redis.Redis.from_url(svc.settings.queue.redis_url, socket_timeout=2, socket_connect_timeout=2)

    def database() -> None:
        with svc.sessions() as session:
            session.execute(text("SELECT 1"))

    checks = {"database": _check(database), "redis": _check(client.ping), "s3": _check(svc.store.ping)}
    workers = _workers(client) if checks["redis"]["ok"] else []
    ready = all(c["ok"] for c in checks.values())
    body = {
        "ready": ready,
        "checks": checks,
        "workers": {
            "present": bool(workers),
            "model_loaded": any(w.get("model_loaded") for w in workers),
            "processes": workers,
        },
    }
    return body, 200 if ready else 503
