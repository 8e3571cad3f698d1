"""Bulk export of finished results as CSV and JSON Lines."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

from sqlalchemy import update

from api.exports import CSV_COLUMNS
from models import Job
from models.db import transaction
from tests.factories import key_id, make_job, make_review_item


def finished(sessions, **when) -> None:
    with transaction(sessions) as session:
        session.execute(update(Job).where(Job.finished_at.is_(None)).values(**when))


def test_csv_and_jsonl_exports(client, keys, sessions, store):
    submitter = key_id(sessions, "submitter")
    make_review_item(sessions, submitter)  # a succeeded job with a result
    make_job(sessions, store, b"x", submitter, status="failed", error_code="undecodable_audio")
    make_job(sessions, store, b"x", submitter)  # still queued: not exported
    make_review_item(sessions, key_id(sessions, "submitter2"))
    finished(sessions, finished_at=datetime.now(UTC))

    response = client.get("/v1/exports/results?format=csv", headers=keys["submitter"])
    assert response.status_code == 200 and response.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert list(rows[0]) == CSV_COLUMNS
    assert sorted(r["status"] for r in rows) == ["failed", "succeeded"]  # own jobs only, finished only
    done = next(r for r in rows if r["status"] == "succeeded")
    assert done["primary_label"] == "fearful" and float(done["score_fearful"]) == 0.45
    assert done["random_weights"] == "True" and done["flags"] == "fear_disgust_ambiguous"
    assert next(r for r in rows if r["status"] == "failed")["error_code"] == "undecodable_audio"

    everyone = client.get("/v1/exports/results?format=jsonl", headers=keys["reviewer"])
    lines = [json.loads(line) for line in everyone.get_data(as_text=True).splitlines()]
    assert len(lines) == 3
    assert {line["result"]["primary"]["label"] for line in lines if line["status"] == "succeeded"} == {"fearful"}

    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    later = client.get(f"/v1/exports/results?since={tomorrow}", headers=keys["reviewer"])
    assert len(later.get_data(as_text=True).splitlines()) == 1  # the header alone


def test_export_arguments_are_checked(client, keys):
    assert client.get("/v1/exports/results?format=xml", headers=keys["reviewer"]).get_json()["code"] == "invalid_format"
    assert (
        client.get("/v1/exports/results?since=yesterday", headers=keys["reviewer"]).get_json()["code"]
        == "invalid_since"
    )
    assert client.get("/v1/exports/results").status_code == 401
