"""Batches over the real stack: create, fill (uploads, URLs, an S3 prefix),
duplicates, close, cancel, progress, one signed batch.finished webhook, results
in three formats; idempotency keys, backpressure and strict parameters."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pyarrow.parquet as pq
import pytest
import urllib3
from sqlalchemy import func, select

from api.batch_results import SEGMENT_COLUMNS
from api.exports import CSV_COLUMNS
from domain.batches import try_finish
from models import Batch, Job
from models.db import transaction
from tests.conftest import voiced, wait_until, wav_bytes
from tests.factories import key_id, make_job
from worker.webhooks import signature


def create(client, headers, **body) -> dict:
    response = client.post("/v1/batches", json={"name": "nightly", **body}, headers=headers)
    assert response.status_code == 201, response.get_json()
    assert response.headers["Location"] == f"/v1/batches/{response.get_json()['id']}"
    return response.get_json()


def add_files(client, headers, batch_id: str, files: list[tuple[bytes, str]], external_ids=(), key=None):
    form = {"file": [(io.BytesIO(data), name) for data, name in files]}
    if external_ids:
        form["external_id"] = list(external_ids)
    extra = {"Idempotency-Key": key} if key else {}
    return client.post(
        f"/v1/batches/{batch_id}/recordings",
        data=form,
        headers={**headers, **extra},
        content_type="multipart/form-data",
    )


def batch_jobs(sessions, batch_id: str) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(Job).where(Job.batch_id == uuid.UUID(batch_id)))


def wait_finished(client, headers, batch_id: str, timeout: float = 120) -> dict:
    return wait_until(
        lambda: (b := client.get(f"/v1/batches/{batch_id}", headers=headers).get_json())["finished_at"] and b,
        timeout,
        f"batch {batch_id} to finish",
        interval=0.2,
    )


def test_a_batch_of_uploads_with_a_bad_file_and_a_duplicate(client, keys, sessions):
    batch = create(client, keys["submitter"], channels="agent,customer", metadata={"night": "2026-11-25"})
    assert batch["status"] == "open" and batch["channels"] == ["agent", "customer"]
    assert batch["metadata"] == {"night": "2026-11-25"}
    stereo = wav_bytes(voiced(1.0, seed=1).repeat(2).reshape(-1, 2))
    response = add_files(
        client,
        keys["submitter"],
        batch["id"],
        [(stereo, "dir/a.wav"), (b"not audio at all" * 10, "b.wav"), (wav_bytes(voiced(1.0)), "mono.wav")],
        external_ids=["call-a"],
    )
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["counts"] == {"queued": 1, "duplicate": 0, "refused": 2}
    first, bad, mono = body["items"]
    assert (first["status"], first["external_id"]) == ("queued", "call-a")
    assert (bad["status"], bad["external_id"], bad["error"]["code"]) == ("refused", "b.wav", "not_audio")
    assert mono["error"]["code"] == "invalid_channels"  # one role per channel, as the batch says

    again = add_files(client, keys["submitter"], batch["id"], [(stereo, "a.wav")], external_ids=["call-a"])
    (duplicate,) = again.get_json()["items"]
    assert duplicate == {**duplicate, "status": "duplicate", "job_id": first["job_id"]}
    other_name = add_files(client, keys["submitter"], batch["id"], [(stereo, "a.wav")])
    assert other_name.get_json()["items"][0]["status"] == "queued"  # same content, another external id
    assert batch_jobs(sessions, batch["id"]) == 2

    got = client.get(f"/v1/batches/{batch['id']}", headers=keys["submitter"]).get_json()
    assert got["jobs"]["total"] == 2 and got["audio_seconds"]["queued"] + got["audio_seconds"]["running"] >= 0
    listed = client.get("/v1/batches?name=nightly", headers=keys["submitter"]).get_json()["items"]
    assert [b["id"] for b in listed] == [batch["id"]]
    assert client.get("/v1/batches?name=nightly", headers=keys["submitter2"]).get_json()["items"] == []
    assert client.get(f"/v1/batches/{batch['id']}", headers=keys["submitter2"]).status_code == 404
    jobs = client.get(f"/v1/batches/{batch['id']}/jobs?limit=1", headers=keys["submitter"]).get_json()
    assert len(jobs["items"]) == 1 and jobs["next_cursor"]


def test_closed_batch_finishes_once_with_one_signed_webhook_and_exports_agree(
    client, keys, sessions, settings, worker, receiver
):
    batch = create(client, keys["submitter"], callback_url=receiver.url)
    files = [(wav_bytes(voiced(1.0 + i / 4, seed=i)), f"call-{i}.wav") for i in range(4)]
    assert add_files(client, keys["submitter"], batch["id"], files).get_json()["counts"]["queued"] == 4
    closed = client.post(f"/v1/batches/{batch['id']}/close", headers=keys["submitter"]).get_json()
    assert closed["status"] == "closed" and closed["closed_at"]
    refused = add_files(client, keys["submitter"], batch["id"], files[:1])
    assert refused.status_code == 409 and refused.get_json()["code"] == "batch_closed"

    done = wait_finished(client, keys["submitter"], batch["id"])
    assert done["status"] == "finished" and done["jobs"]["succeeded"] == 4
    assert done["throughput_audio_seconds_per_second"] > 0
    wait_until(lambda: receiver.received, 60, "the batch.finished webhook")
    (hit,) = receiver.received
    assert hit["headers"]["X-Emoq-Signature"] == signature(hit["body"], settings.webhooks.secret)
    event = json.loads(hit["body"])
    assert event["event"] == "batch.finished" and event["id"] == batch["id"]
    assert event["jobs"]["succeeded"] == 4 and event["links"]["results"] == f"/v1/batches/{batch['id']}/results"
    # Closing again finds it finished: nothing more is sent.
    client.post(f"/v1/batches/{batch['id']}/close", headers=keys["submitter"])
    with transaction(sessions) as session:
        assert try_finish(session, uuid.UUID(batch["id"])) is False
    assert_exports_agree(client, keys["submitter"], batch["id"])
    assert len(receiver.received) == 1


def assert_exports_agree(client, headers, batch_id: str) -> int:
    """Every format parses, and every row matches GET /v1/jobs/{id}; the number of jobs."""
    base = f"/v1/batches/{batch_id}/results"
    as_csv = list(csv.DictReader(io.StringIO(client.get(f"{base}?format=csv", headers=headers).get_data(as_text=True))))
    as_jsonl = [
        json.loads(line)
        for line in client.get(f"{base}?format=jsonl", headers=headers).get_data(as_text=True).splitlines()
    ]
    parquet = client.get(f"{base}?format=parquet", headers=headers)
    assert parquet.mimetype == "application/vnd.apache.parquet"
    as_parquet = pq.read_table(io.BytesIO(parquet.data)).to_pylist()
    assert list(as_csv[0])[: len(CSV_COLUMNS)] == CSV_COLUMNS
    assert len(as_csv) == len(as_jsonl) == len(as_parquet)
    segments = pq.read_table(io.BytesIO(client.get(f"{base}?format=parquet&rows=segment", headers=headers).data))
    assert segments.column_names == SEGMENT_COLUMNS
    segment_rows = segments.to_pylist()
    for row_csv, row_json, row_parquet in zip(as_csv, as_jsonl, as_parquet):
        assert row_csv["job_id"] == row_json["job_id"] == row_parquet["job_id"]
        job = client.get(f"/v1/jobs/{row_json['job_id']}", headers=headers).get_json()
        result = job["result"]
        assert row_json["status"] == row_parquet["status"] == job["status"] == "succeeded"
        assert row_json["external_id"] == row_csv["external_id"] == job["external_id"]
        assert row_json["primary_label"] == row_parquet["primary_label"] == result["primary"]["label"]
        for label in result["labels"]:
            expected = result["scores"][label]
            assert float(row_csv[f"score_{label}"]) == pytest.approx(expected, abs=5e-5)
            assert row_json[f"score_{label}"] == row_parquet[f"score_{label}"] == pytest.approx(expected, abs=5e-5)
        assert row_json["flags"] == row_parquet["flags"] == result["flags"]
        speaker = result["aggregate"]["by_role"].get("speaker")
        if speaker:
            assert row_parquet["speaker_primary_label"] == speaker["primary"]["label"]
            assert row_parquet["speaker_speech_share"] == 1.0
        mine = [s for s in segment_rows if s["job_id"] == job["id"]]
        assert len(mine) == len(result["segments"])
        for row, segment in zip(mine, result["segments"]):
            assert (row["role"], row["start"], row["end"]) == (segment["role"], segment["start"], segment["end"])
            assert row["primary_label"] == segment["primary"]["label"]
            assert row["score_angry"] == pytest.approx(segment["scores"]["angry"], abs=5e-5)
    return len(as_jsonl)


def test_cancel_fails_queued_jobs_and_running_ones_finish(client, keys, sessions, store, receiver):
    batch = create(client, keys["submitter"], callback_url=receiver.url)
    batch_id = uuid.UUID(batch["id"])
    submitter = key_id(sessions, "submitter")
    queued = [make_job(sessions, store, b"x", submitter, batch_id=batch_id) for _ in range(3)]
    running = make_job(sessions, store, b"x", submitter, batch_id=batch_id, status="running")
    response = client.post(f"/v1/batches/{batch['id']}/cancel", headers=keys["submitter"]).get_json()
    assert response["status"] == "cancelled" and response["cancelled_jobs"] == 3
    assert response["jobs"]["failed"] == response["jobs"]["cancelled"] == 3 and response["jobs"]["running"] == 1
    assert response["finished_at"] is None  # the running job still runs
    for job in queued:
        body = client.get(f"/v1/jobs/{job.id}", headers=keys["submitter"]).get_json()
        assert body["error"]["code"] == "cancelled"
    with transaction(sessions) as session:
        session.get(Job, running.id).succeed(duration_seconds=1.0, sample_rate=16000, channels=1)
    with transaction(sessions) as session:
        assert try_finish(session, batch_id) is True
    with transaction(sessions) as session:
        assert try_finish(session, batch_id) is False  # exactly once
        assert session.get(Batch, batch_id).status == "cancelled"


@pytest.fixture
def audio_server():
    """A loopback HTTP server with recordings, a redirect, and a missing path."""
    files = {f"/calls/{i}.wav": wav_bytes(voiced(1.0, seed=40 + i)) for i in range(2)}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/moved":
                self.send_response(302)
                self.send_header("Location", "/calls/0.wav")
                self.end_headers()
                return
            data = files.get(self.path)
            self.send_response(200 if data else 404)
            self.send_header("Content-Length", str(len(data or b"")))
            self.end_headers()
            self.wfile.write(data or b"")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", files
    server.shutdown()
    server.server_close()


def test_url_and_s3_prefix_imports(client, keys, sessions, store, worker, audio_server):
    base, files = audio_server
    batch = create(client, keys["submitter"])
    urls = [
        f"{base}/calls/0.wav",
        {"url": f"{base}/moved", "external_id": "via-redirect"},
        f"{base}/gone.wav",
        "ftp://x/y",
    ]
    response = client.post(f"/v1/batches/{batch['id']}/recordings", json={"urls": urls}, headers=keys["submitter"])
    items = response.get_json()["items"]
    assert [i["status"] for i in items] == ["queued", "queued", "queued", "refused"]
    assert items[0]["external_id"] == "0.wav" and items[3]["error"]["code"] == "invalid_url"
    repeat = client.post(f"/v1/batches/{batch['id']}/recordings", json={"urls": urls[:1]}, headers=keys["submitter"])
    assert repeat.get_json()["items"][0] == {**items[0], "status": "duplicate"}

    bucket = f"emoq-import-{uuid.uuid4().hex[:8]}"
    store.client.make_bucket(bucket)
    for i in range(2):
        data = wav_bytes(voiced(1.0, seed=60 + i))
        store.client.put_object(bucket, f"night/2026/{i}.wav", io.BytesIO(data), len(data))
    s3 = client.post(
        f"/v1/batches/{batch['id']}/recordings",
        json={"s3": {"bucket": bucket, "prefix": "night/"}},
        headers=keys["submitter"],
    ).get_json()
    assert [(i["external_id"], i["status"]) for i in s3["items"]] == [
        ("2026/0.wav", "queued"),
        ("2026/1.wav", "queued"),
    ]
    own = client.post(
        f"/v1/batches/{batch['id']}/recordings",
        json={"s3": {"bucket": store.bucket, "prefix": ""}},
        headers=keys["submitter"],
    )
    assert own.status_code == 403 and own.get_json()["code"] == "s3_bucket_forbidden"

    client.post(f"/v1/batches/{batch['id']}/close", headers=keys["submitter"])
    done = wait_finished(client, keys["submitter"], batch["id"])
    assert done["jobs"] == {**done["jobs"], "succeeded": 4, "failed": 1, "total": 5}
    jobs = {
        j["external_id"]: j
        for j in client.get(f"/v1/batches/{batch['id']}/jobs", headers=keys["submitter"]).get_json()["items"]
    }
    assert jobs["gone.wav"]["error"]["code"] == "download_failed"
    assert jobs["0.wav"]["recording"]["sha256"] == hashlib.sha256(files["/calls/0.wav"]).hexdigest()
    assert jobs["via-redirect"]["recording"]["sha256"] == jobs["0.wav"]["recording"]["sha256"]
    assert jobs["2026/1.wav"]["recording"]["duration_seconds"] == pytest.approx(1.0, abs=0.01)


def test_private_import_urls_and_callbacks_are_refused_unless_allowed(settings, database, redis_client, store, keys):
    from api import create_app

    strict = create_app(
        settings.override({"EMOQ_IMPORT_ALLOW_PRIVATE": False, "EMOQ_WEBHOOK_ALLOW_PRIVATE": False})
    ).test_client()
    response = strict.post(
        "/v1/batches", json={"name": "x", "callback_url": "http://127.0.0.1:9/x"}, headers=keys["submitter"]
    )
    assert response.status_code == 422 and response.get_json()["code"] == "callback_url_private"
    job = strict.post(
        "/v1/jobs",
        data={"file": (io.BytesIO(wav_bytes(voiced(1.0))), "a.wav"), "callback_url": "http://10.1.2.3/hook"},
        headers=keys["submitter"],
        content_type="multipart/form-data",
    )
    assert job.status_code == 422 and job.get_json()["code"] == "callback_url_private"
    batch = strict.post("/v1/batches", json={"name": "x"}, headers=keys["submitter"]).get_json()
    refused = strict.post(
        f"/v1/batches/{batch['id']}/recordings", json={"urls": ["http://localhost:9/a.wav"]}, headers=keys["submitter"]
    ).get_json()
    assert refused["items"][0]["error"]["code"] == "url_private"


def test_idempotency_keys_replay_and_refuse_reuse(client, keys, sessions):
    headers = {**keys["submitter"], "Idempotency-Key": "create-nightly"}
    first = client.post("/v1/batches", json={"name": "nightly"}, headers=headers)
    again = client.post("/v1/batches", json={"name": "nightly"}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.get_json() == first.get_json() and again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Location"] == first.headers["Location"]
    other = client.post("/v1/batches", json={"name": "other"}, headers=headers)
    assert other.status_code == 422 and other.get_json()["code"] == "idempotency_key_reused"
    # Keys belong to their owner: another submitter's same key is another request.
    theirs = client.post(
        "/v1/batches", json={"name": "nightly"}, headers={**keys["submitter2"], "Idempotency-Key": "create-nightly"}
    )
    assert theirs.status_code == 201 and theirs.get_json()["id"] != first.get_json()["id"]
    # A refused request is not remembered: fixed, the same key then works.
    bad = client.post("/v1/batches", json={"name": ""}, headers={**keys["submitter"], "Idempotency-Key": "k2"})
    good = client.post("/v1/batches", json={"name": "fixed"}, headers={**keys["submitter"], "Idempotency-Key": "k2"})
    assert bad.status_code == 400 and good.status_code == 201

    batch_id = first.get_json()["id"]
    data = wav_bytes(voiced(1.0))
    one = add_files(client, keys["submitter"], batch_id, [(data, "a.wav")], key="file-a")
    two = add_files(client, keys["submitter"], batch_id, [(data, "a.wav")], key="file-a")
    assert one.get_json() == two.get_json() and two.headers["Idempotent-Replayed"] == "true"
    changed = add_files(client, keys["submitter"], batch_id, [(wav_bytes(voiced(1.1)), "a.wav")], key="file-a")
    assert changed.status_code == 422
    assert batch_jobs(sessions, batch_id) == 1


def test_fifty_concurrent_repeats_of_one_key_make_one_job(api_server, keys, sessions):
    data = wav_bytes(voiced(1.0, seed=7))
    http = urllib3.PoolManager(maxsize=50)

    def post(_: int) -> tuple[int, str]:
        body, content_type = urllib3.encode_multipart_formdata({"file": ("call.wav", data), "external_id": "c-50"})
        response = http.request(
            "POST",
            f"{api_server}/v1/jobs",
            body=body,
            headers={**keys["submitter"], "Content-Type": content_type, "Idempotency-Key": "one-call"},
        )
        return response.status, json.loads(response.data)["id"]

    with ThreadPoolExecutor(50) as pool:
        answers = list(pool.map(post, range(50)))
    assert {status for status, _ in answers} == {202}
    assert len({job_id for _, job_id in answers}) == 1
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Job).where(Job.external_id == "c-50")) == 1


def test_backlog_past_the_limit_gets_429_until_it_clears(settings, database, redis_client, store, keys, sessions):
    from api import create_app

    # 36 s of queued audio is the limit here.
    small = create_app(settings.override({"EMOQ_MAX_BACKLOG_AUDIO_HOURS": 0.01})).test_client()
    backlog = make_job(sessions, store, b"x", key_id(sessions, "submitter"), duration_seconds=40.0)
    batch = small.post("/v1/batches", json={"name": "busy"}, headers=keys["submitter"]).get_json()
    for response in (
        small.post("/v1/jobs", data={"file": (io.BytesIO(wav_bytes(voiced(1.0))), "a.wav")}, headers=keys["submitter"]),
        small.post(
            f"/v1/batches/{batch['id']}/recordings",
            json={"urls": ["http://example.com/a.wav"]},
            headers=keys["submitter"],
        ),
    ):
        assert response.status_code == 429 and response.get_json()["code"] == "backlog_full"
        assert response.headers["Retry-After"] == str(settings.batches.backlog_retry_after_seconds)
    with transaction(sessions) as session:
        session.get(Job, backlog.id).succeed(duration_seconds=40.0, sample_rate=16000, channels=1)
    cleared = small.post(
        "/v1/jobs", data={"file": (io.BytesIO(wav_bytes(voiced(1.0))), "a.wav")}, headers=keys["submitter"]
    )
    assert cleared.status_code == 202


def test_imports_not_fetched_yet_count_towards_the_backlog(settings, database, redis_client, store, keys, sessions):
    from api import create_app

    # 36 s of queued audio is the limit; one queued import of unknown duration counts 300 s.
    small = create_app(settings.override({"EMOQ_MAX_BACKLOG_AUDIO_HOURS": 0.01})).test_client()
    make_job(sessions, store, b"", key_id(sessions, "submitter"), source="http://example.com/a.wav")
    upload = {"file": (io.BytesIO(wav_bytes(voiced(1.0))), "a.wav")}
    refused = small.post("/v1/jobs", data=upload, headers=keys["submitter"])
    assert refused.status_code == 429 and refused.get_json()["code"] == "backlog_full"
    generous = create_app(
        settings.override({"EMOQ_MAX_BACKLOG_AUDIO_HOURS": 0.01, "EMOQ_UNFETCHED_IMPORT_SECONDS": 30})
    ).test_client()
    upload = {"file": (io.BytesIO(wav_bytes(voiced(1.0))), "a.wav")}
    assert generous.post("/v1/jobs", data=upload, headers=keys["submitter"]).status_code == 202


def test_strict_parameters(client, keys):
    data = wav_bytes(voiced(1.0))
    two = client.post(
        "/v1/jobs",
        data={"file": [(io.BytesIO(data), "a.wav"), (io.BytesIO(data), "b.wav")]},
        headers=keys["submitter"],
        content_type="multipart/form-data",
    )
    assert two.status_code == 400 and two.get_json()["code"] == "multiple_files"
    assert "/v1/batches" in two.get_json()["detail"]
    typo = client.post(
        "/v1/jobs",
        data={"file": (io.BytesIO(data), "a.wav"), "granularty": "frame", "chanels": "a"},
        headers=keys["submitter"],
        content_type="multipart/form-data",
    )
    assert typo.status_code == 400 and typo.get_json()["code"] == "unknown_parameters"
    assert typo.get_json()["parameters"] == ["chanels", "granularty"]
    assert typo.mimetype == "application/problem+json"
    query = client.get("/v1/jobs?stauts=queued", headers=keys["submitter"])
    assert query.status_code == 400 and query.get_json()["parameters"] == ["stauts"]
    batch = client.post("/v1/batches", json={"name": "x", "colour": "red"}, headers=keys["submitter"])
    assert batch.status_code == 400 and batch.get_json()["parameters"] == ["colour"]
    results = client.get(f"/v1/batches/{uuid.uuid4()}/results?format=xls", headers=keys["submitter"])
    assert results.get_json()["code"] == "invalid_format"


def test_batch_progress_counts_and_eta(client, keys, sessions, store):
    batch = create(client, keys["submitter"])
    batch_id = uuid.UUID(batch["id"])
    submitter = key_id(sessions, "submitter")
    now = datetime.now(UTC)
    for status, seconds in (("succeeded", 30.0), ("succeeded", 30.0), ("queued", 60.0), ("running", 60.0)):
        job = make_job(sessions, store, b"x", submitter, batch_id=batch_id, status=status, duration_seconds=seconds)
        with transaction(sessions) as session:
            row = session.get(Job, job.id)
            row.started_at = now - timedelta(seconds=60)
            if status == "succeeded":
                row.finished_at = now
    body = client.get(f"/v1/batches/{batch['id']}", headers=keys["submitter"]).get_json()
    assert body["jobs"] == {"queued": 1, "running": 1, "succeeded": 2, "failed": 0, "total": 4, "cancelled": 0}
    assert body["audio_seconds"] == {"queued": 60.0, "running": 60.0, "done": 60.0}
    # 60 audio-s done in about 60 s: about 1 audio-s/s, so about 120 s to go.
    assert body["throughput_audio_seconds_per_second"] == pytest.approx(1.0, rel=0.2)
    assert body["eta_seconds"] == pytest.approx(120, rel=0.2)
    # Two imports not fetched yet count as the batch's average recording (45 s) each.
    for _ in range(2):
        make_job(sessions, store, b"", submitter, batch_id=batch_id, source=f"http://example.com/{uuid.uuid4()}.wav")
    body = client.get(f"/v1/batches/{batch['id']}", headers=keys["submitter"]).get_json()
    assert body["audio_seconds"]["queued"] == 60.0  # what is known
    assert body["eta_seconds"] == pytest.approx(210, rel=0.2)


def test_per_job_events_give_each_job_the_batch_callback(client, keys):
    batch = create(client, keys["submitter"], callback_url="http://127.0.0.1:9/hook", per_job_events=True)
    quiet = client.post(
        "/v1/batches", json={"name": "quiet", "callback_url": "http://127.0.0.1:9/hook"}, headers=keys["submitter"]
    ).get_json()
    loud_job = add_files(client, keys["submitter"], batch["id"], [(wav_bytes(voiced(1.0)), "a.wav")]).get_json()
    quiet_job = add_files(client, keys["submitter"], quiet["id"], [(wav_bytes(voiced(1.0)), "a.wav")]).get_json()
    loud = client.get(f"/v1/jobs/{loud_job['items'][0]['job_id']}", headers=keys["submitter"]).get_json()
    assert loud["callback"]["url"] == "http://127.0.0.1:9/hook" and loud["batch_id"] == batch["id"]
    assert (
        client.get(f"/v1/jobs/{quiet_job['items'][0]['job_id']}", headers=keys["submitter"]).get_json()["callback"]
        is None
    )


def test_the_sweep_finishes_idle_batches_and_forgets_old_keys(client, keys, sessions, store, settings):
    from broker import Publisher, create_celery
    from domain.idempotency import claim
    from models import IdempotencyKey
    from worker.batch_events import finish_idle_batches
    from worker.sweep import purge_idempotency_keys

    batch = create(client, keys["submitter"])
    make_job(sessions, store, b"x", key_id(sessions, "submitter"), batch_id=uuid.UUID(batch["id"]), status="failed")
    with transaction(sessions) as session:
        session.get(Batch, uuid.UUID(batch["id"])).status = "closed"  # as if its finishing step had failed
    publisher = Publisher(create_celery(settings.queue), sessions)
    assert finish_idle_batches(sessions, publisher) == 1
    assert finish_idle_batches(sessions, publisher) == 0
    assert client.get(f"/v1/batches/{batch['id']}", headers=keys["submitter"]).get_json()["status"] == "finished"

    owner = key_id(sessions, "submitter")
    with transaction(sessions) as session:
        old = datetime.now(UTC) - timedelta(hours=settings.batches.idempotency_ttl_hours + 1)
        claim(session, owner, "old", "POST /v1/batches", "f" * 64, old, timedelta(hours=24))
        claim(session, owner, "new", "POST /v1/batches", "f" * 64, datetime.now(UTC), timedelta(hours=24))
    assert purge_idempotency_keys(sessions, settings.batches) == 1
    with sessions() as session:
        assert session.scalars(select(IdempotencyKey.key)).all() == ["new"]


def test_closing_a_batch_whose_jobs_all_ended_finishes_it_at_once(client, keys, sessions, store):
    batch = create(client, keys["submitter"])
    make_job(sessions, store, b"x", key_id(sessions, "submitter"), batch_id=uuid.UUID(batch["id"]), status="succeeded")
    closed = client.post(f"/v1/batches/{batch['id']}/close", headers=keys["submitter"]).get_json()
    assert closed["status"] == "finished" and closed["finished_at"] is not None
    empty = create(client, keys["submitter"], name="empty")
    assert client.post(f"/v1/batches/{empty['id']}/close", headers=keys["submitter"]).get_json()["status"] == "finished"
    assert client.post(f"/v1/batches/{empty['id']}/close", headers=keys["submitter2"]).status_code == 404
    assert client.post(f"/v1/batches/{empty['id']}/cancel", headers=keys["reviewer"]).status_code == 403
