"""/metrics (Prometheus), JSON logs and the per-job log line."""

from __future__ import annotations

import json
import logging
import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families

from config.logs import JsonFormatter
from tests.conftest import submit, voiced, wait_for_job, wait_until, wav_bytes


def samples(response) -> dict[tuple[str, tuple], float]:
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    assert response.content_type.startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.get_data(as_text=True))
        for s in family.samples
    }


def value(found: dict, name: str, **labels: str) -> float | None:
    return found.get((name, tuple(sorted(labels.items()))))


def test_metrics_show_state_and_what_the_workers_counted(client, keys, worker, settings, metrics_dir, monkeypatch):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(metrics_dir))
    job = submit(client, keys["submitter"], wav_bytes(voiced(0.6)), external_id="metrics-1")
    assert wait_for_job(client, keys["submitter"], job.get_json()["id"])["status"] == "succeeded"

    found = samples(client.get("/metrics"))
    assert value(found, "emoq_jobs", status="succeeded") == 1  # exact, from PostgreSQL (a fresh database)
    assert value(found, "emoq_jobs", status="queued") == 0
    assert value(found, "emoq_queue_depth", queue=settings.queue.analysis_queue) == 0
    assert value(found, "emoq_queue_depth", queue="emoq.maintenance") is not None
    assert value(found, "emoq_workers", model_loaded="true") >= 1
    assert value(found, "emoq_review_backlog", reason="too_short") >= 1  # a 0.6 s clip is flagged too_short
    assert value(found, "emoq_dependency_up", dependency="database") == 1
    # Counted in the worker's pool process, read from the multiprocess files.
    assert value(found, "emoq_job_duration_seconds_count", outcome="succeeded") >= 1
    assert value(found, "emoq_job_audio_seconds_count") >= 1
    assert value(found, "emoq_model_real_time_factor_count") >= 1
    assert value(found, "emoq_jobs_finished_total", outcome="succeeded", error_code="") >= 1


def test_queue_depth_counts_waiting_messages(settings, database, redis_client, store, keys):
    from api import create_app

    queue = f"emoq.test.depth.{uuid.uuid4().hex[:8]}"  # no worker consumes it
    client = create_app(settings.override({"EMOQ_QUEUE": queue})).test_client()
    try:
        for seed in range(3):
            assert submit(client, keys["submitter"], wav_bytes(voiced(0.5, seed=seed))).status_code == 202
        assert value(samples(client.get("/metrics")), "emoq_queue_depth", queue=queue) == 3
        assert value(samples(client.get("/metrics")), "emoq_jobs", status="queued") == 3
    finally:
        redis_client.delete(queue)


def test_metrics_need_the_token_when_one_is_set(settings, database, redis_client, store):
    from api import create_app

    client = create_app(settings.override({"EMOQ_METRICS_TOKEN": "scrape-me"})).test_client()
    refused = client.get("/metrics")
    assert refused.status_code == 401 and refused.get_json()["code"] == "unauthorized"
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer scrape-me"}).status_code == 200


def test_metrics_still_answer_while_redis_is_down(settings, database, store):
    from api import create_app

    client = create_app(settings.override({"EMOQ_REDIS_URL": "redis://127.0.0.1:1/0"})).test_client()
    found = samples(client.get("/metrics"))
    assert value(found, "emoq_dependency_up", dependency="redis") == 0
    assert value(found, "emoq_dependency_up", dependency="database") == 1
    assert value(found, "emoq_jobs", status="running") is not None


def test_the_worker_logs_one_json_line_per_finished_job(client, keys, worker):
    external_id = f"log-{uuid.uuid4().hex[:8]}"
    job_id = submit(client, keys["submitter"], wav_bytes(voiced(1.0)), external_id=external_id).get_json()["id"]
    assert wait_for_job(client, keys["submitter"], job_id)["status"] == "succeeded"

    def finished_line() -> dict | None:
        for line in worker.log_path.read_text().splitlines():
            if job_id in line and '"job finished"' in line:
                return json.loads(line)
        return None

    line = wait_until(finished_line, 10, "the job's finished line in the worker log")
    assert line["level"] == "INFO" and line["logger"] == "emoq.jobs" and line["timestamp"]
    assert line["external_id"] == external_id and line["outcome"] == "succeeded" and line["error_code"] is None
    assert line["duration_seconds"] > 0 and line["audio_seconds"] == pytest.approx(1.0, abs=0.01)
    assert line["segments"] >= 1 and line["real_time_factor"] > 0
    assert line["task_id"]  # Celery's task context rides along


def test_json_formatter_carries_extra_fields_and_exceptions():
    record = logging.LogRecord("emoq.x", logging.WARNING, __file__, 1, "job %s", ("j1",), None)
    record.job_id = "j1"
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    body = json.loads(JsonFormatter().format(record))
    assert body["message"] == "job j1" and body["level"] == "WARNING" and body["job_id"] == "j1"
    assert "ValueError: boom" in body["exception"]


def test_webhook_failures_are_counted(client, keys, worker, metrics_dir, monkeypatch):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(metrics_dir))

    def failures() -> float:
        return value(samples(client.get("/metrics")), "emoq_webhook_failures_total", reason="failed") or 0.0

    before = failures()
    job_id = submit(
        client, keys["submitter"], wav_bytes(voiced(0.5)), callback_url="http://127.0.0.1:9/nothing-listens"
    ).get_json()["id"]
    assert wait_for_job(client, keys["submitter"], job_id)["status"] == "succeeded"
    wait_until(lambda: failures() > before, 30, "a failed webhook delivery to be counted")
