"""The queue's contract, shared by the API and the workers: task and queue
names, the Celery configuration, and the one place that publishes. Neither
side imports the other; both import this."""

from broker.app import create_celery
from broker.names import (
    ANALYSE_TASK,
    BATCH_NOTIFY_TASK,
    HEARTBEAT_PREFIX,
    MAINTENANCE_QUEUE,
    NOTIFY_REVIEW_TASK,
    NOTIFY_TASK,
    RETENTION_TASK,
    SWEEP_TASK,
)
from broker.publish import Publisher

__all__ = [
    "ANALYSE_TASK",
    "BATCH_NOTIFY_TASK",
    "HEARTBEAT_PREFIX",
    "MAINTENANCE_QUEUE",
    "NOTIFY_REVIEW_TASK",
    "NOTIFY_TASK",
    "RETENTION_TASK",
    "SWEEP_TASK",
    "Publisher",
    "create_celery",
]
