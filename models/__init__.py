"""ORM for emoq. Schema changes go through Alembic (``migrations/``)."""

from models.base import Base
from models.entities import (
    EMOTION_LABELS,
    ApiKey,
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
    "Base",
    "EMOTION_LABELS",
    "ApiKey",
    "Calibration",
    "DomainProfile",
    "Job",
    "JobStatus",
    "Result",
    "ReviewItem",
    "ReviewStatus",
    "Role",
]
