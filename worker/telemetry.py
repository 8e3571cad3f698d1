"""What a worker tells the outside: Prometheus metrics (multiprocess-safe
under Celery's prefork pool: each process writes its own files under
``PROMETHEUS_MULTIPROC_DIR``, which the API's ``/metrics`` or the worker's own
port add up), JSON log lines, and one structured line per finished job."""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime

from celery import current_task
from celery.signals import after_setup_logger, after_setup_task_logger, worker_init
from prometheus_client import CollectorRegistry, Counter, Histogram, multiprocess, start_http_server

from config import load_settings
from config.logs import JsonFormatter
from models import Job

log = logging.getLogger("emoq.jobs")

JOBS_FINISHED = Counter(
    "emoq_jobs_finished_total", "Jobs that finished, by outcome and error code", ["outcome", "error_code"]
)
JOB_DURATION = Histogram(
    "emoq_job_duration_seconds",
    "From a job's (last) start to its end",
    ["outcome"],
    buckets=(1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600),
)
AUDIO_SECONDS = Histogram(
    "emoq_job_audio_seconds",
    "Length of the recordings analysed",
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1200, 2400, 3600, 7200),
)
REAL_TIME_FACTOR = Histogram(
    "emoq_model_real_time_factor",
    "Analysis wall time over audio time (decode, VAD, model, enhancement); under 1 is faster than real time",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1, 2, 5),
)
WEBHOOK_FAILURES = Counter("emoq_webhook_failures_total", "Webhook deliveries that failed", ["reason"])


class _TaskJsonFormatter(JsonFormatter):
    def fields(self, record: logging.LogRecord) -> dict[str, object]:
        body = super().fields(record)
        task = current_task
        if task and task.request.id:
            body.update(task_id=task.request.id, task_name=task.name)
        return body


@after_setup_logger.connect
@after_setup_task_logger.connect
def _json_logs(logger: logging.Logger, **_kwargs: object) -> None:
    if load_settings().observability.log_format == "json":
        for handler in logger.handlers:
            handler.setFormatter(_TaskJsonFormatter())


@worker_init.connect
def _serve_metrics(**_kwargs: object) -> None:
    """In the worker's main process: its pool processes' metrics on EMOQ_WORKER_METRICS_PORT."""
    port = load_settings().observability.worker_metrics_port
    if not port:
        return
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        logging.getLogger(__name__).error("EMOQ_WORKER_METRICS_PORT needs PROMETHEUS_MULTIPROC_DIR; not serving")
        return
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    start_http_server(port, registry=registry)


def job_finished(
    job: Job,
    *,
    audio_seconds: float | None = None,
    segments: int | None = None,
    analysis_seconds: float | None = None,
) -> None:
    """Count a finished job and log one line about it (no personal data but external_id)."""
    outcome = job.status
    duration = (job.finished_at or datetime.now(UTC)) - (job.started_at or job.created_at)
    fields: dict[str, object] = {
        "job_id": str(job.id),
        "external_id": job.external_id,
        "outcome": outcome,
        "error_code": job.error_code,
        "attempts": job.attempts,
        "duration_seconds": round(duration.total_seconds(), 3),
    }
    if (batch_id := getattr(job, "batch_id", None)) is not None:
        fields["batch_id"] = str(batch_id)
    JOBS_FINISHED.labels(outcome, job.error_code or "").inc()
    JOB_DURATION.labels(outcome).observe(duration.total_seconds())
    if audio_seconds:
        fields.update(audio_seconds=round(audio_seconds, 3), segments=segments)
        AUDIO_SECONDS.observe(audio_seconds)
        if analysis_seconds is not None:
            rtf = analysis_seconds / audio_seconds
            fields["real_time_factor"] = round(rtf, 4)
            REAL_TIME_FACTOR.observe(rtf)
    log.info("job finished", extra=fields)
