"""The HTTP API: a thin Flask app that stores uploads in S3, records jobs in
PostgreSQL and publishes them to Celery."""

from __future__ import annotations

from flask import Flask
from flask.json.provider import DefaultJSONProvider

from api import (
    batch_results,
    batches,
    exports,
    health,
    inputs,
    jobs,
    keys,
    metrics,
    openapi,
    review,
    review_admin,
    review_stats,
    ui,
)
from api.errors import outage, register_error_handlers
from api.services import Services
from broker import Publisher, create_celery
from config import Settings, load_settings
from domain.api_keys import ensure_bootstrap_key
from models.db import make_engine, make_session_factory, transaction
from storage import ObjectStore


class _OrderedJSON(DefaultJSONProvider):
    sort_keys = False  # bodies keep the order the code writes them in


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or load_settings()
    app = Flask(__name__, static_folder=None)  # the review page serves its own files
    # Multipart overhead on top of the file itself; the file's own size is checked while spooling.
    app.config["MAX_CONTENT_LENGTH"] = settings.server.max_upload_bytes + 1024 * 1024
    app.json = _OrderedJSON(app)
    sessions = make_session_factory(make_engine(settings.storage.database_url))
    svc = Services(
        settings=settings,
        sessions=sessions,
        store=ObjectStore(settings.storage),
        publisher=Publisher(create_celery(settings.queue), sessions),
    )
    app.extensions["emoq"] = svc
    try:
        svc.store.ensure_bucket()
        if settings.server.bootstrap_api_key:
            with transaction(svc.sessions) as session:
                ensure_bootstrap_key(session, settings.server.bootstrap_api_key)
    except Exception as exc:
        # Start anyway while a service is down: requests answer 503 until it is back.
        if not (found := outage(exc)):
            raise
        app.logger.warning("starting without %s: %s", found[0].removesuffix("_unavailable"), exc)
    inputs.install(app)
    register_error_handlers(app, settings.server.retry_after_seconds)
    for blueprint in (
        health.bp,
        metrics.bp,
        jobs.bp,
        exports.bp,
        review.bp,
        review_admin.bp,
        review_stats.bp,
        keys.bp,
        ui.bp,
        batches.bp,
        batch_results.bp,
        openapi.bp,
    ):
        app.register_blueprint(blueprint)
    return app
