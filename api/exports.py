"""Bulk export of finished results for analytics teams: CSV (one row per
recording) or JSON Lines (the full result per line), streamed. Both carry the
human answers of the job's review items (``domain.review_outcome``): CSV adds
the final label and the reviewed segments, JSON Lines each segment's
``review`` and ``final``."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, request, stream_with_context
from sqlalchemy import select

from api import params
from api.auth import current_key, requires
from api.errors import Problem
from api.jobs import job_body, result_body
from api.services import services
from domain import review_outcome
from models import EMOTION_LABELS, Job, Result, Role

bp = Blueprint("exports", __name__, url_prefix="/v1/exports")

RECORDING_COLUMNS = (
    ["job_id", "external_id", "status", "error_code", "created_at", "finished_at", "duration_seconds", "channels"]
    + ["model_id", "model_revision", "random_weights", "calibration_version", "primary_label", "primary_confidence"]
    + [f"score_{label}" for label in EMOTION_LABELS]
    + ["flags"]
)
HUMAN_COLUMNS = [
    "final_label",
    "final_confidence",
    "final_source",
    "review_items",
    "review_resolved",
    "human_labels",
    "reviewers",
    "last_resolved_at",
]
CSV_COLUMNS = RECORDING_COLUMNS + HUMAN_COLUMNS


def _when(name: str) -> datetime | None:
    value = request.args.get(name)
    if not value:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise Problem(400, f"invalid_{name}", f"{name} must be an ISO 8601 date or time") from None
    # Without an offset it is UTC, not the database session's time zone (and answers echo it as RFC 3339).
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


Row = tuple[Job, Result | None, review_outcome.Reviews]


def _rows() -> Iterator[Row]:
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

    def generate() -> Iterator[Row]:
        with sessions() as session:
            for chunk in session.execute(query).partitions():  # yield_per rows at a time
                reviews = review_outcome.reviews_by_job(session, [job.id for job, _ in chunk], datetime.now(UTC))
                for job, result in chunk:
                    yield job, result, reviews.get(job.id, {})

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
    row.update(dict.fromkeys(RECORDING_COLUMNS[len(row) :]))
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


def human_row(result: Result, reviews: review_outcome.Reviews) -> dict[str, Any]:
    """The people's side (keys: HUMAN_COLUMNS): final label, confidence and source;
    review items and how many are resolved; "segment:label[+label]"; reviewers; last resolution."""
    final = review_outcome.with_reviews(result_body(result), reviews)["final"]
    resolved = sorted(((i, r) for i, r in reviews.items() if r.labels), key=lambda pair: pair[0])
    last = max((r.resolved_at for _, r in resolved if r.resolved_at), default=None)
    return {
        "final_label": final["label"],
        "final_confidence": _rounded(final["confidence"], 4),
        "final_source": final["source"],
        "review_items": len(reviews),
        "review_resolved": len(resolved),
        "human_labels": [f"{i}:{'+'.join(r.labels or [])}" for i, r in resolved],
        "reviewers": sorted({r.reviewer for _, r in resolved if r.reviewer}),
        "last_resolved_at": last and last.isoformat(),
    }


def csv_value(value: Any) -> Any:
    if isinstance(value, list):
        return ";".join(value)
    return "" if value is None else value


def _csv(rows: Iterator[Row]) -> Iterator[str]:
    yield csv_line(CSV_COLUMNS)
    for job, result, reviews in rows:
        row = recording_row(job, result) | (human_row(result, reviews) if result else dict.fromkeys(HUMAN_COLUMNS))
        yield csv_line([csv_value(row[column]) for column in CSV_COLUMNS])


def _jsonl(rows: Iterator[Row]) -> Iterator[str]:
    for job, result, reviews in rows:
        yield json.dumps(job_body(job, result, full=True, reviews=reviews)) + "\n"


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
