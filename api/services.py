"""The API's long-lived collaborators, built once by the app factory."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from celery import Celery
from flask import current_app
from sqlalchemy.orm import Session, sessionmaker

from config import Settings
from storage import ObjectStore
from worker.celery_app import ANALYSE_TASK


@dataclass
class Services:
    settings: Settings
    sessions: sessionmaker[Session]
    store: ObjectStore
    celery: Celery

    def publish(self, job_id: uuid.UUID, task_id: uuid.UUID) -> None:
        self.celery.send_task(ANALYSE_TASK, args=[str(job_id)], task_id=str(task_id))


def services() -> Services:
    return current_app.extensions["emoq"]
