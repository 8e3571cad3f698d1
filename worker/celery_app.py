"""The Celery application: ``celery -A worker.celery_app worker``.

The API imports ``create_celery`` only to publish by task name; it never
imports the tasks (and so never imports torch)."""

from __future__ import annotations

import uuid

from celery import Celery

from config import Settings, load_settings

ANALYSE_TASK = "emoq.analyse_recording"
SWEEP_TASK = "emoq.sweep_stale_jobs"
NOTIFY_TASK = "emoq.notify_job_finished"
MAINTENANCE_QUEUE = "emoq.maintenance"
# Worker processes publish their model status under this prefix (read by /readyz).
HEARTBEAT_PREFIX = "emoq:workers:"


def publish_analysis(app: Celery, job_id: uuid.UUID, task_id: uuid.UUID) -> None:
    """The job row names ``task_id`` as the one message allowed to run it."""
    app.send_task(ANALYSE_TASK, args=[str(job_id)], task_id=str(task_id))


def create_celery(settings: Settings) -> Celery:
    app = Celery("emoq", broker=settings.redis_url, include=["worker.tasks"])
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # Pool processes load the model at start (the large one takes seconds,
        # a failing hub download tens of them); Celery's 4 s default would kill them.
        worker_proc_alive_timeout=600,
        task_time_limit=settings.task_time_limit_seconds,
        task_soft_time_limit=max(1, settings.task_time_limit_seconds - 30),
        # Must exceed the time limit: Redis redelivers unacked messages after it.
        broker_transport_options={"visibility_timeout": settings.broker_visibility_timeout_seconds},
        broker_connection_retry_on_startup=True,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        task_default_queue=settings.queue,
        task_routes={
            ANALYSE_TASK: {"queue": settings.queue},
            SWEEP_TASK: {"queue": MAINTENANCE_QUEUE},
            NOTIFY_TASK: {"queue": MAINTENANCE_QUEUE},
        },
        beat_schedule={
            "sweep-stale-jobs": {"task": SWEEP_TASK, "schedule": float(settings.sweep_interval_seconds)},
        },
        worker_send_task_events=False,
        # Fail fast when the broker is down: the job row is committed and the sweep publishes it later.
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.5, "interval_max": 1},
    )
    return app


app = create_celery(load_settings())
