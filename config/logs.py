"""Structured logs: one JSON object per line (timestamp, level, logger,
message, and whatever a call site passes as ``extra=``), so that a log
collector can filter a job's lines by ``job_id``. ``EMOQ_LOG_FORMAT=text``
keeps the plain format for people at a terminal."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def fields(self, record: logging.LogRecord) -> dict[str, object]:
        """The record's own fields; subclasses add context (a Celery task's id)."""
        return {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }

    def format(self, record: logging.LogRecord) -> str:
        body = self.fields(record)
        body.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")})
        if record.exc_info:
            body["exception"] = self.formatException(record.exc_info)
        return json.dumps(body, default=str)


def configure_logging(log_format: str, formatter: logging.Formatter | None = None) -> None:
    """The root logger writes to stderr in ``log_format``; replaces handlers set up before."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(formatter or JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
