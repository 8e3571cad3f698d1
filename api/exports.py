"""Bulk export of finished results for analytics teams: CSV (one row per
recording) or JSON Lines (the full result per line), streamed."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from flask import Blueprint, Response, request, stream_with_context
from sqlalchemy import select

from api import params
from api.auth import current_key, requires
from api.errors import Problem
from api.jobs import job_body
from api.services import services
from models import EMOTION_LABELS, Job, Result, Role

bp = Blueprint("exports", __name__, url_prefix="/v1/exports")

CSV_COLUMNS = (
    ["job_id", "external_id", "status", "error_code", "created_at", "finished_at", "duration_seconds", "channels"]
    + ["model_id", "model_revision", "random_weights", "calibration_version", "primary_label", "primary_confidence"]
    + [f"score_{label}" for label in EMOTION_LABELS]
    + ["flags"]
)


def _when(name: str) -> datetime | None:
    value = request.args.get(name)
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise Problem(400, f"invalid_{name}", f"{name} must be an ISO 8601 date or time") from None


def _rows() -> Iterator[tuple[Job, Result | None]]:
    query = (
        select(Job, Result)
        .outerjoin(Result, Result.job_id == Job.id)
        .where(Job.status.in_(("succeeded", "failed")), Job.deleted_at.is_(None))
    )
    if (since := _when("since")) is not None:
        query = query.where(Job.finished_at >= since)
    if (until := _when("until")) is not None:
        query = query.where(Job.finished_at < until)
    if current_key().role == Role.submitter.value:
        query = query.where(Job.submitter_id == current_key().id)
    query = query.order_by(Job.finished_at, Job.id).execution_options(yield_per=500)
    sessions = services().sessions

    def generate() -> Iterator[tuple[Job, Result | None]]:
        with sessions() as session:
            yield from session.execute(query)  # rows unpack as (job, result)

    return generate()


def csv_line(values: list) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerow(values)
    return buffer.getvalue()


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(float(value), digits)


def recording_row(job: Job, result: Result | None) -> dict[str, Any]:
    """One recording's row (keys: CSV_COLUMNS); scores in the model's label order,
    rounded to 4 decimals, seconds to 3."""
    row: dict[str, Any] = {
        "job_id": str(job.id),
        "external_id": job.external_id,
        "status": job.status,
        "error_code": job.error_code,
        "created_at": job.created_at.isoformat(),
        "finished_at": job.finished_at and job.finished_at.isoformat(),
        "duration_seconds": _rounded(job.duration_seconds, 3),
        "channels": job.channels,
    }
    row.update(dict.fromkeys(CSV_COLUMNS[len(row) :]))
    if result is not None:
        row.update(
            model_id=result.model_id,
            model_revision=result.model_revision,
            random_weights=result.model_random_weights,
            calibration_version=result.calibration_version,
            primary_label=result.primary_label,
            primary_confidence=_rounded(result.primary_confidence, 4),
            flags=list(result.flags),
        )
        row.update({f"score_{label}": _rounded(result.scores[label], 4) for label in EMOTION_LABELS})
    return row


def csv_value(value: Any) -> Any:
    if isinstance(value, list):
        return ";".join(value)
    return "" if value is None else value


def _csv(rows: Iterator[tuple[Job, Result | None]]) -> Iterator[str]:
    yield csv_line(CSV_COLUMNS)
    for job, result in rows:
        row = recording_row(job, result)
        yield csv_line([csv_value(row[column]) for column in CSV_COLUMNS])


def _jsonl(rows: Iterator[tuple[Job, Result | None]]) -> Iterator[str]:
    for job, result in rows:
        yield json.dumps(job_body(job, result, full=True)) + "\n"


@bp.get("/results")
@requires(Role.submitter, Role.reviewer)
def export_results() -> Response:
    params.only(query=("format", "since", "until"))
    fmt = request.args.get("format", "csv")
    if fmt not in ("csv", "jsonl"):
        raise Problem(400, "invalid_format", "format must be csv or jsonl")
    rows = _rows()  # validates the arguments before the response starts
    body = _csv(rows) if fmt == "csv" else _jsonl(rows)
    mimetype = "text/csv" if fmt == "csv" else "application/x-ndjson"
    return Response(
        stream_with_context(body),
        mimetype=mimetype,
        headers={"Content-Disposition": f'attachment; filename="emoq-results.{fmt}"'},
    )
