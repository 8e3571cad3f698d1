"""A batch's results as one table, streamed: ``rows=recording`` (one row per
job, with the per-role primary and speech share of each of the batch's roles)
or ``rows=segment`` (one row per analysed segment: role, start, end, the 9
scores, primary, flags), as CSV, JSON Lines or Parquet. Scores follow the
model's label order, rounded to 4 decimals; seconds to 3.

Parquet can't be written row by row to a socket (its footer comes last), so it
is written in row groups to a spooled temporary file, then streamed."""

from __future__ import annotations

import json
import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from flask import Blueprint, Response, request, stream_with_context
from sqlalchemy import select

from api import params
from api.auth import requires
from api.batches import visible_batch
from api.errors import Problem
from api.exports import CSV_COLUMNS, HUMAN_COLUMNS, csv_line, csv_value, human_row, recording_row
from api.services import services
from domain import review_outcome
from models import EMOTION_LABELS, Job, Result, Role

bp = Blueprint("batch_results", __name__, url_prefix="/v1/batches")

SEGMENT_COLUMNS = (
    ["job_id", "external_id", "segment", "channel", "role", "start", "end"]
    + [f"score_{label}" for label in EMOTION_LABELS]
    + ["primary_label", "primary_confidence", "flags"]
)
ROLE_FIELDS = ("primary_label", "primary_confidence", "speech_seconds", "speech_share")
_ROW_GROUP = 2000
_SPOOL_BYTES = 16 * 1024 * 1024
_CHUNK = 1 << 16
_MIMETYPES = {"csv": "text/csv", "jsonl": "application/x-ndjson", "parquet": "application/vnd.apache.parquet"}
# Parquet types of the columns that are not strings.
_FLOATS = {"duration_seconds", "primary_confidence", "start", "end"} | {f"score_{label}" for label in EMOTION_LABELS}
_INTS = {"channels", "calibration_version", "segment", "channel", "review_items", "review_resolved"}


def _r(value: Any, digits: int) -> float | None:
    return None if value is None else round(float(value), digits)


def role_columns(roles: list[str]) -> list[str]:
    return [f"{role}_{field}" for role in roles for field in ROLE_FIELDS]


def _role_values(result: Result | None, roles: list[str]) -> dict[str, Any]:
    by_role = (result.aggregate.get("by_role") or {}) if result is not None else {}
    speech = sum(float(r.get("speech_seconds") or 0.0) for r in by_role.values())
    values: dict[str, Any] = {}
    for role in roles:
        mine = by_role.get(role) or {}
        seconds = mine.get("speech_seconds")
        values[f"{role}_primary_label"] = (mine.get("primary") or {}).get("label")
        values[f"{role}_primary_confidence"] = _r((mine.get("primary") or {}).get("confidence"), 4)
        values[f"{role}_speech_seconds"] = _r(seconds, 3)
        # The role's share of the call's speech (agent vs customer talk time).
        values[f"{role}_speech_share"] = _r(float(seconds) / speech, 4) if seconds is not None and speech else None
    return values


def _segment_rows(job: Job, result: Result) -> Iterator[dict[str, Any]]:
    for segment in result.segments:
        scores = segment.get("scores") or {}
        primary = segment.get("primary") or {}
        yield {
            "job_id": str(job.id),
            "external_id": job.external_id,
            "segment": segment.get("index"),
            "channel": segment.get("channel"),
            "role": segment.get("role"),
            "start": _r(segment.get("start"), 3),
            "end": _r(segment.get("end"), 3),
            **{f"score_{label}": _r(scores.get(label), 4) for label in EMOTION_LABELS},
            "primary_label": primary.get("label"),
            "primary_confidence": _r(primary.get("confidence"), 4),
            "flags": list(segment.get("flags") or []),
        }


def _schema(columns: list[str]) -> pa.Schema:
    def kind(column: str) -> pa.DataType:
        if column in ("flags", "human_labels", "reviewers"):
            return pa.list_(pa.string())
        if column == "random_weights":
            return pa.bool_()
        if column in _FLOATS or column.endswith(("_confidence", "_seconds", "_share")):
            return pa.float64()
        if column in _INTS:
            return pa.int64()
        return pa.string()

    return pa.schema([(column, kind(column)) for column in columns])


def _csv(rows: Iterator[dict[str, Any]], columns: list[str]) -> Iterator[bytes]:
    yield csv_line(columns).encode()
    for row in rows:
        yield csv_line([csv_value(row[column]) for column in columns]).encode()


def _jsonl(rows: Iterator[dict[str, Any]]) -> Iterator[bytes]:
    for row in rows:
        yield (json.dumps(row) + "\n").encode()


def _parquet(rows: Iterator[dict[str, Any]], columns: list[str], work_dir: Path) -> Iterator[bytes]:
    schema = _schema(columns)
    work_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES, dir=str(work_dir)) as spool:
        with pq.ParquetWriter(spool, schema) as writer:
            group: list[dict[str, Any]] = []
            for row in rows:
                group.append(row)
                if len(group) >= _ROW_GROUP:
                    writer.write_table(pa.Table.from_pylist(group, schema))
                    group = []
            if group:
                writer.write_table(pa.Table.from_pylist(group, schema))
        spool.seek(0)
        yield from iter(lambda: spool.read(_CHUNK), b"")


@bp.get("/<uuid:batch_id>/results")
@requires(Role.submitter, Role.reviewer)
def batch_results(batch_id: uuid.UUID) -> Response:
    params.only(query=("format", "rows"))
    fmt = request.args.get("format", "csv")
    if fmt not in _MIMETYPES:
        raise Problem(400, "invalid_format", "format must be csv, jsonl or parquet")
    kind = request.args.get("rows", "recording")
    if kind not in ("recording", "segment"):
        raise Problem(400, "invalid_rows", "rows must be recording or segment")
    sessions = services().sessions
    with sessions() as session:
        batch = visible_batch(session, batch_id)
        name = batch.name
        # Mono recordings without named roles are analysed as one 'speaker'.
        roles = list(batch.channel_roles or ["speaker"])
    columns = list(CSV_COLUMNS) + role_columns(roles) if kind == "recording" else list(SEGMENT_COLUMNS)
    query = (
        select(Job, Result)
        .outerjoin(Result, Result.job_id == Job.id)
        .where(Job.batch_id == batch_id)
        .order_by(Job.created_at, Job.id)
        .execution_options(yield_per=200)
    )

    def rows() -> Iterator[dict[str, Any]]:
        with sessions() as session:
            for chunk in session.execute(query).partitions():  # yield_per rows at a time
                reviews = review_outcome.reviews_by_job(session, [job.id for job, _ in chunk], datetime.now(UTC))
                for job, result in chunk:
                    if kind == "recording":
                        human = human_row(result, reviews.get(job.id, {})) if result else dict.fromkeys(HUMAN_COLUMNS)
                        yield recording_row(job, result) | human | _role_values(result, roles)
                    elif result is not None:
                        yield from _segment_rows(job, result)

    if fmt == "csv":
        body = _csv(rows(), columns)
    elif fmt == "jsonl":
        body = _jsonl(rows())
    else:
        body = _parquet(rows(), columns, services().settings.storage.work_dir)
    filename = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:100] or str(batch_id)
    return Response(
        stream_with_context(body),
        mimetype=_MIMETYPES[fmt],
        headers={"Content-Disposition": f'attachment; filename="{filename}-{kind}s.{fmt}"'},
    )
