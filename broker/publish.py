"""The one place that publishes to the queue.

A job row names the one message allowed to run it (``Job.task_id``); the
row is committed before its message is published, and ``enqueued_at`` is
recorded after, so a failed publish leaves the row for the sweep."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from celery import Celery
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from broker.names import ANALYSE_TASK, BATCH_NOTIFY_TASK, NOTIFY_REVIEW_TASK, NOTIFY_TASK
from models import Job
from models.db import transaction

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Publisher:
    celery: Celery
    sessions: sessionmaker[Session]

    def analysis(self, job_id: uuid.UUID, task_id: uuid.UUID) -> bool:
        """Publish, then record when; False (logged) when the broker refused."""
        try:
            self.celery.send_task(ANALYSE_TASK, args=[str(job_id)], task_id=str(task_id))
        except Exception as exc:  # any broker error: the sweep will publish it later
            log.warning("could not enqueue job %s: %s", job_id, exc)
            return False
        try:
            with transaction(self.sessions) as session:
                job = session.get(Job, job_id)
                if job is not None and job.task_id == task_id:
                    job.enqueued_at = datetime.now(UTC)
        except SQLAlchemyError as exc:
            # Published all the same; at worst the sweep publishes it once more
            # and the worker skips the stale copy.
            log.warning("job %s published, but enqueued_at not recorded: %s", job_id, exc)
        return True

    def job_finished(self, job_id: uuid.UUID) -> None:
        """Queue the job's webhook delivery."""
        self.celery.send_task(NOTIFY_TASK, args=[str(job_id)])

    def batch_finished(self, batch_id: uuid.UUID) -> None:
        """Queue the batch's one ``batch.finished`` webhook."""
        self.celery.send_task(BATCH_NOTIFY_TASK, args=[str(batch_id)])

    def review_resolved(self, item_id: uuid.UUID, decision_id: uuid.UUID) -> bool:
        """Queue the ``review.resolved`` webhook of one decision; False (logged)
        when the broker refused: the decision is saved, only its announcement is lost."""
        try:
            self.celery.send_task(NOTIFY_REVIEW_TASK, args=[str(item_id), str(decision_id)])
        except Exception as exc:  # any broker error
            log.warning("could not queue the review.resolved webhook of item %s: %s", item_id, exc)
            return False
        return True
