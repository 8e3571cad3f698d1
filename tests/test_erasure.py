"""Erasure (DELETE /v1/jobs/{id}) and retention: nothing of the recording is
left in S3 or PostgreSQL but a tombstone and an audit line."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
from sqlalchemy import func, select, text

from config.settings import RetentionSettings
from domain.erasure import erase_job, frames_prefix
from domain.retention import apply_retention
from models import AuditLog, Base, Job, Result, ReviewItem
from models.db import transaction
from tests.conftest import submit, voiced, wait_for_job, wav_bytes
from tests.factories import key_id, make_job
from worker.context import WorkerContext
from worker.jobs import Delivery, persist, start_job, store_artifacts


def s3_names(store) -> list[str]:
    return store.keys("")


def rows_mentioning(sessions, *needles: str) -> list[tuple[str, str]]:
    """Every row of every table, as text, that contains one of ``needles``."""
    found = []
    with sessions() as session:
        for table in Base.metadata.sorted_tables:
            for (row,) in session.execute(text(f"SELECT t::text FROM {table.name} t")):
                found += [(table.name, needle) for needle in needles if needle in row]
    return found


def count(sessions, model, job_id) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(model).where(model.job_id == job_id))


def test_delete_leaves_nothing_behind_but_a_tombstone(client, keys, worker, sessions, store):
    owner = keys["submitter"]
    secret_id, secret_name = f"crm-{uuid.uuid4().hex}", f"jane-doe-{uuid.uuid4().hex}.wav"
    response = submit(
        client, owner, wav_bytes(voiced(0.6)), filename=secret_name, external_id=secret_id, granularity="frame"
    )
    job_id = response.get_json()["id"]
    assert wait_for_job(client, owner, job_id)["status"] == "succeeded"
    with sessions() as session:
        sha256 = session.get(Job, uuid.UUID(job_id)).sha256
    # What there is to erase: the recording, frame files, a result and a review item.
    assert sum(job_id in name for name in s3_names(store)) >= 2
    assert count(sessions, Result, uuid.UUID(job_id)) == 1 and count(sessions, ReviewItem, uuid.UUID(job_id)) >= 1
    assert rows_mentioning(sessions, secret_id, secret_name, sha256)

    erased = client.delete(f"/v1/jobs/{job_id}", headers=owner)
    assert erased.status_code == 200, erased.get_json()
    tombstone = erased.get_json()
    assert tombstone["id"] == job_id and tombstone["deleted_at"] and tombstone["deleted_by"]

    assert [name for name in s3_names(store) if job_id in name] == []
    assert count(sessions, Result, uuid.UUID(job_id)) == 0 and count(sessions, ReviewItem, uuid.UUID(job_id)) == 0
    assert rows_mentioning(sessions, secret_id, secret_name, sha256) == []
    with sessions() as session:
        (line,) = session.scalars(select(AuditLog).where(AuditLog.job_id == uuid.UUID(job_id))).all()
    assert line.action == "job.erased" and str(line.actor_id) == tombstone["deleted_by"]

    gone = client.get(f"/v1/jobs/{job_id}", headers=owner)
    assert gone.status_code == 410 and gone.get_json()["code"] == "job_erased"
    assert gone.get_json()["deleted_at"] == tombstone["deleted_at"]
    assert client.get(f"/v1/jobs/{job_id}/embedding", headers=owner).status_code == 410
    assert job_id not in [j["id"] for j in client.get("/v1/jobs", headers=owner).get_json()["items"]]
    assert job_id not in client.get("/v1/exports/results?format=jsonl", headers=owner).get_data(as_text=True)
    again = client.delete(f"/v1/jobs/{job_id}", headers=owner)
    assert again.status_code == 410 and again.get_json()["code"] == "job_erased"


def test_only_the_owner_or_an_admin_may_erase(client, keys, sessions, store):
    job = make_job(sessions, store, wav_bytes(voiced(1.0)), key_id(sessions, "submitter"))
    other = client.delete(f"/v1/jobs/{job.id}", headers=keys["submitter2"])
    assert other.status_code == 404 and other.get_json()["code"] == "job_not_found"
    reviewer = client.delete(f"/v1/jobs/{job.id}", headers=keys["reviewer"])
    assert reviewer.status_code == 403
    assert store.keys(job.object_key) == [job.object_key]
    assert client.delete(f"/v1/jobs/{job.id}", headers=keys["admin"]).status_code == 200
    assert store.keys(job.object_key) == []


def test_a_queued_job_erased_is_never_analysed(client, keys, settings, sessions, store):
    job = make_job(sessions, store, wav_bytes(voiced(1.0)), key_id(sessions, "submitter"))
    assert client.delete(f"/v1/jobs/{job.id}", headers=keys["submitter"]).status_code == 200
    ctx = WorkerContext(settings, sessions, store)  # no model needed to be refused
    assert start_job(ctx, Delivery(job.id, job.task_id)) is None
    with sessions() as session:
        row = session.get(Job, job.id)
    assert row.status == "failed" and row.error_code == "erased" and row.deleted_at is not None


def test_a_job_erased_during_analysis_saves_nothing_and_removes_its_frames(worker_ctx, keys, sessions, store):
    from analysis.pipeline import analyse

    owner = key_id(sessions, "submitter")
    job = make_job(sessions, store, wav_bytes(voiced(2.0)), owner, granularity="frame")
    spec = start_job(worker_ctx, Delivery(job.id, job.task_id))
    path = worker_ctx.settings.storage.work_dir / f"{job.id}.wav"
    path.write_bytes(wav_bytes(voiced(2.0)))
    analysis = analyse(path, spec, worker_ctx.engine, None, worker_ctx.settings)
    with transaction(sessions) as session:  # erased before the frame files are written
        erase_job(session, store, job.id, owner)
    frame_keys = store_artifacts(worker_ctx, spec, analysis)
    assert frame_keys and store.keys(frames_prefix(job.id))
    persist(worker_ctx, spec, analysis, frame_keys)
    assert store.keys(frames_prefix(job.id)) == []
    assert count(sessions, Result, job.id) == 0
    with sessions() as session:
        assert session.get(Job, job.id).status == "failed"


def finished_job(sessions, store, owner, days_ago: float) -> Job:
    job = make_job(
        sessions,
        store,
        wav_bytes(voiced(1.0)),
        owner,
        status="succeeded",
        finished_at=datetime.now(UTC) - timedelta(days=days_ago),
    )
    store.put_bytes(f"{frames_prefix(job.id)}segment-0000.npy", np.zeros(4, np.float32).tobytes())
    scores = {"neutral": 1.0}
    with transaction(sessions) as session:
        result = Result(
            job_id=job.id,
            model_id="m",
            model_revision="r",
            model_random_weights=True,
            primary_label="neutral",
            primary_confidence=1.0,
            scores=scores,
            embedding=[0.5] * 4,
            embedding_dim=4,
            enhancement={},
            flags=["low_confidence"],
        )
        session.add(result)
        session.flush()
        session.add(
            ReviewItem(
                job_id=job.id,
                result_id=result.id,
                embedding=[0.5] * 4,
                model_scores=scores,
                model_label="neutral",
                reasons=["low_confidence"],
                status="pending",
            )
        )
    return job


def audio_left(store, job: Job) -> list[str]:
    return store.keys(job.object_key) + store.keys(frames_prefix(job.id))


def test_retention_purges_old_audio_then_old_results(keys, sessions, store):
    owner = key_id(sessions, "submitter")
    old, recent = finished_job(sessions, store, owner, 10), finished_job(sessions, store, owner, 1)

    counts = apply_retention(sessions, store, RetentionSettings(audio_retention_days=7))
    assert counts == {"audio_purged": 1, "results_purged": 0}
    assert audio_left(store, old) == [] and len(audio_left(store, recent)) == 2
    assert count(sessions, Result, old.id) == 1  # results stay
    with sessions() as session:
        assert session.get(Job, old.id).audio_purged_at is not None
        assert session.get(Job, recent.id).audio_purged_at is None

    counts = apply_retention(sessions, store, RetentionSettings(audio_retention_days=7, result_retention_days=7))
    assert counts == {"audio_purged": 0, "results_purged": 1}
    assert count(sessions, Result, old.id) == 0 and count(sessions, ReviewItem, old.id) == 0
    assert count(sessions, Result, recent.id) == 1 and len(audio_left(store, recent)) == 2
    with sessions() as session:
        actions = session.scalars(select(AuditLog.action).where(AuditLog.job_id == old.id).order_by(AuditLog.at)).all()
    assert actions == ["job.audio_purged", "job.result_purged"]


def test_without_retention_settings_nothing_is_purged(keys, sessions, store):
    job = finished_job(sessions, store, key_id(sessions, "submitter"), 3650)
    assert apply_retention(sessions, store, RetentionSettings()) == {"audio_purged": 0, "results_purged": 0}
    assert len(audio_left(store, job)) == 2


def test_beat_schedules_retention_on_the_maintenance_queue(settings):
    from broker import MAINTENANCE_QUEUE, RETENTION_TASK, create_celery

    conf = create_celery(settings.queue).conf
    (entry,) = [e for e in conf.beat_schedule.values() if e["task"] == RETENTION_TASK]
    assert entry["schedule"] == settings.queue.retention_interval_seconds
    assert conf.task_routes[RETENTION_TASK] == {"queue": MAINTENANCE_QUEUE}


def test_erasure_while_storage_is_down_changes_nothing_and_can_be_repeated(client, settings, keys, sessions, store):
    from api import create_app

    job = make_job(sessions, store, wav_bytes(voiced(1.0)), key_id(sessions, "submitter"), external_id="keep-me")
    down = create_app(settings.override({"EMOQ_S3_ENDPOINT": "127.0.0.1:1"})).test_client()
    refused = down.delete(f"/v1/jobs/{job.id}", headers=keys["submitter"])
    assert refused.status_code == 503 and refused.get_json()["code"] == "storage_unavailable"
    with sessions() as session:
        row = session.get(Job, job.id)
    assert row.deleted_at is None and row.external_id == "keep-me"
    assert store.keys(job.object_key) == [job.object_key]
    assert count_audit(sessions, job.id) == 0
    assert client.delete(f"/v1/jobs/{job.id}", headers=keys["submitter"]).status_code == 200
    assert store.keys(job.object_key) == [] and count_audit(sessions, job.id) == 1


def count_audit(sessions, job_id) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.job_id == job_id))
