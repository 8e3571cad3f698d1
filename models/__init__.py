"""ORM for emoq. Schema changes go through Alembic (``migrations/``)."""

from analysis.labels import EMOTION_LABELS
from models.base import Base
from models.entities import (
    ApiKey,
    AuditLog,
    Batch,
    BatchStatus,
    Calibration,
    DecisionKind,
    DomainProfile,
    IdempotencyKey,
    Job,
    JobStatus,
    Result,
    ReviewDecision,
    ReviewEvent,
    ReviewEventKind,
    ReviewItem,
    ReviewStatus,
    Role,
)

__all__ = [
    "EMOTION_LABELS",
    "ApiKey",
    "AuditLog",
    "Base",
    "Batch",
    "BatchStatus",
    "Calibration",
    "DecisionKind",
    "DomainProfile",
    "IdempotencyKey",
    "Job",
    "JobStatus",
    "Result",
    "ReviewDecision",
    "ReviewEvent",
    "ReviewEventKind",
    "ReviewItem",
    "ReviewStatus",
    "Role",
]
