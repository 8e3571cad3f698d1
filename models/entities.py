from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime
from typing import ClassVar

from sqlalchemy import (
    REAL,
    BigInteger,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base


class JobStatus(str, enum.Enum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"


class ReviewStatus(str, enum.Enum):
    pending = "pending"  # waiting for a (first or second) decision
    claimed = "claimed"
    resolved = "resolved"  # final: one decision, two that agree, an adjudication or a correction
    disagreement = "disagreement"  # two decisions differ: waiting for an admin's adjudication


class DecisionKind(str, enum.Enum):
    review = "review"
    adjudication = "adjudication"
    correction = "correction"


class ReviewEventKind(str, enum.Enum):
    claimed = "claimed"
    released = "released"
    lease_expired = "lease_expired"
    decided = "decided"
    adjudicated = "adjudicated"
    corrected = "corrected"
    resolved = "resolved"
    disagreement = "disagreement"
    reopened = "reopened"
    audio_played = "audio_played"


class BatchStatus(str, enum.Enum):
    open = "open"  # takes recordings
    closed = "closed"  # takes no more; finished once its last job ends
    finished = "finished"
    cancelled = "cancelled"  # queued jobs were cancelled; running ones finish


class Role(str, enum.Enum):
    submitter = "submitter"
    reviewer = "reviewer"
    admin = "admin"


def _values(e: type[enum.Enum]) -> str:
    return ", ".join(f"'{m.value}'" for m in e)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _created_column() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class ApiKey(Base):
    __tablename__ = "api_keys"
    __table_args__ = (CheckConstraint(f"role IN ({_values(Role)})", name="role"),)

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    lookup: Mapped[str] = mapped_column(String(16), nullable=False, unique=True)
    key_hash: Mapped[str] = mapped_column(Text, nullable=False)
    role: Mapped[str] = mapped_column(String(16), nullable=False)
    created_at: Mapped[datetime] = _created_column()
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint(f"status IN ({_values(JobStatus)})", name="status"),
        CheckConstraint("granularity IN ('utterance', 'frame')", name="granularity"),
        Index("ix_jobs_created", "created_at", "id"),
        Index("ix_jobs_batch_status", "batch_id", "status"),
        # The backlog check sums queued audio on every intake request.
        Index("ix_jobs_queued_duration", "duration_seconds", postgresql_where=text("status = 'queued'")),
        # An uploaded file is in a batch once (same content, same external id) ...
        Index(
            "uq_jobs_batch_upload",
            "batch_id",
            "external_id",
            "sha256",
            unique=True,
            postgresql_where=text("batch_id IS NOT NULL AND source IS NULL"),
        ),
        # ... and so is an imported URL or object.
        Index("uq_jobs_batch_source", "batch_id", "source", unique=True, postgresql_where=text("source IS NOT NULL")),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default=JobStatus.queued.value, index=True)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    # Deliveries that never finished (the worker died or hit the hard time limit).
    lost_deliveries: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    created_at: Mapped[datetime] = _created_column()
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now(), nullable=False
    )
    # The Celery task id of the one message allowed to run this job; any other
    # delivery (a duplicate left behind by a re-enqueue) is skipped.
    task_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False, default=uuid.uuid4)
    enqueued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    object_key: Mapped[str] = mapped_column(Text, nullable=False)
    # Unknown (None) for a URL or bucket import until the worker has fetched it; None once erased.
    sha256: Mapped[str | None] = mapped_column(String(64))
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    # Where the worker fetches an imported recording from (http(s) URL or s3://bucket/key).
    source: Mapped[str | None] = mapped_column(Text)
    batch_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("batches.id"))
    content_type: Mapped[str | None] = mapped_column(String(100))
    original_filename: Mapped[str | None] = mapped_column(Text)
    duration_seconds: Mapped[float | None] = mapped_column(Float)
    sample_rate: Mapped[int | None] = mapped_column(Integer)
    channels: Mapped[int | None] = mapped_column(Integer)
    channel_roles: Mapped[list[str] | None] = mapped_column(ARRAY(String(32)))
    submitter_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("api_keys.id"), nullable=False, index=True)
    external_id: Mapped[str | None] = mapped_column(String(200), index=True)
    granularity: Mapped[str] = mapped_column(String(16), nullable=False, default="utterance")
    domain: Mapped[str | None] = mapped_column(String(64))
    # Webhook: POSTed once the job succeeds or fails (worker.webhooks).
    callback_url: Mapped[str | None] = mapped_column(Text)
    callback_delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    callback_error: Mapped[str | None] = mapped_column(Text)
    # Erasure and retention (domain.erasure, domain.retention): an erased job is a
    # tombstone (id, when, by whom); purged audio or results are gone, the row stays.
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    deleted_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("api_keys.id"))
    audio_purged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    result_purged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    result: Mapped[Result | None] = relationship(back_populates="job", uselist=False)

    # The error code of a job failed by its batch's cancel before it ran.
    CANCELLED: ClassVar[str] = "cancelled"

    # The job's state machine: queued → running → succeeded | failed, with
    # running → queued for a retry or a lost delivery. Worker and sweep change
    # a job only through these methods, inside a transaction holding its row lock.

    @property
    def finished(self) -> bool:
        return self.status in (JobStatus.succeeded.value, JobStatus.failed.value)

    def start(self, task_id: uuid.UUID, max_deliveries: int) -> bool:
        """Count a delivery of message ``task_id``; False when it must not run."""
        if self.finished or self.task_id != task_id:
            return False  # done already, or a stale copy left behind by a re-publish
        if self.status == JobStatus.running.value:
            # Still 'running' at a new delivery of the same message: the last
            # delivery died with its worker (killed, out of memory, hard time limit).
            self.lost_deliveries += 1
        self.attempts += 1
        if self.lost_deliveries >= max_deliveries:
            self.fail("worker_lost", f"the worker was lost {self.lost_deliveries} times while analysing this recording")
            return False
        self.status = JobStatus.running.value
        self.started_at = _utcnow()
        self.error_code = self.error_message = None
        return True

    def succeed(self, *, duration_seconds: float, sample_rate: int, channels: int) -> None:
        self.status = JobStatus.succeeded.value
        self.finished_at = _utcnow()
        self.duration_seconds = duration_seconds
        self.sample_rate = sample_rate
        self.channels = channels
        self.error_code = self.error_message = None

    def fail(self, code: str, message: str) -> None:
        self.status = JobStatus.failed.value
        self.error_code = code
        self.error_message = message[:2000]
        self.finished_at = _utcnow()

    def cancel(self) -> bool:
        """A queued job of a cancelled batch never runs; a running one finishes."""
        if self.status != JobStatus.queued.value:
            return False
        self.fail(self.CANCELLED, "the batch was cancelled before this job started")
        return True

    def release_for_retry(self, reason: str) -> None:
        """Back to 'queued' so the retry's delivery is not mistaken for a lost one."""
        if self.status == JobStatus.running.value:
            self.status = JobStatus.queued.value
            self.error_message = f"retrying: {reason}"[:2000]

    def republish(self) -> uuid.UUID:
        """A new message id for a job whose message was lost; any older copy is then skipped."""
        self.task_id = uuid.uuid4()
        self.enqueued_at = None
        return self.task_id

    def erase(self, actor_id: uuid.UUID | None) -> None:
        """Keep only the tombstone: what the recording was is forgotten. An
        unfinished job fails, so that no worker or sweep picks it up again."""
        if not self.finished:
            self.fail("erased", "the job was erased before it finished")
        self.deleted_at = _utcnow()
        self.deleted_by = actor_id
        self.original_filename = self.external_id = self.sha256 = None
        self.channel_roles = None
        self.callback_url = self.callback_error = None

    def recover_stale_run(self, max_deliveries: int) -> bool:
        """A 'running' job no worker finished in time: count the lost delivery;
        True when it goes back to the queue, False when it failed for good."""
        self.lost_deliveries += 1
        if self.lost_deliveries >= max_deliveries:
            self.fail("worker_lost", f"no worker finished this job in {self.lost_deliveries} deliveries")
            return False
        self.status = JobStatus.queued.value
        return True


class Result(Base):
    __tablename__ = "results"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False, unique=True)
    model_id: Mapped[str] = mapped_column(Text, nullable=False)
    model_revision: Mapped[str] = mapped_column(Text, nullable=False)
    model_random_weights: Mapped[bool] = mapped_column(nullable=False)
    primary_label: Mapped[str] = mapped_column(String(16), nullable=False)
    primary_confidence: Mapped[float] = mapped_column(Float, nullable=False)
    scores: Mapped[dict[str, float]] = mapped_column(JSONB, nullable=False)
    # float4[]: Debian's PostgreSQL 15 here has no pgvector (see README).
    embedding: Mapped[list[float]] = mapped_column(ARRAY(REAL), nullable=False)
    embedding_dim: Mapped[int] = mapped_column(Integer, nullable=False)
    enhancement: Mapped[dict] = mapped_column(JSONB, nullable=False)
    flags: Mapped[list[str]] = mapped_column(ARRAY(String(48)), nullable=False)
    segments: Mapped[list[dict]] = mapped_column(JSONB, nullable=False, default=list)
    aggregate: Mapped[dict] = mapped_column(JSONB, nullable=False, default=dict)
    calibration_version: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = _created_column()

    job: Mapped[Job] = relationship(back_populates="result")


class ReviewItem(Base):
    __tablename__ = "review_items"
    __table_args__ = (
        CheckConstraint(f"status IN ({_values(ReviewStatus)})", name="status"),
        CheckConstraint("required_decisions IN (1, 2)", name="required_decisions"),
        UniqueConstraint("result_id", "segment_index", name="uq_review_items_result_segment"),
        Index("ix_review_items_queue", "status", "priority", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False, index=True)
    result_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("results.id", ondelete="CASCADE"), nullable=False)
    # Which segment of the result is in doubt (index into Result.segments).
    segment_index: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    start_seconds: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    end_seconds: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    channel_role: Mapped[str | None] = mapped_column(String(32))
    domain: Mapped[str | None] = mapped_column(String(64))
    embedding: Mapped[list[float]] = mapped_column(ARRAY(REAL), nullable=False)
    # The model's raw scores; the enhanced ones are in reason_details["enhanced_scores"].
    model_scores: Mapped[dict[str, float]] = mapped_column(JSONB, nullable=False)
    reasons: Mapped[list[str]] = mapped_column(ARRAY(String(48)), nullable=False)
    reason_details: Mapped[dict] = mapped_column(JSONB, nullable=False, default=dict)
    # The label the product reported (after enhancement and quality rules).
    model_label: Mapped[str] = mapped_column(String(16), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default=ReviewStatus.pending.value)
    # Chosen at creation (domain.review_routing): queue order (lower first) and how many people decide.
    priority: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    required_decisions: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    # A reopened item starts a new round: only the current round's decisions count.
    round: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    claimed_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("api_keys.id"))
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The final answer (one label, or two for a dual emotion) and who made it final, when.
    final_labels: Mapped[list[str] | None] = mapped_column(ARRAY(String(16)))
    resolved_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("api_keys.id"))
    created_at: Mapped[datetime] = _created_column()
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    result: Mapped[Result] = relationship()


class ReviewDecision(Base):
    """One person's answer on a review item; never changed or deleted (a
    correction is a new decision)."""

    __tablename__ = "review_decisions"
    __table_args__ = (
        CheckConstraint(f"kind IN ({_values(DecisionKind)})", name="kind"),
        CheckConstraint("cardinality(labels) IN (1, 2)", name="labels"),
        # Double review needs two different people: one review decision per reviewer per round.
        Index(
            "uq_review_decisions_reviewer",
            "item_id",
            "round",
            "reviewer_id",
            unique=True,
            postgresql_where=text("kind = 'review'"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    item_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("review_items.id", ondelete="CASCADE"), nullable=False, index=True
    )
    round: Mapped[int] = mapped_column(Integer, nullable=False)
    reviewer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("api_keys.id"), nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    labels: Mapped[list[str]] = mapped_column(ARRAY(String(16)), nullable=False)
    note: Mapped[str | None] = mapped_column(Text)
    # When the reviewer's lease began (review decisions): claim → decision is the time it took.
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    decided_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class ReviewEvent(Base):
    """The item's history, append-only."""

    __tablename__ = "review_events"
    __table_args__ = (
        CheckConstraint(f"kind IN ({_values(ReviewEventKind)})", name="kind"),
        Index("ix_review_events_item", "item_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    item_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("review_items.id", ondelete="CASCADE"), nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    actor_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("api_keys.id"))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    details: Mapped[dict] = mapped_column(JSONB, nullable=False, default=dict)


class AuditLog(Base):
    """Who erased or purged what, and when. Holds ids only, never personal data."""

    __tablename__ = "audit_log"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    at: Mapped[datetime] = _created_column()
    # The API key that asked, or None for the retention schedule.
    actor_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("api_keys.id"))
    action: Mapped[str] = mapped_column(String(64), nullable=False)
    # No foreign key: the line must outlive whatever it describes.
    job_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True), index=True)
    details: Mapped[dict] = mapped_column(JSONB, nullable=False, default=dict)


class Calibration(Base):
    """A versioned set of class centroids built from labelled embeddings (issue 5)."""

    __tablename__ = "calibrations"
    __table_args__ = (Index("uq_calibrations_active", "active", unique=True, postgresql_where=text("active")),)

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = _created_column()
    model_id: Mapped[str] = mapped_column(Text, nullable=False)
    method: Mapped[str] = mapped_column(String(32), nullable=False)
    object_key: Mapped[str] = mapped_column(Text, nullable=False)
    counts: Mapped[dict[str, int]] = mapped_column(JSONB, nullable=False)
    temperature: Mapped[float] = mapped_column(Float, nullable=False)
    heldout_accuracy: Mapped[float | None] = mapped_column(Float)
    details: Mapped[dict] = mapped_column(JSONB, nullable=False, default=dict)
    active: Mapped[bool] = mapped_column(nullable=False, default=False)


class DomainProfile(Base):
    """Per-domain class-prior adjustment estimated from reviewed items; versioned like calibrations."""

    __tablename__ = "domain_profiles"
    __table_args__ = (Index("uq_domain_profiles_active", "domain", unique=True, postgresql_where=text("active")),)

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    domain: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = _created_column()
    prior_shift: Mapped[dict[str, float]] = mapped_column(JSONB, nullable=False)
    thresholds: Mapped[dict[str, float]] = mapped_column(JSONB, nullable=False, default=dict)
    counts: Mapped[dict[str, int]] = mapped_column(JSONB, nullable=False)
    items: Mapped[int] = mapped_column(Integer, nullable=False)
    active: Mapped[bool] = mapped_column(nullable=False, default=False)


class Batch(Base):
    """Many recordings submitted as one: shared settings, one progress, one
    results table, one ``batch.finished`` webhook (rules: domain.batches)."""

    __tablename__ = "batches"
    __table_args__ = (
        CheckConstraint(f"status IN ({_values(BatchStatus)})", name="status"),
        CheckConstraint("granularity IN ('utterance', 'frame')", name="granularity"),
        Index("ix_batches_created", "created_at", "id"),
        Index("ix_batches_submitter_name", "submitter_id", "name"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    submitter_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("api_keys.id"), nullable=False)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default=BatchStatus.open.value)
    granularity: Mapped[str] = mapped_column(String(16), nullable=False, default="utterance")
    domain: Mapped[str | None] = mapped_column(String(64))
    channel_roles: Mapped[list[str] | None] = mapped_column(ARRAY(String(32)))
    # ``metadata`` is the declarative base's own attribute; the column keeps the API's name.
    meta: Mapped[dict] = mapped_column("metadata", JSONB, nullable=False, default=dict)
    callback_url: Mapped[str | None] = mapped_column(Text)
    # Also send each job's own job.finished event to callback_url.
    per_job_events: Mapped[bool] = mapped_column(nullable=False, default=False)
    created_at: Mapped[datetime] = _created_column()
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    callback_delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    callback_error: Mapped[str | None] = mapped_column(Text)


class IdempotencyKey(Base):
    """A client's Idempotency-Key and the answer its first request got (rules: domain.idempotency)."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (Index("ix_idempotency_keys_created", "created_at"),)

    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    route: Mapped[str] = mapped_column(String(200), nullable=False)
    # SHA-256 of the method, path, query and canonical body (files by their own SHA-256).
    fingerprint: Mapped[str] = mapped_column(String(64), nullable=False)
    # Both None while the first request is still running.
    status_code: Mapped[int | None] = mapped_column(Integer)
    response: Mapped[dict | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = _created_column()
