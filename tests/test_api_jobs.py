"""Submit → poll → result over the real stack, with a real Celery worker."""

from __future__ import annotations

import io

import numpy as np
import pytest
from sqlalchemy import func, select

from models import Job
from tests.conftest import submit, voiced, wait_for_job, wav_bytes


def job_count(sessions) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(Job))


def object_count(store) -> int:
    return sum(1 for _ in store.client.list_objects(store.bucket, prefix="recordings/", recursive=True))


def test_submit_poll_and_read_result(client, keys, worker, settings, model_dir):
    response = submit(client, keys["submitter"], wav_bytes(voiced(4.0)), external_id="call-001")
    assert response.status_code == 202, response.get_json()
    body = response.get_json()
    assert body["status"] == "queued"
    assert response.headers["Location"] == f"/v1/jobs/{body['id']}"

    job = wait_for_job(client, keys["submitter"], body["id"])
    assert job["status"] == "succeeded", job["error"]
    result = job["result"]
    assert result["labels"] == [
        "angry",
        "disgusted",
        "fearful",
        "happy",
        "neutral",
        "other",
        "sad",
        "surprised",
        "unknown",
    ]
    assert set(result["scores"]) == set(result["labels"])
    assert sum(result["scores"].values()) == pytest.approx(1.0, abs=1e-5)
    assert result["primary"]["label"] in result["labels"]
    assert result["embedding_dim"] == 64
    assert result["model"]["random_weights"] is True
    assert result["model"]["id"] == str(model_dir)
    assert result["model"]["revision"].startswith("sha256:")
    assert job["external_id"] == "call-001"
    assert job["recording"]["duration_seconds"] == pytest.approx(4.0, abs=0.01)
    assert job["recording"]["sample_rate"] == 16000 and job["recording"]["channels"] == 1
    assert "policy" in result["segments"][0]["enhancement"]

    npy = client.get(f"/v1/jobs/{body['id']}/embedding", headers=keys["submitter"])
    assert npy.status_code == 200
    embedding = np.load(io.BytesIO(npy.data))
    assert embedding.shape == (64,) and embedding.dtype == np.float32

    listed = client.get("/v1/jobs?status=succeeded", headers=keys["submitter"]).get_json()
    assert body["id"] in [item["id"] for item in listed["items"]]


def test_list_is_paginated_with_a_cursor(client, keys, sessions, store):
    ids = [submit(client, keys["submitter"], wav_bytes(voiced(1.0, seed=i))).get_json()["id"] for i in range(5)]
    seen, cursor = [], None
    while True:
        url = "/v1/jobs?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = client.get(url, headers=keys["submitter"]).get_json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == list(reversed(ids))
    bad = client.get("/v1/jobs?cursor=nonsense", headers=keys["submitter"])
    assert bad.status_code == 400 and bad.get_json()["code"] == "invalid_cursor"


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        (b"", 400, "empty_upload"),
        (b"name,label\nhello,world\n" * 20, 415, "not_audio"),
        (wav_bytes(np.zeros(16000, dtype=np.float32))[:3000], 400, "truncated_audio"),
        (wav_bytes(np.zeros(16000, dtype=np.float32))[:44], 400, "truncated_audio"),
        (wav_bytes(np.zeros(0, dtype=np.float32)), 400, "empty_audio"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00" + bytes(16) + b"data" + bytes(4), 400, "undecodable_audio"),
    ],
    ids=["empty", "text", "truncated-wav", "header-only-wav", "zero-frames", "broken-header"],
)
def test_bad_uploads_are_refused_and_leave_nothing(client, keys, sessions, store, payload, status, code):
    jobs_before, objects_before = job_count(sessions), object_count(store)
    response = submit(client, keys["submitter"], payload, filename="upload.wav")
    assert response.status_code == status
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["code"] == code
    assert job_count(sessions) == jobs_before
    assert object_count(store) == objects_before


def test_oversize_upload_is_refused(settings, database, redis_client, store, sessions, keys):
    from api import create_app

    small = create_app(settings.override({"EMOQ_MAX_UPLOAD_BYTES": 10_000}))
    jobs_before = job_count(sessions)
    response = submit(small.test_client(), keys["submitter"], wav_bytes(voiced(2.0)))
    assert response.status_code == 413
    assert response.get_json()["code"] == "upload_too_large"
    assert job_count(sessions) == jobs_before


def test_too_long_recording_is_refused_before_decoding(settings, database, redis_client, store, keys):
    from api import create_app

    short_limit = create_app(settings.override({"EMOQ_MAX_DURATION_SECONDS": 2.0}))
    response = submit(short_limit.test_client(), keys["submitter"], wav_bytes(voiced(3.0)))
    assert response.status_code == 422
    assert response.get_json()["code"] == "recording_too_long"


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("granularity", "paragraph", "invalid_granularity"),
        ("domain", "Call Center!", "invalid_domain"),
        ("channels", "agent,agent", "invalid_channels"),
        ("channels", "agent,customer", "invalid_channels"),
    ],
)
def test_bad_fields_are_refused(client, keys, sessions, field, value, code):
    jobs_before = job_count(sessions)
    response = submit(client, keys["submitter"], wav_bytes(voiced(1.0)), **{field: value})
    assert response.status_code == 400
    assert response.get_json()["code"] == code
    assert job_count(sessions) == jobs_before


def test_missing_file_field(client, keys):
    response = client.post("/v1/jobs", data={"granularity": "frame"}, headers=keys["submitter"])
    assert response.status_code == 400 and response.get_json()["code"] == "file_missing"


def test_a_file_name_sent_as_text_is_told_how_to_send_the_file(client, keys):
    # curl -F file=call.wav (no @): the field is right, its content is not a file.
    response = client.post("/v1/jobs", data={"file": "call.wav"}, headers=keys["submitter"])
    body = response.get_json()
    assert response.status_code == 400 and body["code"] == "file_missing"
    assert "-F file=@call.wav" in body["detail"]
