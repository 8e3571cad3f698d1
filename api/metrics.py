"""``GET /metrics`` in Prometheus' text format.

Two sources: what the service's state is *now*, computed at scrape time from
PostgreSQL and Redis (jobs by status, queue depth per queue, the review
backlog by reason, workers with a loaded model) so the numbers are exact and
never summed across processes; and what the workers counted (job durations,
audio seconds, real-time factor, webhook failures), read from the files
Prometheus' multiprocess mode keeps under ``PROMETHEUS_MULTIPROC_DIR`` when the
workers share that folder with the API (``make run``; in compose each worker
also serves its own on ``EMOQ_WORKER_METRICS_PORT``). Without the variable
only the first source is shown. With ``EMOQ_METRICS_TOKEN`` set, a scrape
needs ``Authorization: Bearer <token>``."""

from __future__ import annotations

import hmac
import json
import os
from collections.abc import Iterator

import redis
from flask import Blueprint, Response, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, or_, select

from api.errors import Problem
from api.services import Services, services
from broker import HEARTBEAT_PREFIX, MAINTENANCE_QUEUE
from models import Job, JobStatus, ReviewItem, ReviewStatus

bp = Blueprint("metrics", __name__)

TIMEOUT_SECONDS = 1.5
# Kombu's Redis transport keeps a queue's messages of priority > 0 in lists named
# "<queue>\x06\x16<priority>"; tasks sent without one land in "<queue>" itself.
_PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")


class StateCollector(Collector):
    def __init__(self, svc: Services) -> None:
        self.svc = svc

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("emoq_dependency_up", "Whether /metrics could read a service", labels=["dependency"])
        try:
            yield from self._database()
            up.add_metric(["database"], 1)
        except Exception:  # a scrape still answers while a service is down
            up.add_metric(["database"], 0)
        try:
            yield from self._redis()
            up.add_metric(["redis"], 1)
        except Exception:
            up.add_metric(["redis"], 0)
        yield up

    def _database(self) -> Iterator[Metric]:
        with self.svc.sessions() as session:
            by_status = dict(
                session.execute(
                    select(Job.status, func.count()).where(Job.deleted_at.is_(None)).group_by(Job.status)
                ).all()
            )
            reason = func.unnest(ReviewItem.reasons)
            backlog = session.execute(
                select(reason, func.count())
                .where(
                    or_(
                        ReviewItem.status == ReviewStatus.pending.value, ReviewItem.status == ReviewStatus.claimed.value
                    )
                )
                .group_by(reason)
            ).all()
        jobs = GaugeMetricFamily("emoq_jobs", "Jobs by status (erased jobs excluded)", labels=["status"])
        for status in JobStatus:
            jobs.add_metric([status.value], by_status.get(status.value, 0))
        yield jobs
        review = GaugeMetricFamily("emoq_review_backlog", "Unresolved review items by reason", labels=["reason"])
        for name, count in backlog:
            review.add_metric([name], count)
        yield review

    def _redis(self) -> Iterator[Metric]:
        queue = self.svc.settings.queue
        client = redis.Redis.from_url(
            queue.redis_url, socket_timeout=TIMEOUT_SECONDS, socket_connect_timeout=TIMEOUT_SECONDS
        )
        depth = GaugeMetricFamily("emoq_queue_depth", "Messages waiting in a Celery queue", labels=["queue"])
        for name in (queue.analysis_queue, MAINTENANCE_QUEUE):
            depth.add_metric([name], sum(client.llen(name + suffix) for suffix in _PRIORITY_SUFFIXES))
        keys = list(client.scan_iter(f"{HEARTBEAT_PREFIX}*", count=100))
        beats = [json.loads(v) for v in client.mget(keys) if v] if keys else []
        workers = GaugeMetricFamily(
            "emoq_workers",
            "Worker processes sending heartbeats, by whether their model is loaded",
            labels=["model_loaded"],
        )
        loaded = sum(1 for b in beats if b.get("model_loaded"))
        workers.add_metric(["true"], loaded)
        workers.add_metric(["false"], len(beats) - loaded)
        yield depth
        yield workers


def _authorised(token: str | None) -> bool:
    if token is None:
        return True
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token.encode())


@bp.get("/metrics")
def metrics() -> Response:
    svc = services()
    if not _authorised(svc.settings.observability.metrics_token):
        raise Problem(401, "unauthorized", "send 'Authorization: Bearer <EMOQ_METRICS_TOKEN>'")
    registry = CollectorRegistry()
    if directory := os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry, path=directory)
    registry.register(StateCollector(svc))
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
