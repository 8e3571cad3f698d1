"""The HTTP API: a thin Flask app that stores uploads in S3, records jobs in
PostgreSQL and publishes them to Celery."""

from __future__ import annotations

from flask import Flask

from api import exports, health, jobs, keys, review, ui
from api.auth import ensure_bootstrap_key
from api.errors import register_error_handlers
from api.services import Services
from config import Settings, load_settings
from models.db import make_engine, make_session_factory, transaction
from storage import ObjectStore
from worker.celery_app import create_celery


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or load_settings()
    app = Flask(__name__, static_folder=None)  # the review page serves its own files
    # Multipart overhead on top of the file itself; the file's own size is checked while spooling.
    app.config["MAX_CONTENT_LENGTH"] = settings.max_upload_bytes + 1024 * 1024
    app.json.sort_keys = False
    svc = Services(
        settings=settings,
        sessions=make_session_factory(make_engine(settings.database_url)),
        store=ObjectStore(settings),
        celery=create_celery(settings),
    )
    app.extensions["emoq"] = svc
    svc.store.ensure_bucket()
    if settings.bootstrap_api_key:
        with transaction(svc.sessions) as session:
            ensure_bootstrap_key(session, settings.bootstrap_api_key)
    register_error_handlers(app)
    for blueprint in (health.bp, jobs.bp, exports.bp, review.bp, keys.bp, ui.bp):
        app.register_blueprint(blueprint)
    return app
