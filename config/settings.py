"""The one settings object, in typed groups. Read once from ``EMOQ_*``
variables at a process edge (API factory, worker start, CLI) and passed down
from there; code takes the group it needs (``settings.engine``,
``settings.enhancement``…), never a loose argument list.

Each group reads its own variables, so the variable names stay flat
(``EMOQ_PRECISION``, not ``EMOQ_ENGINE__PRECISION``): operators' environment
files and the compose file don't change with the code's grouping. A field
whose variable name is not ``EMOQ_`` + its name says so in its alias.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ROOT = Path(__file__).resolve().parent.parent

ReviewFlag = Literal[
    "fear_disgust_ambiguous",
    "dual_emotion",
    "low_confidence",
    "low_snr",
    "too_short",
    "calibration_missing",
    "no_speech",
    "clipping",
]


def _group(prefix: str = "EMOQ_") -> SettingsConfigDict:
    return SettingsConfigDict(
        env_prefix=prefix, extra="ignore", validate_by_name=True, validate_by_alias=True, protected_namespaces=()
    )


class StorageSettings(BaseSettings):
    """PostgreSQL, S3 (MinIO in production, SeaweedFS locally) and local scratch space."""

    model_config = _group()

    database_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/emoq"
    s3_endpoint: str = "127.0.0.1:8333"
    s3_access_key: str = "emoq"
    s3_secret_key: str = "emoq-secret-key"
    s3_bucket: str = "emoq"
    s3_secure: bool = False
    s3_region: str = "us-east-1"
    # A dead S3 server must not hold an API worker: connecting gives up fast and is
    # not retried; reads (a large upload's answer) may take longer.
    s3_connect_timeout_seconds: float = 1.5
    s3_read_timeout_seconds: float = 60.0
    work_dir: Path = ROOT / "var" / "work"
    # The ffmpeg binary for containers libsndfile can't read; default: imageio-ffmpeg's own.
    ffmpeg: str | None = None

    def ffmpeg_exe(self) -> str:
        if self.ffmpeg:
            return self.ffmpeg
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()


class ServerSettings(BaseSettings):
    """What the HTTP API accepts."""

    model_config = _group()

    bootstrap_api_key: str | None = None
    max_upload_bytes: int = 512 * 1024 * 1024
    max_duration_seconds: float = 7200.0
    page_size_max: int = 200
    # Sent with every 503: how long a client should wait before trying again.
    retry_after_seconds: int = 5


class QueueSettings(BaseSettings):
    """Redis, Celery delivery and the sweep that keeps job rows and messages together."""

    model_config = _group()

    redis_url: str = "redis://127.0.0.1:6379/0"
    analysis_queue: str = Field("emoq.analysis", alias="EMOQ_QUEUE")
    task_time_limit_seconds: int = 3600
    broker_visibility_timeout_seconds: int = 7200
    max_deliveries: int = 3
    retry_max: int = 5
    retry_backoff_max_seconds: int = 300
    # Last resort: a job still queued this long is re-published if the broker no
    # longer holds its message. (Jobs published before the broker last started
    # are checked at every sweep; a waiting message is never re-published.)
    stale_queued_seconds: int = 21600
    sweep_interval_seconds: int = 60
    # How often beat runs the retention purge (EMOQ_AUDIO_RETENTION_DAYS, EMOQ_RESULT_RETENTION_DAYS).
    retention_interval_seconds: int = 3600
    worker_heartbeat_seconds: int = 10

    @model_validator(mode="after")
    def _time_limit_below_visibility(self) -> QueueSettings:
        if self.task_time_limit_seconds >= self.broker_visibility_timeout_seconds:
            # Redis redelivers an unacked message once the visibility timeout passes,
            # even while the first delivery is still running.
            raise ValueError("EMOQ_TASK_TIME_LIMIT_SECONDS must be below EMOQ_BROKER_VISIBILITY_TIMEOUT_SECONDS")
        return self


class EngineSettings(BaseSettings):
    """The emotion model and how it runs."""

    model_config = _group()

    model: str = "iic/emotion2vec_plus_large"
    model_revision: str = "master"
    # auto, cpu, cuda or cuda:N
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")
    ncpu: int = 2
    # bf16/fp16: CUDA autocast; int8: CPU dynamic quantisation of the Linear layers.
    # auto: bf16 on a GPU (measured on an H200: top label as fp32's on 99.75 % of clips,
    # 2.8x its speed), fp32 on a CPU.
    precision: Literal["auto", "fp32", "bf16", "fp16", "int8"] = "auto"
    max_batch_seconds: float | None = None  # None: 60 on CPU, 200 on a GPU
    max_padding_ratio: float | None = None  # None: 0.0 on CPU, 0.5 on a GPU
    # Forward-pass switches (analysis.engine.EngineOptions; bench.engine_gpu measures each).
    bias_once: bool = Field(True, alias="EMOQ_ENGINE_BIAS_ONCE")
    conv_gemm: bool = Field(False, alias="EMOQ_ENGINE_CONV_GEMM")
    pos_conv_gemm: bool = Field(False, alias="EMOQ_ENGINE_POS_CONV_GEMM")
    compile: bool = Field(False, alias="EMOQ_ENGINE_COMPILE")
    # CUDA bf16/fp16: the weights are stored in that dtype once instead of cast every batch.
    cast_weights: bool = Field(False, alias="EMOQ_ENGINE_CAST_WEIGHTS")
    sdpa_backend: Literal["auto", "efficient", "cudnn", "math"] = Field("auto", alias="EMOQ_ENGINE_SDPA_BACKEND")
    flex_attention: bool = Field(False, alias="EMOQ_ENGINE_FLEX_ATTENTION")
    # Batches padded to shape buckets and replayed from CUDA graphs (CUDA only).
    cuda_graphs: bool = Field(False, alias="EMOQ_ENGINE_CUDA_GRAPHS")
    # fp32 on a GPU uses TF32 tensor cores only when this is set.
    tf32: bool = False
    frame_window_seconds: float = 0.4
    frame_hop_seconds: float = 0.1
    # False on workers that only serve the maintenance queue: no model, no GPU memory.
    load_model: bool = True


class SegmentationSettings(BaseSettings):
    """How a channel's speech is cut into the 3-10 s utterances the model scores best."""

    model_config = _group("EMOQ_SEGMENT_")

    min_seconds: float = 3.0
    target_seconds: float = 10.0
    max_seconds: float = 30.0
    merge_gap_seconds: float = 0.5


class QualitySettings(BaseSettings):
    """Thresholds of the per-segment quality flags."""

    model_config = _group()

    low_snr_db: float = 15.0
    min_speech_seconds: float = 1.0
    clipping_ratio_max: float = 0.01


class EnhancementSettings(BaseSettings):
    """The fear/disgust enhancement's thresholds. Every result stores them
    (``policy``, the fields below ``centroid_file``), and a domain profile
    may override them by name."""

    model_config = _group()

    POLICY: ClassVar[tuple[str, ...]] = (
        "redecide_margin",
        "model_weight",
        "review_margin",
        "dual_margin",
        "dual_min_score",
        "low_confidence",
        "focus_weight",
    )

    centroid_file: Path | None = None
    redecide_margin: float = Field(0.12, alias="EMOQ_FD_REDECIDE_MARGIN")
    model_weight: float = Field(0.6, alias="EMOQ_FD_FUSION_MODEL_WEIGHT")
    review_margin: float = Field(0.15, alias="EMOQ_FD_REVIEW_MARGIN")
    dual_margin: float = Field(0.05, alias="EMOQ_DUAL_EMOTION_MARGIN")
    dual_min_score: float = Field(0.3, alias="EMOQ_DUAL_EMOTION_MIN_SCORE")
    low_confidence: float = Field(0.4, alias="EMOQ_LOW_CONFIDENCE_THRESHOLD")
    focus_weight: float = Field(0.25, alias="EMOQ_FD_FOCUS_WEIGHT")

    def policy(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in self.POLICY}

    def with_overrides(self, thresholds: Mapping[str, float]) -> EnhancementSettings:
        """A domain profile's threshold overrides; names outside the policy are ignored."""
        return self.model_copy(update={k: float(v) for k, v in thresholds.items() if k in self.POLICY})


class ReviewSettings(BaseSettings):
    """Which flags open a review item, in which order people see them, how
    many people decide one, and how long a reviewer's claim lasts."""

    model_config = _group("EMOQ_REVIEW_")

    lease_seconds: int = 900
    # Per-domain overrides as JSON, e.g. {"medical": ["fear_disgust_ambiguous", "low_snr"]}.
    flags: list[ReviewFlag] = ["fear_disgust_ambiguous", "dual_emotion", "low_confidence", "low_snr", "too_short"]
    flags_by_domain: dict[str, list[ReviewFlag]] = {}
    # Share of new items that two different reviewers decide (quality control).
    double_fraction: float = Field(0.1, ge=0.0, le=1.0)
    # Reasons in queue order: an item takes the place of its first listed reason; unlisted reasons come last.
    priority: list[ReviewFlag] = ["fear_disgust_ambiguous", "dual_emotion"]
    # The longest stretch of a call a reviewer can load at once ("whole call", "other channel").
    call_audio_seconds: float = Field(600.0, gt=0)

    def flags_for(self, domain: str | None) -> frozenset[str]:
        return frozenset(self.flags_by_domain.get(domain or "", self.flags))


class WebhookSettings(BaseSettings):
    """Signed completion callbacks."""

    model_config = _group("EMOQ_WEBHOOK_")

    secret: str | None = None
    timeout_seconds: float = 10.0
    max_retries: int = 8
    # Webhooks to loopback, private or link-local addresses are refused unless
    # allowed: a submitter must not make workers probe the internal network.
    allow_private: bool = False


class RetentionSettings(BaseSettings):
    """How long personal data is kept. Unset: kept until erased (DELETE /v1/jobs/{id})."""

    model_config = _group()

    # Recordings and frame files of finished jobs older than this are purged; results stay.
    audio_retention_days: float | None = Field(None, gt=0)
    # Results (scores, embeddings, review items) of finished jobs older than this are purged too.
    result_retention_days: float | None = Field(None, gt=0)


class ObservabilitySettings(BaseSettings):
    """Logs and metrics."""

    model_config = _group()

    # json: one JSON object per line (for log collectors); text: for people at a terminal.
    log_format: Literal["json", "text"] = "json"
    # When set, GET /metrics needs "Authorization: Bearer <token>".
    metrics_token: str | None = None
    # A worker serves its own processes' metrics on this port (0: off; the API's
    # /metrics shows them when both share PROMETHEUS_MULTIPROC_DIR).
    worker_metrics_port: int = Field(0, ge=0, le=65535)


class BatchSettings(BaseSettings):
    """Bulk intake: batches, idempotent creation, imports by URL or S3 prefix, backpressure."""

    model_config = _group()

    # Past this much queued audio, requests that add recordings get 429 backlog_full.
    max_backlog_audio_hours: float = Field(200.0, gt=0)
    # What an import not fetched yet counts in that backlog: a typical call-centre call.
    unfetched_import_seconds: float = Field(300.0, gt=0)
    backlog_retry_after_seconds: int = Field(60, ge=1)
    # How long an Idempotency-Key's answer is kept (the promise to clients is 24 h).
    idempotency_ttl_hours: float = Field(24.0, ge=24.0)
    # URL imports from loopback, private or link-local addresses are refused unless
    # allowed, as for webhooks: a submitter must not read the internal network.
    import_allow_private: bool = False
    import_timeout_seconds: float = 30.0
    # Buckets S3-prefix imports may read; empty: any the service's credentials can
    # read, except the service's own bucket (other submitters' recordings live there).
    import_s3_buckets: list[str] = []


class Settings(BaseModel):
    storage: StorageSettings = Field(default_factory=StorageSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    queue: QueueSettings = Field(default_factory=QueueSettings)
    engine: EngineSettings = Field(default_factory=EngineSettings)
    segmentation: SegmentationSettings = Field(default_factory=SegmentationSettings)
    quality: QualitySettings = Field(default_factory=QualitySettings)
    enhancement: EnhancementSettings = Field(default_factory=EnhancementSettings)
    review: ReviewSettings = Field(default_factory=ReviewSettings)
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    observability: ObservabilitySettings = Field(default_factory=ObservabilitySettings)
    batches: BatchSettings = Field(default_factory=BatchSettings)

    @classmethod
    def groups(cls) -> dict[str, type[BaseSettings]]:
        return {name: field.annotation for name, field in cls.model_fields.items()}  # type: ignore[misc]

    @classmethod
    def variables(cls) -> dict[str, tuple[str, str]]:
        """Every ``EMOQ_*`` variable → (group, field)."""
        found: dict[str, tuple[str, str]] = {}
        for group_name, group in cls.groups().items():
            prefix = group.model_config.get("env_prefix", "")
            for name, field in group.model_fields.items():
                found[(field.alias or f"{prefix}{name}").upper()] = (group_name, name)
        return found

    def override(self, values: Mapping[str, Any]) -> Settings:
        """A copy with ``values`` (keyed by variable name, e.g. ``EMOQ_PRECISION``) validated on top."""
        variables = self.variables()
        per_group: dict[str, dict[str, Any]] = {}
        for variable, value in values.items():
            if variable.upper() not in variables:
                raise ValueError(f"unknown setting {variable}")
            group_name, field_name = variables[variable.upper()]
            per_group.setdefault(group_name, {})[field_name] = value
        return self.model_copy(
            update={
                name: type(group := getattr(self, name)).model_validate({**group.model_dump(), **fields})
                for name, fields in per_group.items()
            }
        )

    @classmethod
    def from_env(cls, overrides: Mapping[str, Any] | None = None) -> Settings:
        """The environment, with ``overrides`` on top."""
        return cls().override(overrides or {})


@lru_cache(maxsize=1)
def load_settings() -> Settings:
    return Settings.from_env()
