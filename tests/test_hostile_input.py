"""The hostile-input battery: malformed requests and recordings against the
real app (PostgreSQL, Redis, S3). None may get a 5xx; every refusal is
problem+json with the specific code a client can act on. Recordings that pass
the upload checks but can't be analysed fail as coded jobs in a real worker,
which stays alive for the next job."""

from __future__ import annotations

import base64
import struct
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from sqlalchemy import func, select

from broker import Publisher, create_celery
from models import Job
from tests.conftest import submit, voiced, wait_for_job, wav_bytes
from tests.factories import key_id, make_job

GENERIC = {"internal_error", "bad_request", "http_error"}
BOUNDARY = "hostile-boundary"
JOB = "/v1/jobs/00000000-0000-4000-8000-000000000000"
ITEM = "/v1/review-items/00000000-0000-4000-8000-000000000000"


def multipart(*parts: tuple[bytes, bytes], boundary: str = BOUNDARY) -> bytes:
    """Raw multipart bytes (the test client would re-encode what we need broken)."""
    body = b""
    for disposition, data in parts:
        body += f"--{boundary}\r\n".encode() + b"Content-Disposition: form-data; " + disposition + b"\r\n\r\n"
        body += data + b"\r\n"
    return body + f"--{boundary}--\r\n".encode()


def file_part(data: bytes, filename: bytes = b"call.wav") -> tuple[bytes, bytes]:
    return b'name="file"; filename="' + filename + b'"', data


def field_part(name: str, value: bytes) -> tuple[bytes, bytes]:
    return f'name="{name}"'.encode(), value


def good_wav() -> bytes:
    return wav_bytes(voiced(1.0))


def nine_channel_wav() -> bytes:
    return wav_bytes(np.zeros((1600, 9), np.float32))


@dataclass(frozen=True)
class Case:
    method: str
    path: str
    status: int
    code: str | None  # None: accepted (2xx), harmlessly
    key: str | None = "submitter"
    body: Callable[[], bytes] | None = None
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    json: Any = None


def upload(*parts: tuple[bytes, bytes], status: int, code: str) -> Case:
    return Case(
        "POST",
        "/v1/jobs",
        status,
        code,
        body=lambda: multipart(*parts),
        content_type=f"multipart/form-data; boundary={BOUNDARY}",
    )


def with_file(*fields: tuple[bytes, bytes], status: int = 400, code: str, filename: bytes = b"call.wav") -> Case:
    """A good recording with hostile fields (built lazily: the audio is made per case)."""
    return Case(
        "POST",
        "/v1/jobs",
        status,
        code,
        body=lambda: multipart(file_part(good_wav(), filename), *fields),
        content_type=f"multipart/form-data; boundary={BOUNDARY}",
    )


def cursor(text: bytes) -> str:
    return base64.urlsafe_b64encode(text).decode()


def wav_header_only(channels: int, rate: int, bits: int) -> bytes:
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * channels * bits // 8, channels * bits // 8, bits)
    return b"RIFF" + struct.pack("<I", 36) + b"WAVEfmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", 0)


CASES: dict[str, Case] = {
    # --- multipart edge cases and recordings refused at the door
    "no-file-field": upload(field_part("granularity", b"frame"), status=400, code="file_missing"),
    # issue 9: an unknown field is named, whatever it carries
    "file-under-another-name": upload(
        (b'name="audio"; filename="a.wav"', b"RIFF"), status=400, code="unknown_parameters"
    ),
    "empty-file": upload(file_part(b""), status=400, code="empty_upload"),
    "text-file": upload(file_part(b"hello,world\n" * 50), status=415, code="not_audio"),
    "png-file": upload(file_part(b"\x89PNG\r\n\x1a\n" + bytes(100)), status=415, code="not_audio"),
    "one-sample-wav": upload(file_part(wav_bytes(np.array([0.5], np.float32))), status=422, code="audio_too_short"),
    "ten-ms-wav": upload(file_part(wav_bytes(voiced(0.01))), status=422, code="audio_too_short"),
    "ten-ms-8khz-stereo-wav": upload(
        file_part(wav_bytes(np.zeros((80, 2), np.float32), rate=8000)), status=422, code="audio_too_short"
    ),
    "header-only-wav": upload(file_part(wav_bytes(voiced(1.0))[:44]), status=400, code="truncated_audio"),
    "zero-frame-wav": upload(file_part(wav_header_only(1, 16000, 16)), status=400, code="empty_audio"),
    "zero-rate-wav": upload(file_part(wav_header_only(1, 0, 16) + bytes(64)), status=400, code="undecodable_audio"),
    "nine-channel-wav": upload(file_part(nine_channel_wav()), status=400, code="too_many_channels"),
    "no-boundary": Case(
        "POST", "/v1/jobs", 400, "invalid_multipart", body=lambda: b"--x\r\n\r\n", content_type="multipart/form-data"
    ),
    "part-without-disposition": Case(
        "POST",
        "/v1/jobs",
        400,
        "invalid_multipart",
        body=lambda: f"--{BOUNDARY}\r\nX-Nothing: 1\r\n\r\nabc\r\n--{BOUNDARY}--\r\n".encode(),
        content_type=f"multipart/form-data; boundary={BOUNDARY}",
    ),
    "json-instead-of-multipart": Case(
        "POST", "/v1/jobs", 400, "file_missing", body=lambda: b'{"file": "x"}', content_type="application/json"
    ),
    "too-many-form-fields": upload(
        *[field_part(f"f{i}", b"x") for i in range(3000)], status=413, code="too_many_form_fields"
    ),
    "huge-text-field": upload(field_part("external_id", b"x" * 1_000_000), status=413, code="form_field_too_large"),
    # --- NUL and non-UTF-8 bytes in every text field of an upload
    "filename-nul": with_file(code="invalid_filename", filename=b"a\x00b.wav"),
    "filename-latin1": with_file(code="invalid_filename", filename=b"caf\xe9.wav"),
    "filename-invalid-utf8": with_file(code="invalid_filename", filename=b"\xff\xfe.wav"),
    "filename-escape-sequence": with_file(code="invalid_filename", filename=b"\x1b[31mred.wav"),
    "external-id-nul": with_file(field_part("external_id", b"a\x00b"), code="invalid_external_id"),
    "external-id-invalid-utf8": with_file(field_part("external_id", b"a\xffb"), code="invalid_external_id"),
    "external-id-newline": with_file(field_part("external_id", b"a\nb"), code="invalid_external_id"),
    "external-id-too-long": with_file(field_part("external_id", b"x" * 201), code="invalid_external_id"),
    "domain-nul": with_file(field_part("domain", b"med\x00"), code="invalid_domain"),
    "domain-invalid-utf8": with_file(field_part("domain", b"\xc3\x28"), code="invalid_domain"),
    "channels-nul": with_file(field_part("channels", b"agent\x00"), code="invalid_channels"),
    "channels-too-many": with_file(
        field_part("channels", b",".join(b"r%d" % i for i in range(50))), code="invalid_channels"
    ),
    "granularity-nul": with_file(field_part("granularity", b"frame\x00"), code="invalid_granularity"),
    "callback-nul": with_file(field_part("callback_url", b"https://example.com/\x00"), code="invalid_callback_url"),
    "callback-invalid-utf8": with_file(
        field_part("callback_url", b"https://ex\xffample.com/"), code="invalid_callback_url"
    ),
    # --- callback URLs: wrong schemes, private and metadata addresses
    "callback-javascript": with_file(field_part("callback_url", b"javascript:alert(1)"), code="invalid_callback_url"),
    "callback-file": with_file(field_part("callback_url", b"file:///etc/passwd"), code="invalid_callback_url"),
    "callback-gopher": with_file(field_part("callback_url", b"gopher://example.com/"), code="invalid_callback_url"),
    "callback-no-host": with_file(field_part("callback_url", b"http:///path"), code="invalid_callback_url"),
    "callback-too-long": with_file(
        field_part("callback_url", b"https://example.com/" + b"a" * 2000), code="invalid_callback_url"
    ),
    "callback-aws-metadata": with_file(
        field_part("callback_url", b"http://169.254.169.254/latest/meta-data/"), status=422, code="callback_url_private"
    ),
    "callback-gcp-metadata": with_file(
        field_part("callback_url", b"http://metadata.google.internal/computeMetadata/v1/"),
        status=422,
        code="callback_url_private",
    ),
    "callback-loopback": with_file(
        field_part("callback_url", b"http://127.0.0.1:6379/"), status=422, code="callback_url_private"
    ),
    "callback-localhost": with_file(
        field_part("callback_url", b"http://localhost:5432/"), status=422, code="callback_url_private"
    ),
    "callback-ipv6-loopback": with_file(
        field_part("callback_url", b"http://[::1]:8333/"), status=422, code="callback_url_private"
    ),
    "callback-ipv4-mapped-metadata": with_file(
        field_part("callback_url", b"http://[::ffff:169.254.169.254]/"), status=422, code="callback_url_private"
    ),
    "callback-private-10": with_file(
        field_part("callback_url", b"https://10.0.0.5/hook"), status=422, code="callback_url_private"
    ),
    "callback-private-192": with_file(
        field_part("callback_url", b"http://192.168.1.1/"), status=422, code="callback_url_private"
    ),
    "callback-integer-address": with_file(
        field_part("callback_url", b"http://2130706433/"), status=422, code="callback_url_private"
    ),
    "callback-unspecified": with_file(
        field_part("callback_url", b"http://0.0.0.0:7860/"), status=422, code="callback_url_private"
    ),
    # --- query strings: NUL, bad values, bad cursors, huge
    "list-external-id-nul": Case("GET", "/v1/jobs?external_id=a%00b", 400, "invalid_external_id"),
    "list-external-id-control": Case("GET", "/v1/jobs?external_id=a%07b", 400, "invalid_external_id"),
    "list-external-id-invalid-utf8": Case("GET", "/v1/jobs?external_id=%ff%fe", 200, None),
    "list-status-nul": Case("GET", "/v1/jobs?status=queued%00", 400, "invalid_status"),
    "list-limit-text": Case("GET", "/v1/jobs?limit=ten", 400, "invalid_limit"),
    "list-limit-zero": Case("GET", "/v1/jobs?limit=0", 400, "invalid_limit"),
    "list-limit-huge": Case("GET", "/v1/jobs?limit=" + "9" * 40, 400, "invalid_limit"),
    "list-limit-nul": Case("GET", "/v1/jobs?limit=5%00", 400, "invalid_limit"),
    "cursor-garbage": Case("GET", "/v1/jobs?cursor=nonsense", 400, "invalid_cursor"),
    "cursor-not-utf8": Case("GET", "/v1/jobs?cursor=" + cursor(b"\xff\xfe\xfd"), 400, "invalid_cursor"),
    "cursor-bad-uuid": Case("GET", "/v1/jobs?cursor=" + cursor(b"2026-01-01T00:00:00+00:00|x"), 400, "invalid_cursor"),
    "cursor-nul": Case("GET", "/v1/jobs?cursor=" + cursor(b"2026-01-01\x00|" + bytes(16)), 400, "invalid_cursor"),
    "cursor-huge": Case("GET", "/v1/jobs?cursor=" + "A" * 3000, 400, "invalid_cursor"),
    "cursor-far-future": Case(
        "GET", "/v1/jobs?cursor=" + cursor(f"9999-12-31T23:59:59+00:00|{uuid.uuid4()}".encode()), 200, None
    ),
    "export-format": Case("GET", "/v1/exports/results?format=xml", 400, "invalid_format"),
    "export-since-nul": Case("GET", "/v1/exports/results?since=2026%00", 400, "invalid_since"),
    "export-until-garbage": Case("GET", "/v1/exports/results?until=yesterday", 400, "invalid_until"),
    "review-status-nul": Case("GET", "/v1/review-items?status=pending%00", 400, "invalid_status", key="reviewer"),
    "huge-query-string": Case("GET", "/v1/jobs?external_id=" + "x" * 6000, 414, "uri_too_long"),
    "huge-path": Case("GET", "/v1/jobs/" + "x" * 6000, 414, "uri_too_long"),
    # --- bad ids
    "job-id-not-uuid": Case("GET", "/v1/jobs/not-a-uuid", 404, "not_found"),
    "job-id-unknown": Case("GET", JOB, 404, "job_not_found"),
    "job-id-nul": Case("GET", "/v1/jobs/%00", 404, "not_found"),
    "embedding-unknown": Case("GET", JOB + "/embedding", 404, "job_not_found"),
    "frames-huge-index": Case("GET", JOB + "/segments/" + "9" * 30 + "/frames", 404, "job_not_found"),
    "frames-negative-index": Case("GET", JOB + "/segments/-1/frames", 404, "not_found"),
    "review-audio-unknown": Case("GET", ITEM + "/audio", 404, "review_item_not_found", key="reviewer"),
    "review-claim-not-uuid": Case("POST", "/v1/review-items/../claim", 404, "not_found", key="reviewer"),
    "revoke-unknown-key": Case("DELETE", "/v1/api-keys/" + str(uuid.uuid4()), 404, "api_key_not_found", key="admin"),
    # --- absurd headers
    "no-authorization": Case("GET", "/v1/jobs", 401, "unauthorized", key=None),
    "basic-authorization": Case(
        "GET", "/v1/jobs", 401, "unauthorized", key=None, headers={"Authorization": "Basic YTpi"}
    ),
    "bearer-nothing": Case("GET", "/v1/jobs", 401, "unauthorized", key=None, headers={"Authorization": "Bearer    "}),
    "bearer-latin1": Case("GET", "/v1/jobs", 401, "unauthorized", key=None, headers={"Authorization": "Bearer clé"}),
    "bearer-control": Case(
        "GET", "/v1/jobs", 401, "unauthorized", key=None, headers={"Authorization": "Bearer \x01\x02"}
    ),
    "bearer-huge": Case(
        "GET", "/v1/jobs", 431, "header_too_large", key=None, headers={"Authorization": "Bearer " + "k" * 9000}
    ),
    "huge-custom-header": Case("GET", "/v1/jobs", 431, "header_too_large", headers={"X-Junk": "j" * 10_000}),
    "too-many-headers": Case("GET", "/v1/jobs", 431, "too_many_headers", headers={f"X-H{i}": "1" for i in range(150)}),
    "wrong-role": Case("POST", "/v1/api-keys", 403, "forbidden", json={"name": "x", "role": "admin"}),
    # --- wrong methods
    "put-jobs": Case("PUT", "/v1/jobs", 405, "method_not_allowed"),
    "patch-job": Case("PATCH", JOB, 405, "method_not_allowed"),
    "get-claim-next": Case("GET", "/v1/review-items/claim-next", 405, "method_not_allowed", key="reviewer"),
    "delete-api-keys": Case("DELETE", "/v1/api-keys", 405, "method_not_allowed", key="admin"),
    "post-healthz": Case("POST", "/healthz", 405, "method_not_allowed"),
    "unknown-route": Case("GET", "/v2/jobs", 404, "not_found"),
    # --- JSON bodies
    "key-name-nul": Case(
        "POST", "/v1/api-keys", 400, "invalid_name", key="admin", json={"name": "a\x00b", "role": "admin"}
    ),
    "key-name-surrogate": Case(
        "POST",
        "/v1/api-keys",
        400,
        "invalid_name",
        key="admin",
        body=lambda: b'{"name": "a\\udc80b", "role": "admin"}',
        content_type="application/json",
    ),
    "key-name-number": Case(
        "POST", "/v1/api-keys", 400, "invalid_name", key="admin", json={"name": 7, "role": "admin"}
    ),
    "key-name-blank": Case(
        "POST", "/v1/api-keys", 400, "invalid_name", key="admin", json={"name": "  ", "role": "admin"}
    ),
    "key-name-too-long": Case(
        "POST", "/v1/api-keys", 400, "invalid_name", key="admin", json={"name": "n" * 201, "role": "admin"}
    ),
    "key-role-nul": Case(
        "POST", "/v1/api-keys", 400, "invalid_role", key="admin", json={"name": "n", "role": "admin\x00"}
    ),
    "export-format-nul": Case("GET", "/v1/exports/results?format=csv%00", 400, "invalid_format"),
    "review-status-invalid-utf8": Case("GET", "/v1/review-items?status=%c3%28", 400, "invalid_status", key="reviewer"),
    "key-role-unknown": Case(
        "POST", "/v1/api-keys", 400, "invalid_role", key="admin", json={"name": "n", "role": "root"}
    ),
    "key-body-array": Case("POST", "/v1/api-keys", 400, "invalid_json", key="admin", json=[1, 2]),
    "key-body-broken": Case(
        "POST", "/v1/api-keys", 400, "invalid_json", key="admin", body=lambda: b"{", content_type="application/json"
    ),
    "resolve-note-nul": Case(
        "POST", ITEM + "/resolve", 400, "invalid_note", key="reviewer", json={"label": "angry", "note": "a\x00"}
    ),
    "resolve-note-number": Case(
        "POST", ITEM + "/resolve", 400, "invalid_note", key="reviewer", json={"label": "angry", "note": 5}
    ),
    "resolve-body-array": Case("POST", ITEM + "/resolve", 400, "invalid_json", key="reviewer", json=["angry"]),
    "resolve-label-nul": Case(
        "POST", ITEM + "/resolve", 400, "invalid_label", key="reviewer", json={"label": "angry\x00"}
    ),
    "resolve-unknown-item": Case(
        "POST", ITEM + "/resolve", 404, "review_item_not_found", key="reviewer", json={"label": "angry"}
    ),
}


@pytest.fixture
def strict_app(settings, database, redis_client, store):
    """The app as deployed: webhooks to private addresses refused."""
    from api import create_app

    return create_app(settings.override({"EMOQ_WEBHOOK_ALLOW_PRIVATE": False}))


def job_count(sessions) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(Job))


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_request_gets_a_coded_answer(name, strict_app, keys, sessions):
    case = CASES[name]
    headers = dict(keys[case.key]) if case.key else {}
    headers.update(case.headers)
    kwargs: dict[str, Any] = {"headers": headers}
    if case.body is not None:
        kwargs.update(data=case.body(), content_type=case.content_type)
    if case.json is not None:
        kwargs["json"] = case.json
    jobs_before = job_count(sessions)
    response = strict_app.test_client().open(case.path, method=case.method, **kwargs)
    assert response.status_code < 500, response.get_data(as_text=True)[:500]
    assert response.status_code == case.status, response.get_data(as_text=True)[:500]
    if case.code is None:
        return
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["code"] == case.code and body["status"] == case.status
    assert body["code"] not in GENERIC
    assert job_count(sessions) == jobs_before  # a refusal keeps nothing


def test_the_battery_is_large():
    assert len(CASES) >= 60


def publish(settings, sessions, job: Job) -> None:
    Publisher(create_celery(settings.queue), sessions).analysis(job.id, job.task_id)


def failed_code(client, headers, job_id) -> str:
    job = wait_for_job(client, headers, str(job_id))
    assert job["status"] == "failed"
    return job["error"]["code"]


def test_accepted_but_bad_recordings_fail_with_codes_and_the_worker_lives_on(
    client, keys, worker, settings, sessions, store
):
    submitter = keys["submitter"]
    # Passes the upload checks (a readable float WAV header), but holds no number.
    all_nan = submit(client, submitter, wav_bytes(np.full(16000, np.nan, np.float32), subtype="FLOAT"))
    assert all_nan.status_code == 202
    # An "MP3" whose header says nothing about its length: only decoding can tell.
    garbage_mp3 = submit(client, submitter, b"ID3\x03\x00\x00\x00\x00\x00\x00" + bytes(range(256)) * 8, "x.mp3")
    assert garbage_mp3.status_code == 202
    # Recordings the upload checks would refuse, stored directly (as an older API
    # or another client may have left them): the worker must refuse them too.
    owner = key_id(sessions, "submitter")
    one_sample = make_job(sessions, store, wav_bytes(np.array([0.5], np.float32)), owner)
    ten_ms = make_job(sessions, store, wav_bytes(voiced(0.01)), owner)
    for job in (one_sample, ten_ms):
        publish(settings, sessions, job)

    assert failed_code(client, submitter, all_nan.get_json()["id"]) == "undecodable_audio"
    assert failed_code(client, submitter, garbage_mp3.get_json()["id"]) == "undecodable_audio"
    assert failed_code(client, submitter, one_sample.id) == "audio_too_short"
    assert failed_code(client, submitter, ten_ms.id) == "audio_too_short"

    assert worker.poll() is None
    good = submit(client, submitter, wav_bytes(voiced(1.5)))
    assert wait_for_job(client, submitter, good.get_json()["id"])["status"] == "succeeded"


def test_an_accepted_recording_stores_its_filename_as_given(client, keys, sessions):
    response = submit(client, keys["submitter"], good_wav(), filename="appel-n°7 (copie).wav")
    assert response.status_code == 202
    with sessions() as session:
        assert session.get(Job, uuid.UUID(response.get_json()["id"])).original_filename == "appel-n°7 (copie).wav"


def test_a_long_filename_is_cut_not_refused(client, keys, sessions):
    response = submit(client, keys["submitter"], good_wav(), filename="x" * 2000 + ".wav")
    assert response.status_code == 202
    with sessions() as session:
        assert len(session.get(Job, uuid.UUID(response.get_json()["id"])).original_filename) == 500
