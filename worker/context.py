"""What a worker process holds for its whole life: settings, the database
session factory, the object store, and the model (loaded once, never per task)."""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from dataclasses import dataclass, field

import redis
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from analysis.engine import EmotionEngine, ModelUnavailable
from analysis.enhance import Centroids
from analysis.profile import Profile
from broker import HEARTBEAT_PREFIX
from calibration.profiles import active_profile
from config import Settings
from models import Calibration
from models.db import make_engine, make_session_factory
from storage import ObjectStore

log = logging.getLogger(__name__)


@dataclass
class WorkerContext:
    settings: Settings
    sessions: sessionmaker[Session]
    store: ObjectStore
    engine: EmotionEngine | None = None
    model_error: str | None = None
    _centroids: Centroids | None = None
    _centroid_key: object = field(default=None)

    def load_model(self) -> None:
        if not self.settings.engine.load_model:
            # A maintenance worker (sweep, webhooks, retention) needs no model and no GPU.
            self.engine, self.model_error = None, "this worker does not load the model (EMOQ_LOAD_MODEL=false)"
            return
        try:
            self.engine = EmotionEngine.load(self.settings.engine)
            self.model_error = None
        except ModelUnavailable as exc:
            self.engine, self.model_error = None, str(exc)
            log.error("MODEL UNAVAILABLE: %s; jobs will fail with model_unavailable", exc)

    def centroids(self) -> Centroids | None:
        """The active calibration (checked every job, so a newly activated
        version is used without a restart), else the centroid file."""
        query = select(Calibration.version, Calibration.object_key).where(Calibration.active)
        if self.engine is not None:
            # Centroids live in one model's embedding space; another model's are meaningless here.
            query = query.where(Calibration.model_id == self.engine.info.model_id)
        with self.sessions() as session:
            active = session.execute(query).first()
        key: object = ("db", active.version) if active else ("file", self.settings.enhancement.centroid_file)
        if key != self._centroid_key:
            if active:
                data = self.store.get_bytes(active.object_key)
                self._centroids = Centroids.from_npz(data, version=active.version, source="calibration")
            elif self.settings.enhancement.centroid_file:
                self._centroids = Centroids.from_npz(self.settings.enhancement.centroid_file, source="file")
            else:
                self._centroids = None
            self._centroid_key = key
        return self._centroids

    def domain_profile(self, domain: str | None) -> Profile:
        """Read every job, like the centroids: activation needs no restart."""
        with self.sessions() as session:
            return active_profile(session, domain)

    def status(self) -> dict:
        return {
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
            "model_loaded": self.engine is not None,
            "model": self.engine.info.as_dict() if self.engine else None,
            "model_error": self.model_error,
            "queue": self.settings.queue.analysis_queue,
        }


_context: WorkerContext | None = None
_lock = threading.Lock()


def get_context(settings: Settings) -> WorkerContext:
    global _context
    with _lock:
        if _context is None:
            store = ObjectStore(settings.storage)
            context = WorkerContext(settings, make_session_factory(make_engine(settings.storage.database_url)), store)
            context.load_model()
            _start_heartbeat(context)
            _context = context
        return _context


_stopping = threading.Event()


def _heartbeat_key() -> str:
    return f"{HEARTBEAT_PREFIX}{socket.gethostname()}:{os.getpid()}"


def _start_heartbeat(context: WorkerContext) -> None:
    """Publish this process's model status in Redis for /readyz."""
    interval = context.settings.queue.worker_heartbeat_seconds
    client = redis.Redis.from_url(context.settings.queue.redis_url)
    key = _heartbeat_key()

    def beat() -> None:
        while not _stopping.is_set():
            try:
                client.set(key, json.dumps(context.status()), ex=interval * 3)
            except redis.RedisError as exc:
                log.warning("heartbeat failed: %s", exc)
            _stopping.wait(interval)

    threading.Thread(target=beat, name="emoq-heartbeat", daemon=True).start()


def stop_heartbeat() -> None:
    """Withdraw this process's status at a clean shutdown, so /readyz does not
    count a stopped worker for the rest of the heartbeat's lifetime."""
    _stopping.set()
    if _context is None:
        return
    try:
        redis.Redis.from_url(_context.settings.queue.redis_url, socket_timeout=2).delete(_heartbeat_key())
    except redis.RedisError as exc:  # it expires on its own
        log.warning("could not withdraw the heartbeat: %s", exc)
