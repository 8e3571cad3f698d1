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

from flask import Blueprint, Response, request, stream_with_context
from sqlalchemy import select

from api.auth import current_key, requires
from api.errors import Problem
from api.jobs import job_body, result_body
from api.services import services
from domain import review_outcome
from models import EMOTION_LABELS, Job, Result, Role

bp = Blueprint("exports", __name__, url_prefix="/v1/exports")

CSV_COLUMNS = (
    ["job_id", "external_id", "status", "error_code", "created_at", "finished_at", "duration_seconds", "channels"]
    + ["model_id", "model_revision", "random_weights", "calibration_version", "primary_label", "primary_confidence"]
    + [f"score_{label}" for label in EMOTION_LABELS]
    + ["flags"]
    + ["final_label", "final_confidence", "final_source", "review_items", "review_resolved", "human_labels"]
    + ["reviewers", "last_resolved_at"]
)


def _when(name: str) -> datetime | None:
    value = request.args.get(name)
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise Problem(400, f"invalid_{name}", f"{name} must be an ISO 8601 date or time") from None


Row = tuple[Job, Result | None, review_outcome.Reviews]


def _rows() -> Iterator[Row]:
    query = (
        select(Job, Result).outerjoin(Result, Result.job_id == Job.id).where(Job.status.in_(("succeeded", "failed")))
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


def _csv_line(values: list) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerow(values)
    return buffer.getvalue()


def _human_columns(result: Result, reviews: review_outcome.Reviews) -> list:
    """final label, confidence and source; review items, resolved; "segment:label[+label]"; reviewers; last resolution."""
    final = review_outcome.with_reviews(result_body(result), reviews)["final"]
    resolved = sorted(((i, r) for i, r in reviews.items() if r.labels), key=lambda pair: pair[0])
    last = max((r.resolved_at for _, r in resolved if r.resolved_at), default=None)
    return [
        final["label"],
        final["confidence"],
        final["source"],
        len(reviews),
        len(resolved),
        ";".join(f"{i}:{'+'.join(r.labels or [])}" for i, r in resolved),
        ";".join(sorted({r.reviewer for _, r in resolved if r.reviewer})),
        last and last.isoformat(),
    ]


def _csv(rows: Iterator[Row]) -> Iterator[str]:
    yield _csv_line(CSV_COLUMNS)
    for job, result, reviews in rows:
        values = [
            job.id,
            job.external_id,
            job.status,
            job.error_code,
            job.created_at.isoformat(),
            job.finished_at and job.finished_at.isoformat(),
            job.duration_seconds,
            job.channels,
        ]
        if result is None:
            values += [""] * (len(CSV_COLUMNS) - len(values))
        else:
            values += [
                result.model_id,
                result.model_revision,
                result.model_random_weights,
                result.calibration_version,
                result.primary_label,
                result.primary_confidence,
                *(result.scores[label] for label in EMOTION_LABELS),
                ";".join(result.flags),
                *_human_columns(result, reviews),
            ]
        yield _csv_line(values)


def _jsonl(rows: Iterator[Row]) -> Iterator[str]:
    for job, result, reviews in rows:
        yield json.dumps(job_body(job, result, full=True, reviews=reviews)) + "\n"


@bp.get("/results")
@requires(Role.submitter, Role.reviewer)
def export_results() -> Response:
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
