"""Celery tasks: thin adapters from messages to ``worker.jobs`` and ``worker.sweep``."""

from __future__ import annotations

import contextlib
import logging
import uuid

import redis
from billiard.exceptions import SoftTimeLimitExceeded
from celery import Task, shared_task
from celery.signals import worker_process_init
from minio.error import S3Error
from redis.exceptions import RedisError
from sqlalchemy.exc import OperationalError
from urllib3.exceptions import HTTPError

from broker import ANALYSE_TASK, NOTIFY_TASK, SWEEP_TASK, Publisher
from config import load_settings
from config.settings import QueueSettings
from worker.context import WorkerContext, get_context
from worker.jobs import Delivery, fail_job, release_for_retry, run_job
from worker.sweep import sweep_stale_jobs
from worker.webhooks import WebhookFailed, WebhookRefused, deliver, pending_callback

log = logging.getLogger(__name__)

TRANSIENT = (S3Error, HTTPError, OperationalError, RedisError, ConnectionError, TimeoutError)


@worker_process_init.connect
def _load_model_at_start(**_kwargs) -> None:
    # Load in each pool process before its first task, so /readyz sees it early.
    get_context(load_settings())


@shared_task(bind=True, name=ANALYSE_TASK)
def analyse_recording(self: Task, job_id: str) -> None:
    ctx = get_context(load_settings())
    delivery = Delivery(uuid.UUID(job_id), uuid.UUID(self.request.id))
    _analyse(self, ctx, delivery)  # raises Retry on transient failures: not finished, nothing to announce
    try:
        if pending_callback(ctx.sessions, delivery.job_id):
            Publisher(self.app, ctx.sessions).job_finished(delivery.job_id)
    except TRANSIENT as exc:  # the result is saved; only the announcement is lost
        log.warning("job %s: could not queue its webhook: %s", job_id, exc)


def _backoff(queue: QueueSettings, retries: int) -> int:
    return min(queue.retry_backoff_max_seconds, 2 ** (retries + 1))


def _analyse(self: Task, ctx: WorkerContext, delivery: Delivery) -> None:
    queue = ctx.settings.queue
    job_id = str(delivery.job_id)
    try:
        run_job(ctx, delivery)
    except SoftTimeLimitExceeded:
        fail_job(ctx, delivery.job_id, "time_limit", f"analysis took longer than {queue.task_time_limit_seconds} s")
    except TRANSIENT as exc:
        if self.request.retries >= queue.retry_max:
            fail_job(ctx, delivery.job_id, "transient_failure", f"gave up after {queue.retry_max} retries: {exc}")
            return
        countdown = _backoff(queue, self.request.retries)
        log.warning("job %s: transient failure, retry in %d s: %s", job_id, countdown, exc)
        # If the database is what failed, the retry's delivery counts this one as lost.
        with contextlib.suppress(*TRANSIENT):
            release_for_retry(ctx, delivery.job_id, str(exc))
        raise self.retry(exc=exc, countdown=countdown, max_retries=queue.retry_max) from exc
    except Exception as exc:
        # A bug, not the recording's fault: fail the job visibly rather than
        # leave it queued with its message acknowledged.
        log.exception("job %s: unexpected error", job_id)
        fail_job(ctx, delivery.job_id, "internal_error", f"{type(exc).__name__}: {exc}"[:500])


@shared_task(bind=True, name=SWEEP_TASK)
def sweep(self: Task) -> dict[str, int]:
    ctx = get_context(load_settings())
    broker = redis.Redis.from_url(ctx.settings.queue.redis_url)
    try:
        return sweep_stale_jobs(ctx.sessions, ctx.settings.queue, Publisher(self.app, ctx.sessions), broker)
    finally:
        broker.close()


@shared_task(bind=True, name=NOTIFY_TASK)
def notify(self: Task, job_id: str) -> None:
    ctx = get_context(load_settings())
    webhooks = ctx.settings.webhooks
    try:
        deliver(ctx.sessions, webhooks, uuid.UUID(job_id))
    except WebhookRefused as exc:
        log.warning("job %s: webhook refused: %s", job_id, exc)
    except (WebhookFailed, *TRANSIENT) as exc:
        if self.request.retries >= webhooks.max_retries:
            log.warning("job %s: webhook given up after %d retries: %s", job_id, self.request.retries, exc)
            return
        countdown = _backoff(ctx.settings.queue, self.request.retries)
        raise self.retry(exc=exc, countdown=countdown, max_retries=webhooks.max_retries) from exc
