"""Webhooks reach a real HTTP endpoint on loopback, signed, after the job finishes."""

from __future__ import annotations

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from models import Job
from models.db import transaction
from tests.conftest import submit, voiced, wait_for_job, wait_until, wav_bytes
from tests.factories import key_id, make_job
from worker.webhooks import WebhookFailed, deliver, signature


@pytest.fixture
def receiver():
    """An HTTP endpoint that records POSTs; answers 503 while ``failing`` is set."""
    received: list[dict] = []
    state = {"failing": False}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if state["failing"]:
                self.send_response(503)
            else:
                received.append({"headers": dict(self.headers), "body": body})
                self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/hooks/emoq", received, state
    server.shutdown()


def test_finished_job_is_announced_to_its_callback_url(client, keys, worker, receiver, sessions):
    url, received, _ = receiver
    response = submit(client, keys["submitter"], wav_bytes(voiced(1.5)), callback_url=url, external_id="c-7")
    job_id = response.get_json()["id"]
    wait_for_job(client, keys["submitter"], job_id)
    wait_until(lambda: received, 60, "the webhook")
    event = json.loads(received[0]["body"])
    assert event == {
        "event": "job.finished",
        "id": job_id,
        "status": "succeeded",
        "error": None,
        "external_id": "c-7",
        "finished_at": event["finished_at"],
        "links": {"job": f"/v1/jobs/{job_id}"},
    }
    assert received[0]["headers"]["X-Emoq-Event"] == "job.finished"
    job = wait_until(
        lambda: (
            (b := client.get(f"/v1/jobs/{job_id}", headers=keys["submitter"]).get_json())["callback"]["delivered_at"]
            and b
        ),
        30,
        "delivery to be recorded",
    )
    assert job["callback"]["url"] == url and job["callback"]["error"] is None


def test_delivery_is_signed_recorded_and_retried_on_failure(settings, sessions, store, keys, receiver):
    url, received, state = receiver
    job = make_job(sessions, store, b"x", key_id(sessions, "submitter"), status="failed", callback_url=url)
    with transaction(sessions) as session:
        session.get(Job, job.id).error_code = "undecodable_audio"
    signed = settings.webhooks.model_copy(update={"secret": "s3cret"})
    state["failing"] = True
    with pytest.raises(WebhookFailed, match="503"):
        deliver(sessions, signed, job.id)
    with sessions() as session:
        assert session.get(Job, job.id).callback_error == "HTTP 503"
    state["failing"] = False
    assert deliver(sessions, signed, job.id) is True
    assert deliver(sessions, signed, job.id) is False  # delivered once; nothing more to send
    (hit,) = received
    assert hit["headers"]["X-Emoq-Signature"] == signature(hit["body"], "s3cret")
    assert json.loads(hit["body"])["error"]["code"] == "undecodable_audio"


def test_unreachable_endpoint_is_a_retryable_failure(settings, sessions, store, keys):
    job = make_job(
        sessions,
        store,
        b"x",
        key_id(sessions, "submitter"),
        status="succeeded",
        callback_url="http://127.0.0.1:9/nothing-listens-here",
    )
    with pytest.raises(WebhookFailed):
        deliver(sessions, settings.webhooks, job.id)


def test_private_addresses_are_refused_unless_allowed(settings, sessions, store, keys, receiver):
    from worker.webhooks import WebhookRefused

    url, received, _ = receiver
    job = make_job(sessions, store, b"x", key_id(sessions, "submitter"), status="succeeded", callback_url=url)
    with pytest.raises(WebhookRefused):
        deliver(sessions, settings.webhooks.model_copy(update={"allow_private": False}), job.id)
    assert received == []
    with sessions() as session:
        assert session.get(Job, job.id).callback_error == "refused: 127.0.0.1 is a private address"


def test_bad_callback_url_is_refused(client, keys):
    response = submit(client, keys["submitter"], wav_bytes(voiced(1.0)), callback_url="ftp://example/x")
    assert response.status_code == 400 and response.get_json()["code"] == "invalid_callback_url"


def test_no_callback_for_unfinished_jobs(settings, sessions, store, keys):
    job = make_job(sessions, store, b"x", key_id(sessions, "submitter"), callback_url="http://127.0.0.1:9/x")
    assert deliver(sessions, settings.webhooks, job.id) is False
    assert deliver(sessions, settings.webhooks, uuid.uuid4()) is False
