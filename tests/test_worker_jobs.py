"""The worker's job lifecycle, called without Celery (plain functions over
the real database and S3), plus redelivery through the real worker."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select

from models import Job, Result
from tests.conftest import submit, voiced, wait_for_job, wait_until, wav_bytes
from tests.factories import key_id, make_job
from worker.context import WorkerContext
from worker.jobs import Delivery, run_job, start_job


def job_row(sessions, job_id) -> Job:
    with sessions() as session:
        return session.get(Job, job_id)


def result_count(sessions, job_id) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(Result).where(Result.job_id == job_id))


def test_redelivered_job_does_not_duplicate_its_result(worker_ctx, sessions, store, keys):
    job = make_job(sessions, store, wav_bytes(voiced(2.0)), key_id(sessions, "submitter"))
    delivery = Delivery(job.id, job.task_id)
    run_job(worker_ctx, delivery)
    assert job_row(sessions, job.id).status == "succeeded"
    run_job(worker_ctx, delivery)  # the same message again, as after a lost ack
    assert result_count(sessions, job.id) == 1
    assert job_row(sessions, job.id).attempts == 1


def test_a_lost_delivery_that_already_saved_is_not_saved_twice(worker_ctx, sessions, store, keys):
    """Died after the result committed? The row says succeeded; nothing runs again."""
    from analysis.pipeline import analyse
    from worker.jobs import persist, store_artifacts

    job = make_job(sessions, store, wav_bytes(voiced(2.0)), key_id(sessions, "submitter"))
    spec = start_job(worker_ctx, Delivery(job.id, job.task_id))
    path = worker_ctx.settings.storage.work_dir / f"{job.id}.wav"
    path.write_bytes(wav_bytes(voiced(2.0)))
    analysis = analyse(path, spec, worker_ctx.engine, None, worker_ctx.settings)
    persist(worker_ctx, spec, analysis, store_artifacts(worker_ctx, spec, analysis))
    persist(worker_ctx, spec, analysis, {})
    assert result_count(sessions, job.id) == 1


def test_stale_message_for_a_republished_job_is_skipped(worker_ctx, sessions, store, keys):
    job = make_job(sessions, store, wav_bytes(voiced(1.0)), key_id(sessions, "submitter"))
    run_job(worker_ctx, Delivery(job.id, uuid.uuid4()))
    row = job_row(sessions, job.id)
    assert row.status == "queued" and row.attempts == 0


def test_job_that_keeps_killing_its_worker_fails_as_worker_lost(worker_ctx, sessions, store, keys, settings):
    job = make_job(sessions, store, wav_bytes(voiced(1.0)), key_id(sessions, "submitter"))
    delivery = Delivery(job.id, job.task_id)
    for _ in range(settings.queue.max_deliveries):
        # Each start leaves the job 'running', as a worker killed mid-analysis would.
        assert start_job(worker_ctx, delivery) is not None
    assert start_job(worker_ctx, delivery) is None  # the next delivery finds it lost too often
    row = job_row(sessions, job.id)
    assert row.status == "failed" and row.error_code == "worker_lost"
    assert row.lost_deliveries == settings.queue.max_deliveries
    assert result_count(sessions, job.id) == 0


def test_model_unavailable_fails_jobs_instead_of_hanging(settings, sessions, store, keys, tmp_path):
    ctx = WorkerContext(settings.override({"EMOQ_MODEL": str(tmp_path / "no-such-model")}), sessions, store)
    ctx.load_model()
    assert ctx.engine is None and "does not exist" in ctx.model_error
    job = make_job(sessions, store, wav_bytes(voiced(1.0)), key_id(sessions, "submitter"))
    run_job(ctx, Delivery(job.id, job.task_id))
    row = job_row(sessions, job.id)
    assert row.status == "failed" and row.error_code == "model_unavailable"


def test_missing_object_fails_permanently(worker_ctx, sessions, store, keys):
    job = make_job(sessions, store, wav_bytes(voiced(1.0)), key_id(sessions, "submitter"))
    store.remove(job.object_key)
    run_job(worker_ctx, Delivery(job.id, job.task_id))
    row = job_row(sessions, job.id)
    assert row.status == "failed" and row.error_code == "object_missing"


def test_corrupt_recording_fails_with_a_reason(client, keys, worker):
    # Passes the upload's format sniffing (an MP3 tag) but holds no decodable audio.
    corrupt = b"ID3\x03\x00\x00\x00\x00\x00\x00" + bytes(range(256)) * 40
    response = submit(client, keys["submitter"], corrupt, filename="call.mp3")
    assert response.status_code == 202, response.get_json()
    job = wait_for_job(client, keys["submitter"], response.get_json()["id"])
    assert job["status"] == "failed"
    assert job["error"]["code"] == "undecodable_audio"
    assert job["error"]["message"]


def test_duplicate_message_through_the_real_worker_makes_one_result(client, keys, worker, app, sessions):
    response = submit(client, keys["submitter"], wav_bytes(voiced(2.0)))
    job_id = uuid.UUID(response.get_json()["id"])
    task_id = job_row(sessions, job_id).task_id
    app.extensions["emoq"].publisher.analysis(job_id, task_id)  # a second copy of the same message
    wait_for_job(client, keys["submitter"], str(job_id))
    wait_until(lambda: job_row(sessions, job_id).status == "succeeded", 30, "job to succeed")
    assert result_count(sessions, job_id) == 1
