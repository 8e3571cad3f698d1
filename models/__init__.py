"""ORM for emoq. Schema changes go through Alembic (``migrations/``)."""

from analysis.labels import EMOTION_LABELS
from models.base import Base
from models.entities import (
    ApiKey,
    AuditLog,
    Calibration,
    DomainProfile,
    Job,
    JobStatus,
    Result,
    ReviewItem,
    ReviewStatus,
    Role,
)

__all__ = [
    "EMOTION_LABELS",
    "ApiKey",
    "AuditLog",
    "Base",
    "Calibration",
    "DomainProfile",
    "Job",
    "JobStatus",
    "Result",
    "ReviewItem",
    "ReviewStatus",
    "Role",
]
