"""The API's long-lived collaborators, built once by the app factory."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from celery import Celery
from flask import current_app
from sqlalchemy.orm import Session, sessionmaker

from config import Settings
from storage import ObjectStore
from worker.celery_app import publish_analysis


@dataclass
class Services:
    settings: Settings
    sessions: sessionmaker[Session]
    store: ObjectStore
    celery: Celery

    def publish(self, job_id: uuid.UUID, task_id: uuid.UUID) -> None:
        publish_analysis(self.celery, job_id, task_id)


def services() -> Services:
    return current_app.extensions["emoq"]
