"""alembic upgrade head builds the schema from an empty database; downgrade base removes it."""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import create_engine, inspect, text

from tests.conftest import TEST_DB_URL, _ensure_database, alembic_config


@pytest.fixture
def empty_database() -> str:
    # Named after this run's test database, so runs on other databases don't collide.
    url = TEST_DB_URL + "_migrations"
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


def test_answers_given_before_review_v2_become_decisions_and_come_back_on_downgrade(empty_database):
    config = alembic_config(empty_database)
    command.upgrade(config, "0003")
    engine = create_engine(empty_database)
    with engine.begin() as conn:
        key = conn.execute(
            text(
                "INSERT INTO api_keys (id, name, lookup, key_hash, role) VALUES (gen_random_uuid(), 'r', 'l', 'h', 'reviewer') RETURNING id"
            )
        ).scalar_one()
        job = conn.execute(
            text(
                "INSERT INTO jobs (id, status, attempts, lost_deliveries, task_id, object_key, sha256, size_bytes, "
                "submitter_id, granularity) VALUES (gen_random_uuid(), 'succeeded', 1, 0, gen_random_uuid(), 'k', "
                "'0', 1, :key, 'utterance') RETURNING id"
            ),
            {"key": key},
        ).scalar_one()
        result = conn.execute(
            text(
                "INSERT INTO results (id, job_id, model_id, model_revision, model_random_weights, primary_label, "
                "primary_confidence, scores, embedding, embedding_dim, enhancement, flags, segments, aggregate) "
                "VALUES (gen_random_uuid(), :job, 'm', 'r', true, 'fearful', 0.5, '{}', '{0}', 1, '{}', '{}', '[]', '{}') "
                "RETURNING id"
            ),
            {"job": job},
        ).scalar_one()
        for index, (status, label) in enumerate([("resolved", "disgusted"), ("pending", None)]):
            conn.execute(
                text(
                    "INSERT INTO review_items (id, job_id, result_id, segment_index, start_seconds, end_seconds, "
                    "embedding, model_scores, reasons, reason_details, model_label, status, resolved_by, "
                    "resolved_label, note, resolved_at) VALUES (gen_random_uuid(), :job, :result, :index, 0, 1, "
                    "'{0}', '{}', :reasons, '{}', 'fearful', :status, :by, :label, :note, :at)"
                ),
                {
                    "job": job, "result": result, "index": index, "status": status,
                    "reasons": ["dual_emotion"] if label else ["fear_disgust_ambiguous"],
                    "by": key if label else None, "label": label, "note": "retching" if label else None,
                    "at": "2026-01-02T03:04:05+00:00" if label else None,
                },
            )  # fmt: skip
    command.upgrade(config, "head")
    with engine.connect() as conn:
        items = conn.execute(
            text("SELECT segment_index, final_labels, priority, required_decisions FROM review_items ORDER BY 1")
        ).all()
        assert [tuple(i) for i in items] == [(0, ["disgusted"], 1, 1), (1, None, 0, 1)]
        decision = conn.execute(text("SELECT reviewer_id, kind, labels, note, round FROM review_decisions")).one()
        assert tuple(decision) == (key, "review", ["disgusted"], "retching", 1)
        assert conn.execute(text("SELECT kind, actor_id FROM review_events")).all() == [("resolved", key)]
    command.downgrade(config, "0003")
    with engine.connect() as conn:
        back = conn.execute(text("SELECT status, resolved_label, note FROM review_items ORDER BY segment_index")).all()
        assert [tuple(b) for b in back] == [("resolved", "disgusted", "retching"), ("pending", None, None)]
    engine.dispose()
