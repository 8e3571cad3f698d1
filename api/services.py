"""The API's long-lived collaborators, built once by the app factory."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app
from sqlalchemy.orm import Session, sessionmaker

from broker import Publisher
from config import Settings
from storage import ObjectStore


@dataclass
class Services:
    settings: Settings
    sessions: sessionmaker[Session]
    store: ObjectStore
    publisher: Publisher


def services() -> Services:
    return current_app.extensions["emoq"]
