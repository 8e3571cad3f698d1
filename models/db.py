"""The one place that creates database engines and sessions."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

# libpq's connect_timeout (2 s is its minimum): a dead database must not hold a
# request or a worker longer than that. Statement and lock behaviour are unchanged.
CONNECT_TIMEOUT_SECONDS = 2


def make_engine(database_url: str, *, pooled: bool = True) -> Engine:
    connect_args = {"connect_timeout": CONNECT_TIMEOUT_SECONDS}
    if not pooled:
        return create_engine(database_url, poolclass=NullPool, connect_args=connect_args)
    # Up to 10 connections a process: enough for the API's 8 gunicorn threads.
    return create_engine(database_url, pool_pre_ping=True, pool_size=5, max_overflow=5, connect_args=connect_args)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A short unit of work: commit on success, roll back on any error."""
    with factory() as session, session.begin():
        yield session
