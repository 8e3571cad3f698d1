"""The one settings object. Read once from ``EMOQ_*`` variables at a process
edge (API factory, worker start, CLI) and passed down from there."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EMOQ_", extra="ignore")

    # Services
    database_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/emoq"
    redis_url: str = "redis://127.0.0.1:6379/0"
    s3_endpoint: str = "127.0.0.1:8333"
    s3_access_key: str = "emoq"
    s3_secret_key: str = "emoq-secret-key"
    s3_bucket: str = "emoq"
    s3_secure: bool = False
    s3_region: str = "us-east-1"

    # API
    host: str = "127.0.0.1"
    port: int = 7860
    bootstrap_api_key: str | None = None
    max_upload_bytes: int = 512 * 1024 * 1024
    max_duration_seconds: float = 7200.0
    review_lease_seconds: int = 900
    page_size_max: int = 200

    # Worker and queue
    model: str = "iic/emotion2vec_plus_large"
    model_revision: str = "master"
    device: str = "auto"
    ncpu: int = 2
    queue: str = "emoq.analysis"
    task_time_limit_seconds: int = 3600
    broker_visibility_timeout_seconds: int = 7200
    max_deliveries: int = 3
    retry_max: int = 5
    retry_backoff_max_seconds: int = 300
    # Published but still queued after this long: the message is presumed lost
    # (Redis restarted without persistence). Keep it above the longest backlog.
    stale_queued_seconds: int = 21600
    sweep_interval_seconds: int = 60
    worker_heartbeat_seconds: int = 10
    webhook_secret: str | None = None
    webhook_timeout_seconds: float = 10.0
    webhook_max_retries: int = 8
    # Webhooks to loopback, private or link-local addresses are refused unless
    # allowed: a submitter must not make workers probe the internal network.
    webhook_allow_private: bool = False
    ffmpeg: str | None = None
    work_dir: Path = ROOT / "var" / "work"

    # Inference engine (issue 4)
    precision: str = "fp32"  # fp32 | bf16 | fp16 (CUDA autocast) | int8 (CPU dynamic quantisation)
    max_batch_seconds: float | None = None  # None: 60 on CPU, 200 on a GPU
    max_padding_ratio: float | None = None  # None: 0.0 on CPU, 0.5 on a GPU
    # Forward-pass switches (worker.engine.EngineOptions; bench.engine_gpu measures each)
    engine_bias_once: bool = True
    engine_conv_gemm: bool = False
    engine_pos_conv_gemm: bool = False
    engine_compile: bool = False
    engine_cast_weights: bool = False  # CUDA bf16/fp16: weights stored in that dtype once
    engine_sdpa_backend: str = "auto"  # auto | efficient | cudnn | math
    engine_flex_attention: bool = False
    tf32: bool = False  # fp32 on a GPU uses TF32 tensor cores only when this is set
    frame_window_seconds: float = 0.4
    frame_hop_seconds: float = 0.1
    segment_min_seconds: float = 3.0
    segment_target_seconds: float = 10.0
    segment_max_seconds: float = 30.0
    segment_merge_gap_seconds: float = 0.5
    low_snr_db: float = 15.0
    min_speech_seconds: float = 1.0
    clipping_ratio_max: float = 0.01

    # Fear/disgust enhancement (issue 3 first version; thresholds are stored with every result)
    centroid_file: Path | None = None
    fd_redecide_margin: float = 0.12
    fd_fusion_model_weight: float = 0.6
    fd_review_margin: float = 0.15
    dual_emotion_margin: float = 0.05
    dual_emotion_min_score: float = 0.3
    low_confidence_threshold: float = 0.4
    fd_focus_weight: float = 0.25
    # Flags that put a segment in the review queue, and per-domain overrides as
    # JSON, e.g. {"medical": ["fear_disgust_ambiguous", "low_confidence", "low_snr"]}.
    review_flags: list[str] = [
        "fear_disgust_ambiguous",
        "dual_emotion",
        "low_confidence",
        "low_snr",
        "too_short",
    ]
    review_flags_by_domain: dict[str, list[str]] = {}

    def ffmpeg_exe(self) -> str:
        if self.ffmpeg:
            return self.ffmpeg
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()

    def review_flags_for(self, domain: str | None) -> frozenset[str]:
        return frozenset(self.review_flags_by_domain.get(domain or "", self.review_flags))

    def model_post_init(self, __context: object) -> None:
        if self.task_time_limit_seconds >= self.broker_visibility_timeout_seconds:
            # Redis redelivers an unacked message once the visibility timeout passes,
            # even while the first delivery is still running.
            raise ValueError("EMOQ_TASK_TIME_LIMIT_SECONDS must be below EMOQ_BROKER_VISIBILITY_TIMEOUT_SECONDS")


@lru_cache(maxsize=1)
def load_settings() -> Settings:
    return Settings()
