"""The Celery configuration. Building an app connects to nothing: the API
builds one to publish by task name, the worker (``worker.celery_app``) one
that runs the tasks."""

from __future__ import annotations

from celery import Celery

from broker.names import (
    ANALYSE_TASK,
    BATCH_NOTIFY_TASK,
    MAINTENANCE_QUEUE,
    NOTIFY_REVIEW_TASK,
    NOTIFY_TASK,
    RETENTION_TASK,
    SWEEP_TASK,
)
from config.settings import QueueSettings


def create_celery(queue: QueueSettings, include: list[str] | None = None) -> Celery:
    app = Celery("emoq", broker=queue.redis_url, include=include or [])
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # Pool processes load the model at start (the large one takes seconds,
        # a failing hub download tens of them); Celery's 4 s default would kill them.
        worker_proc_alive_timeout=600,
        task_time_limit=queue.task_time_limit_seconds,
        task_soft_time_limit=max(1, queue.task_time_limit_seconds - 30),
        # Must exceed the time limit: Redis redelivers unacked messages after it.
        broker_transport_options={"visibility_timeout": queue.broker_visibility_timeout_seconds},
        broker_connection_retry_on_startup=True,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        task_default_queue=queue.analysis_queue,
        task_routes={
            ANALYSE_TASK: {"queue": queue.analysis_queue},
            SWEEP_TASK: {"queue": MAINTENANCE_QUEUE},
            NOTIFY_TASK: {"queue": MAINTENANCE_QUEUE},
            RETENTION_TASK: {"queue": MAINTENANCE_QUEUE},
            BATCH_NOTIFY_TASK: {"queue": MAINTENANCE_QUEUE},
            NOTIFY_REVIEW_TASK: {"queue": MAINTENANCE_QUEUE},
        },
        beat_schedule={
            "sweep-stale-jobs": {"task": SWEEP_TASK, "schedule": float(queue.sweep_interval_seconds)},
            "apply-retention": {"task": RETENTION_TASK, "schedule": float(queue.retention_interval_seconds)},
        },
        worker_send_task_events=False,
        # Fail fast when the broker is down: the job row is committed and the sweep publishes it later.
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.5, "interval_max": 1},
    )
    return app
