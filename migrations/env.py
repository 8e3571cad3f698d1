"""Alembic environment: the database URL comes from the settings object."""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context

from config import load_settings
from models import Base
from models.db import make_engine

config = context.config
if config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def url() -> str:
    return config.attributes.get("database_url") or load_settings().storage.database_url


def run_migrations_offline() -> None:
    context.configure(url=url(), target_metadata=Base.metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = make_engine(url(), pooled=False)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=Base.metadata, compare_type=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
