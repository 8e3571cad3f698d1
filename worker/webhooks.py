"""Webhooks: tell the submitter's endpoint when a job has finished
(``job.finished``) and when a person has given a segment its final answer
(``review.resolved``: one reviewer, two who agreed, an adjudication or a
correction).

The body is small (ids, status or labels, external_id, links); the
receiver fetches the result with its API key. With ``EMOQ_WEBHOOK_SECRET`` set,
``X-Emoq-Signature: sha256=<hex HMAC of the body>`` lets it check the sender.
Delivery is at-least-once: Celery retries with backoff until a 2xx answer.
A job records its ``job.finished`` delivery; ``review.resolved`` deliveries
are only logged (one job may have many)."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import urllib3
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from config.settings import WebhookSettings
from models import ApiKey, Batch, Job, JobStatus, ReviewDecision, ReviewItem, ReviewStatus
from models.db import transaction
from worker.outbound import AddressRefused, send

EVENT = "job.finished"
REVIEW_EVENT = "review.resolved"
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
    return post_recorded(url, EVENT, body, webhooks, lambda error: _record(sessions, job_id, error=error))


def post_recorded(
    url: str, event: str, body: bytes, webhooks: WebhookSettings, record: Callable[[str | None], None]
) -> bool:
    """POST once and record the outcome on its owner (a job, a batch); raises
    WebhookRefused, or WebhookFailed for a retry."""
    try:
        error = post(url, event, body, webhooks)
    except WebhookRefused as exc:
        record(f"refused: {exc} is a private address")
        raise
    record(error)
    if error:
        raise WebhookFailed(error)
    return True


def post(url: str, event: str, body: bytes, webhooks: WebhookSettings) -> str | None:
    """POST one signed event; the error, or None for a 2xx answer. Raises
    WebhookRefused (nothing sent) when the URL resolves to a private address."""
    headers = {"Content-Type": "application/json", "User-Agent": "emoq-webhook/1", "X-Emoq-Event": event}
    if webhooks.secret:
        headers["X-Emoq-Signature"] = signature(body, webhooks.secret)
    try:
        response = send(
            "POST",
            url,
            allow_private=webhooks.allow_private,
            timeout=webhooks.timeout_seconds,
            body=body,
            headers=headers,
        )
    except AddressRefused as exc:
        raise WebhookRefused(exc.address) from None
    except urllib3.exceptions.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None if 200 <= response.status < 300 else f"HTTP {response.status}"


def review_event_body(job: Job, item: ReviewItem, decision: ReviewDecision, reviewer: str) -> dict:
    """The segment's final human answer as it stands, and the decision that made it so."""
    return {
        "event": REVIEW_EVENT,
        "id": str(decision.id),
        "job_id": str(job.id),
        "external_id": job.external_id,
        "review_item_id": str(item.id),
        "segment": {
            "index": item.segment_index,
            "start": item.start_seconds,
            "end": item.end_seconds,
            "role": item.channel_role,
        },
        "labels": item.final_labels,
        "model_label": item.model_label,
        "decision": decision.kind,  # review (one reviewer or two who agreed), adjudication or correction
        "reviewer": reviewer,
        "resolved_at": item.resolved_at and item.resolved_at.isoformat(),
        "links": {"job": f"/v1/jobs/{job.id}", "history": f"/v1/review-items/{item.id}/history"},
    }


def deliver_review(
    sessions: sessionmaker[Session], webhooks: WebhookSettings, item_id: uuid.UUID, decision_id: uuid.UUID
) -> bool:
    """POST ``review.resolved`` once to the job's callback, or its batch's; raises WebhookFailed for a retry.
    False when there is nothing to say: no callback, or the item was reopened meanwhile
    (its next final answer is announced then)."""
    with sessions() as session:
        row = session.execute(
            select(ReviewItem, ReviewDecision, Job, ApiKey.name, Batch.callback_url)
            .join(ReviewDecision, ReviewDecision.item_id == ReviewItem.id)
            .join(Job, Job.id == ReviewItem.job_id)
            .outerjoin(Batch, Batch.id == Job.batch_id)
            .join(ApiKey, ApiKey.id == ReviewDecision.reviewer_id)
            .where(ReviewItem.id == item_id, ReviewDecision.id == decision_id)
        ).one_or_none()
        if row is None:
            return False
        item, decision, job, reviewer, batch_callback = row
        # A batch's jobs report to the batch's URL; people's answers are few, so each is sent.
        url = job.callback_url or batch_callback
        if not url or item.status != ReviewStatus.resolved.value:
            return False
        body = json.dumps(review_event_body(job, item, decision, reviewer)).encode()
    error = post(url, REVIEW_EVENT, body, webhooks)
    if error:
        raise WebhookFailed(error)
    return True


def _record(sessions: sessionmaker[Session], job_id: uuid.UUID, *, error: str | None) -> None:
    with transaction(sessions) as session:
        job = session.get(Job, job_id)
        if job is None:  # erased meanwhile
            return
        if error is None:
            job.callback_delivered_at = datetime.now(UTC)
        job.callback_error = error and error[:500]
