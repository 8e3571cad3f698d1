"""Celery tasks: thin adapters from messages to ``worker.jobs`` and ``worker.sweep``."""

from __future__ import annotations

import logging
import uuid

from billiard.exceptions import SoftTimeLimitExceeded
from celery import Task, shared_task
from celery.signals import worker_process_init
from minio.error import S3Error
from redis.exceptions import RedisError
from sqlalchemy.exc import OperationalError
from urllib3.exceptions import HTTPError

from config import load_settings
from worker.celery_app import ANALYSE_TASK, SWEEP_TASK
from worker.context import get_context
from worker.jobs import Delivery, fail_job, release_for_retry, run_job
from worker.sweep import sweep_stale_jobs

log = logging.getLogger(__name__)

TRANSIENT = (S3Error, HTTPError, OperationalError, RedisError, ConnectionError, TimeoutError)


@worker_process_init.connect
def _load_model_at_start(**_kwargs) -> None:
    # Load in each pool process before its first task, so /readyz sees it early.
    get_context(load_settings())


def publisher(app):
    def publish(job_id: uuid.UUID, task_id: uuid.UUID) -> None:
        app.send_task(ANALYSE_TASK, args=[str(job_id)], task_id=str(task_id))

    return publish


@shared_task(bind=True, name=ANALYSE_TASK, acks_late=True, reject_on_worker_lost=True)
def analyse_recording(self: Task, job_id: str) -> None:
    settings = load_settings()
    ctx = get_context(settings)
    delivery = Delivery(uuid.UUID(job_id), uuid.UUID(self.request.id))
    try:
        run_job(ctx, delivery)
    except SoftTimeLimitExceeded:
        fail_job(ctx, delivery.job_id, "time_limit", f"analysis took longer than {settings.task_time_limit_seconds} s")
    except TRANSIENT as exc:
        if self.request.retries >= settings.retry_max:
            fail_job(ctx, delivery.job_id, "transient_failure", f"gave up after {settings.retry_max} retries: {exc}")
            return
        countdown = min(settings.retry_backoff_max_seconds, 2 ** (self.request.retries + 1))
        log.warning("job %s: transient failure, retry in %d s: %s", job_id, countdown, exc)
        try:
            release_for_retry(ctx, delivery.job_id, str(exc))
        except TRANSIENT:
            pass  # the database is what failed; the retry's delivery will count it as lost
        raise self.retry(exc=exc, countdown=countdown, max_retries=settings.retry_max)


@shared_task(bind=True, name=SWEEP_TASK)
def sweep(self: Task) -> dict[str, int]:
    settings = load_settings()
    ctx = get_context(settings)
    return sweep_stale_jobs(ctx.sessions, settings, publisher(self.app))
