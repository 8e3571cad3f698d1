"""alembic upgrade head builds the schema from an empty database; downgrade base removes it."""

from __future__ import annotations

import psycopg
import pytest
from alembic import command
from sqlalchemy import create_engine, inspect

from tests.conftest import TEST_DB_URL, _ensure_database, alembic_config


@pytest.fixture
def empty_database() -> str:
    # Named after this run's test database, so runs on other databases don't collide.
    name = TEST_DB_URL.rsplit("/", 1)[1] + "_migrations"
    url = TEST_DB_URL.rsplit("/", 1)[0] + "/" + name
    admin = url.replace("postgresql+psycopg://", "postgresql://").rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
    _ensure_database(url)
    return url


def test_upgrade_and_downgrade(empty_database):
    config = alembic_config(empty_database)
    engine = create_engine(empty_database)
    command.upgrade(config, "head")
    tables = set(inspect(engine).get_table_names())
    assert {"jobs", "results", "review_items", "api_keys", "calibrations"} <= tables
    command.downgrade(config, "base")
    assert set(inspect(engine).get_table_names()) == {"alembic_version"}
    engine.dispose()


def test_models_match_the_migrations(empty_database):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from models import Base

    command.upgrade(alembic_config(empty_database), "head")
    engine = create_engine(empty_database)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    engine.dispose()
    assert diff == []
