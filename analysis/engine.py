"""emotion2vec inference: FunASR loads the model; this module scores many
segments per forward pass.

FunASR's ``generate`` scores one clip at a time. Batching emotion2vec with a
padding mask alone is not exact (emotion2vec issues #37, #63): the padded
frames are non-zero by the time they reach the positional convolutions, whose
kernels then smear them into the last real frames. Zeroing padded frames in
front of every positional conv layer makes a padded batch agree with
one-at-a-time scoring to float rounding; tests hold it to 1e-4.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from analysis.attention import use_fused_attention
from analysis.labels import EMOTION_LABELS
from config.settings import EngineSettings

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
_LOCAL_MODEL_FILES = ("config.yaml", "model.pt", "tokens.txt")


class ModelUnavailable(RuntimeError):
    """The configured model could not be loaded; jobs fail with ``model_unavailable``."""


@dataclass(frozen=True)
class ModelInfo:
    model_id: str
    revision: str
    random_weights: bool
    embed_dim: int
    frame_rate: float
    device: str
    precision: str

    def as_dict(self) -> dict:
        return {
            "id": self.model_id,
            "revision": self.revision,
            "random_weights": self.random_weights,
            "embedding_dim": self.embed_dim,
            "precision": self.precision,
        }


@dataclass(frozen=True)
class ClipScores:
    scores: np.ndarray  # (9,) probabilities in EMOTION_LABELS order
    embedding: np.ndarray  # (D,) mean of the frame features
    frames: np.ndarray | None  # (T, D) frame features at ModelInfo.frame_rate, when asked for


def english_label(token: str) -> str:
    """FunASR's tokens are ``中文/english``; ``<unk>`` is the 'unknown' class."""
    if token == "<unk>":
        return "unknown"
    return token.split("/")[-1].strip().lower()


def resolve_model_source(model: str) -> tuple[str, bool]:
    """(source, is_local). A value naming a path must exist: FunASR would
    otherwise silently treat it as a hub id and try to download it."""
    path = Path(model).expanduser()
    looks_like_path = model.startswith((".", "/", "~")) or path.exists()
    if not looks_like_path:
        return model, False
    if not path.is_dir():
        raise ModelUnavailable(f"model directory {model!r} does not exist")
    missing = [name for name in _LOCAL_MODEL_FILES if not (path / name).is_file()]
    if missing:
        raise ModelUnavailable(f"model directory {model!r} lacks {', '.join(missing)}")
    return str(path.resolve()), True


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def pick_device(requested: str) -> str:
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


class EmotionEngine:
    """One loaded emotion2vec model; load once per worker process."""

    def __init__(
        self, auto_model, info: ModelInfo, *, max_batch_seconds: float, max_padding_ratio: float | None = None
    ) -> None:
        self.auto_model = auto_model
        self.model = auto_model.model
        self.info = info
        self.max_batch_seconds = max_batch_seconds
        if max_padding_ratio is None:
            # On a CPU one clip already fills the cores: padding is pure loss.
            max_padding_ratio = 0.0 if info.device == "cpu" else 0.5
        self.max_padding_ratio = max_padding_ratio
        self._encoder = self.model.modality_encoders["AUDIO"]
        tokens = auto_model.kwargs["token_list"]
        labels = tuple(english_label(t) for t in tokens if not t.startswith("unuse"))
        if labels != EMOTION_LABELS:
            raise ModelUnavailable(f"model classes {labels} are not emotion2vec+'s 9 classes")
        self._keep = torch.tensor([not t.startswith("unuse") for t in tokens])
        self._frame_padding: torch.Tensor | None = None
        for layer in self._encoder.relative_positional_encoder.modules():
            if isinstance(layer, torch.nn.Conv1d):
                layer.register_forward_pre_hook(self._zero_padded_frames)
        self._autocast: Callable[[], AbstractContextManager[object]] = nullcontext
        if info.precision in ("bf16", "fp16") and info.device.startswith("cuda"):
            dtype = torch.bfloat16 if info.precision == "bf16" else torch.float16
            self._autocast = lambda: torch.autocast("cuda", dtype=dtype)

    @classmethod
    def load(cls, settings: EngineSettings, *, fused_attention: bool = True) -> EmotionEngine:
        model, precision = settings.model, settings.precision
        revision = settings.model_revision
        source, is_local = resolve_model_source(model)
        device = pick_device(settings.device)
        try:
            from funasr import AutoModel

            auto_model = AutoModel(
                model=source,
                model_revision=revision,
                device=device,
                ncpu=settings.ncpu,
                disable_update=True,
                disable_pbar=True,
                disable_log=True,
                log_level="ERROR",
            )
        except Exception as exc:  # FunASR raises many kinds; all mean "no model"
            where = "the local directory" if is_local else "the model hub (no network, or an unknown id?)"
            raise ModelUnavailable(
                f"could not load model {model!r} from {where}: {str(exc)[:300]}; "
                "set EMOQ_MODEL to a local model directory (config.yaml, model.pt, tokens.txt)"
            ) from exc
        if getattr(auto_model, "model", None) is None:
            raise ModelUnavailable(f"could not load model {model!r}")
        model_dir = Path(auto_model.kwargs.get("model_path", source))
        marker = model_dir / "emoq_random_model.json"
        random_weights = marker.is_file() and json.loads(marker.read_text()).get("random_weights", False)
        if is_local:
            revision = "sha256:" + _file_digest(model_dir / "model.pt")
        if precision == "int8":
            if device != "cpu":
                raise ModelUnavailable("int8 dynamic quantisation runs on CPU only")
            auto_model.model = torch.ao.quantization.quantize_dynamic(
                auto_model.model, {torch.nn.Linear}, dtype=torch.qint8
            )
        if fused_attention:
            # After quantisation: quantize_dynamic copies the model, and a bound
            # forward copied with it would still point at the float original.
            use_fused_attention(auto_model.model)
        conv_layers = auto_model.model.modality_encoders["AUDIO"].feature_enc_layers
        hop = int(np.prod([stride for _, _, stride in conv_layers]))
        info = ModelInfo(
            model_id=source,
            revision=revision,
            random_weights=bool(random_weights),
            embed_dim=int(auto_model.model.cfg.get("embed_dim")),
            frame_rate=SAMPLE_RATE / hop,
            device=device,
            precision=precision,
        )
        log.info("loaded emotion model %s (%s) on %s, %s", source, revision, device, precision)
        return cls(
            auto_model, info, max_batch_seconds=settings.max_batch_seconds, max_padding_ratio=settings.max_padding_ratio
        )

    def _zero_padded_frames(self, _module, inputs):
        if self._frame_padding is None:
            return None
        (x,) = inputs  # (B, C, T)
        return (x.masked_fill(self._frame_padding[:, None, : x.shape[-1]], 0.0),)

    @contextmanager
    def _padding(self, frame_padding: torch.Tensor | None) -> Iterator[None]:
        self._frame_padding = frame_padding
        try:
            yield
        finally:
            self._frame_padding = None

    def batches(self, lengths: Sequence[int]) -> list[list[int]]:
        """Length-sorted index batches whose padded size stays under the budget
        and whose padding stays under ``max_padding_ratio`` of it: on a CPU a
        padded frame costs as much as a real one and batching gains little, so
        only near-equal lengths share a pass there."""
        budget = int(self.max_batch_seconds * SAMPLE_RATE)
        order = sorted(range(len(lengths)), key=lambda i: lengths[i])
        batches: list[list[int]] = []
        current: list[int] = []
        real = 0
        for index in order:
            # Sorted ascending, so this clip is the longest in the batch so far.
            padded = lengths[index] * (len(current) + 1)
            too_padded = padded and 1 - (real + lengths[index]) / padded > self.max_padding_ratio
            if current and (padded > budget or too_padded):
                batches.append(current)
                current, real = [], 0
            current.append(index)
            real += lengths[index]
        if current:
            batches.append(current)
        return batches

    @torch.inference_mode()
    def score(self, clips: Sequence[np.ndarray], *, keep_frames: bool = False) -> list[ClipScores]:
        """Score mono 16 kHz clips; the result list follows the input order."""
        results: list[ClipScores | None] = [None] * len(clips)
        for batch in self.batches([len(c) for c in clips]):
            for index, scored in zip(batch, self._forward([clips[i] for i in batch], keep_frames)):
                results[index] = scored
        return results  # type: ignore[return-value]

    def _forward(self, clips: list[np.ndarray], keep_frames: bool) -> list[ClipScores]:
        device = self.info.device
        lengths = [len(c) for c in clips]
        longest = max(lengths)
        source = torch.zeros(len(clips), longest, device=device)
        padding = torch.ones(len(clips), longest, dtype=torch.bool, device=device)
        for row, clip in enumerate(clips):
            wav = torch.as_tensor(clip, dtype=torch.float32, device=device)
            if self.model.cfg.normalize:
                # Per clip, before padding: zeros must not enter the statistics.
                wav = F.layer_norm(wav, wav.shape)
            source[row, : len(clip)] = wav
            padding[row, : len(clip)] = False
        frame_padding = self._frame_padding_for(padding)
        with self._padding(frame_padding), self._autocast():
            out = self.model.extract_features(source, padding_mask=padding if frame_padding is not None else None)
        feats = out["x"].float()
        valid = torch.ones(feats.shape[:2], dtype=torch.bool, device=device)
        if frame_padding is not None:
            valid = ~frame_padding[:, : feats.shape[1]]
        weights = valid.unsqueeze(-1).float()
        embeddings = (feats * weights).sum(1) / weights.sum(1).clamp_min(1.0)
        scores = self.classify(embeddings)
        results = []
        for row in range(len(clips)):
            frames = feats[row, valid[row]].cpu().numpy() if keep_frames else None
            results.append(ClipScores(scores[row], embeddings[row].cpu().numpy(), frames))
        return results

    def _frame_padding_for(self, padding: torch.Tensor) -> torch.Tensor | None:
        if not padding.any():
            return None
        frames = padding.shape[1]
        for _, kernel, stride in self._encoder.feature_enc_layers:
            frames = (frames - kernel) // stride + 1
        # convert_padding_mask only reads the shape, dtype and device of its first argument.
        shape_of_frames = torch.empty(padding.shape[0], frames, 0, device=padding.device)
        return self._encoder.convert_padding_mask(shape_of_frames, padding)

    @torch.inference_mode()
    def classify(self, features: torch.Tensor | np.ndarray) -> np.ndarray:
        """The classification head on pooled features (N, D) → probabilities (N, 9)."""
        x = torch.as_tensor(features, dtype=torch.float32, device=self.info.device)
        logits = self.model.proj(x).float()
        logits = logits.masked_fill(~self._keep.to(logits.device), float("-inf"))
        probs = torch.softmax(logits, dim=-1)[:, self._keep.to(logits.device)]
        return probs.cpu().numpy()
