"""Webhooks: tell the submitter's endpoint when a job has finished.

The body is small (id, status, error, external_id, a link to the result); the
receiver fetches the result with its API key. With ``EMOQ_WEBHOOK_SECRET`` set,
``X-Emoq-Signature: sha256=<hex HMAC of the body>`` lets it check the sender.
Delivery is at-least-once: Celery retries with backoff until a 2xx answer."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime

import urllib3
from sqlalchemy.orm import Session, sessionmaker

from config.settings import WebhookSettings
from domain.network import private_address
from models import Job, JobStatus
from models.db import transaction

EVENT = "job.finished"
_FINISHED = (JobStatus.succeeded.value, JobStatus.failed.value)


class WebhookFailed(Exception):
    """Worth retrying: the endpoint was down or answered non-2xx."""


class WebhookRefused(Exception):
    """Never sent: the URL points into a private network."""


def signature(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def event_body(job: Job) -> dict:
    return {
        "event": EVENT,
        "id": str(job.id),
        "status": job.status,
        "error": {"code": job.error_code, "message": job.error_message} if job.status == "failed" else None,
        "external_id": job.external_id,
        "finished_at": job.finished_at and job.finished_at.isoformat(),
        "links": {"job": f"/v1/jobs/{job.id}"},
    }


def pending_callback(sessions: sessionmaker[Session], job_id: uuid.UUID) -> bool:
    with sessions() as session:
        job = session.get(Job, job_id)
        return bool(job and job.callback_url and job.status in _FINISHED and job.callback_delivered_at is None)


def deliver(sessions: sessionmaker[Session], webhooks: WebhookSettings, job_id: uuid.UUID) -> bool:
    """POST the event once; raises WebhookFailed (recorded on the job) for a retry."""
    with sessions() as session:
        job = session.get(Job, job_id)
        if not job or not job.callback_url or job.status not in _FINISHED or job.callback_delivered_at:
            return False
        url, body = job.callback_url, json.dumps(event_body(job)).encode()
    try:
        error = post(url, EVENT, body, webhooks)
    except WebhookRefused as exc:
        _record(sessions, job_id, error=f"refused: {exc} is a private address")
        raise
    _record(sessions, job_id, error=error)
    if error:
        raise WebhookFailed(error)
    return True


def post(url: str, event: str, body: bytes, webhooks: WebhookSettings) -> str | None:
    """POST one signed event; the error, or None for a 2xx answer. Raises
    WebhookRefused (nothing sent) when the URL resolves to a private address."""
    if not webhooks.allow_private and (address := private_address(url)):
        raise WebhookRefused(address)
    headers = {"Content-Type": "application/json", "User-Agent": "emoq-webhook/1", "X-Emoq-Event": event}
    if webhooks.secret:
        headers["X-Emoq-Signature"] = signature(body, webhooks.secret)
    try:
        response = urllib3.request(
            "POST",
            url,
            body=body,
            headers=headers,
            timeout=webhooks.timeout_seconds,
            retries=False,
            redirect=False,
        )
    except urllib3.exceptions.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None if 200 <= response.status < 300 else f"HTTP {response.status}"


def _record(sessions: sessionmaker[Session], job_id: uuid.UUID, *, error: str | None) -> None:
    with transaction(sessions) as session:
        job = session.get(Job, job_id)
        if job is None:  # erased meanwhile
            return
        if error is None:
            job.callback_delivered_at = datetime.now(UTC)
        job.callback_error = error and error[:500]
