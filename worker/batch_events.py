"""A batch's end: finished exactly once (``domain.batches.try_finish``) when
its last job ends after it was closed, then announced with one signed
``batch.finished`` webhook — not one per file (unless the batch asked for
per-job events too, which go out as each job's own ``job.finished``)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

from sqlalchemy import exists, select
from sqlalchemy.orm import Session, sessionmaker

from broker import Publisher
from config.settings import WebhookSettings
from domain.batches import progress, try_finish
from models import Batch, BatchStatus, Job, JobStatus
from models.db import transaction
from worker.webhooks import post_recorded

EVENT = "batch.finished"


def finish_batch_of(sessions: sessionmaker[Session], job_id: uuid.UUID) -> uuid.UUID | None:
    """The job's batch, when this job's end finished it and it has a webhook to send."""
    with transaction(sessions) as session:
        batch_id = session.scalar(select(Job.batch_id).where(Job.id == job_id))
        if batch_id is None or not try_finish(session, batch_id):
            return None
        return batch_id if session.scalar(select(Batch.callback_url).where(Batch.id == batch_id)) else None


def finish_idle_batches(sessions: sessionmaker[Session], publisher: Publisher) -> int:
    """For the sweep: closed batches whose last job ended without finishing them
    (the finishing step failed, or the sweep itself failed the job)."""
    unfinished = exists().where(
        Job.batch_id == Batch.id, Job.status.in_((JobStatus.queued.value, JobStatus.running.value))
    )
    with sessions() as session:
        idle = session.scalars(
            select(Batch.id)
            .where(
                Batch.status.in_((BatchStatus.closed.value, BatchStatus.cancelled.value)),
                Batch.finished_at.is_(None),
                ~unfinished,
            )
            .limit(500)
        ).all()
    finished = 0
    for batch_id in idle:
        with transaction(sessions) as session:
            if not try_finish(session, batch_id):
                continue
            announce = session.scalar(select(Batch.callback_url).where(Batch.id == batch_id)) is not None
        finished += 1
        if announce:
            publisher.batch_finished(batch_id)
    return finished


def event_body(session: Session, batch: Batch) -> dict:
    done = progress(session, batch.id, batch.finished_at or datetime.now(UTC))
    return {
        "event": EVENT,
        "id": str(batch.id),
        "name": batch.name,
        "status": batch.status,
        "jobs": done.jobs,
        "audio_seconds": done.audio_seconds["done"],
        "metadata": batch.meta,
        "created_at": batch.created_at.isoformat(),
        "closed_at": batch.closed_at and batch.closed_at.isoformat(),
        "finished_at": batch.finished_at and batch.finished_at.isoformat(),
        "links": {"batch": f"/v1/batches/{batch.id}", "results": f"/v1/batches/{batch.id}/results"},
    }


def deliver_batch(sessions: sessionmaker[Session], webhooks: WebhookSettings, batch_id: uuid.UUID) -> bool:
    """POST the event once; raises WebhookFailed (recorded on the batch) for a retry."""
    with sessions() as session:
        batch = session.get(Batch, batch_id)
        if batch is None or not batch.callback_url or batch.finished_at is None or batch.callback_delivered_at:
            return False
        url, body = batch.callback_url, json.dumps(event_body(session, batch)).encode()
    return post_recorded(url, EVENT, body, webhooks, lambda error: _record(sessions, batch_id, error=error))


def _record(sessions: sessionmaker[Session], batch_id: uuid.UUID, *, error: str | None) -> None:
    with transaction(sessions) as session:
        batch = session.get(Batch, batch_id)
        if batch is None:
            return
        if error is None:
            batch.callback_delivered_at = datetime.now(UTC)
        batch.callback_error = error and error[:500]
