"""The Celery application the workers run: ``celery -A worker.celery_app worker``.
Only this module builds it; the names and configuration live in ``broker``."""

from broker import create_celery
from config import load_settings
from worker import telemetry  # noqa: F401  (its signal handlers: JSON logs, the metrics port)

app = create_celery(load_settings().queue, include=["worker.tasks"])
