"""emotion2vec inference: FunASR loads the model; this module scores many
segments per forward pass.

FunASR's ``generate`` scores one clip at a time. Batching emotion2vec with a
padding mask alone is not exact (emotion2vec issues #37, #63): the padded
frames are non-zero by the time they reach the positional convolutions, whose
kernels then smear them into the last real frames. Zeroing padded frames in
front of every positional conv layer makes a padded batch agree with
one-at-a-time scoring to float rounding; tests hold it to 1e-4.

The forward pass is emoq's own walk over FunASR's modules (``_extract``),
so that the parts that cost a GPU most can be switched one by one
(``EngineOptions``) and measured side by side (``bench.engine_gpu``). With
every switch off it is FunASR's ``extract_features`` itself.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from analysis.attention import FlexBias, use_fused_attention
from analysis.cuda_graphs import Forward, GraphedForward, bucket_rows, bucket_samples
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
class EngineOptions:
    """Switches for the forward pass. Each one keeps fp32 results equal to
    float rounding (tests hold them to 1e-4 against FunASR); what each is
    worth on a GPU is measured, not assumed (``python -m bench.engine_gpu``).

    * ``bias_once``: FunASR builds the ALiBi bias as a batch-sized fp32
      tensor, pads it for the extra tokens, and every block rescales it (a
      new fp32 B×H×T×T tensor) which the attention then casts to the compute
      dtype and masks (two more). Here the position part is built once per
      batch without a batch dimension, and each block gets its bias in one
      pass, in the compute dtype, with the padded keys folded in as -inf and
      its rows aligned so SDPA's memory-efficient kernel reads it in place.
    * ``conv_gemm``: the waveform feature extractor (7 strided convs, each
      followed by a LayerNorm over channels) runs channels-last as im2col
      matmuls, with no transposes; its first conv has one input channel,
      a poor shape for cuDNN.
    * ``pos_conv_gemm``: the positional grouped convs (k=19, 16 groups) as
      one batched matmul per layer, channels-last.
    * ``compile``: ``torch.compile(dynamic=True)`` over the whole forward
      pass (fuses the LayerNorm/GELU/cast/bias kernels; compiles on first use
      of each kind of batch).
    * ``tf32``: fp32 matmuls and convs on TF32 tensor cores (CUDA). Off by
      default: fp32 on a GPU means fp32 unless this is asked for.
    * ``sdpa_backend``: ``auto`` lets PyTorch pick the attention kernel;
      ``efficient`` or ``cudnn`` force one (both take the additive bias).
    * ``flex_attention``: no bias tensor at all: ``flex_attention`` computes
      ALiBi inside its kernel from the slopes and skips padded key blocks
      (compiled on first use; needs the fused attention).
    * ``cuda_graphs``: each batch is padded to a shape bucket (rows 1, 2, 3,
      4, 6, 8, ...; samples to half a second) and, on CUDA, its forward pass
      replayed from a CUDA graph recorded once per bucket
      (``analysis.cuda_graphs``): one launch instead of ~10,000. With
      ``compile``, torch.compile's own graphs (mode ``reduce-overhead``).
      On a CPU only the padding applies, which is what the tests check.
    """

    bias_once: bool = True
    conv_gemm: bool = False
    pos_conv_gemm: bool = False
    compile: bool = False
    tf32: bool = False
    sdpa_backend: str = "auto"
    flex_attention: bool = False
    cuda_graphs: bool = False

    @classmethod
    def from_settings(cls, settings: EngineSettings) -> EngineOptions:
        return cls(
            bias_once=settings.bias_once,
            conv_gemm=settings.conv_gemm,
            pos_conv_gemm=settings.pos_conv_gemm,
            compile=settings.compile,
            tf32=settings.tf32,
            sdpa_backend=settings.sdpa_backend,
            flex_attention=settings.flex_attention,
            cuda_graphs=settings.cuda_graphs,
        )

    @property
    def own_forward(self) -> bool:
        return (
            self.bias_once
            or self.conv_gemm
            or self.pos_conv_gemm
            or self.compile
            or self.flex_attention
            or self.cuda_graphs
        )


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
        self,
        auto_model,
        info: ModelInfo,
        *,
        max_batch_seconds: float | None = None,
        max_padding_ratio: float | None = None,
        options: EngineOptions | None = None,
    ) -> None:
        self.auto_model = auto_model
        self.model = auto_model.model
        self.info = info
        if max_batch_seconds is None:
            # A GPU needs big batches to be busy: measured on an H200 (bf16,
            # 2-15 s clips), 200 s batches ran 1.26x faster than 60 s ones.
            max_batch_seconds = 60.0 if info.device == "cpu" else 200.0
        self.max_batch_seconds = max_batch_seconds
        self.options = options or EngineOptions()
        self._prepared_extract: Forward | None = None
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
        self.compute_dtype = torch.float32
        if info.precision in ("bf16", "fp16") and info.device.startswith("cuda"):
            dtype = torch.bfloat16 if info.precision == "bf16" else torch.float16
            self.compute_dtype = dtype
            # Autocast's cache of cast weights would be freed under a recorded graph.
            self._autocast = lambda: torch.autocast("cuda", dtype=dtype, cache_enabled=not self.options.cuda_graphs)
        self._own_forward_ok = _supports_own_forward(self.model)
        self._fused_attention = bool(getattr(self.model, "emoq_fused_attention", False))
        self._conv_gemm_ok = self._own_forward_ok and _conv_is_gemmable(self._encoder.local_encoder)
        self._slopes: dict[str, torch.Tensor] = {}

    @classmethod
    def load(cls, settings: EngineSettings, *, fused_attention: bool = True) -> EmotionEngine:
        """The model as the worker's settings describe it; load once per process."""
        model, revision = settings.model, settings.model_revision
        source, is_local = resolve_model_source(model)
        device = pick_device(settings.device)
        precision = settings.precision if settings.precision != "auto" else ("bf16" if device != "cpu" else "fp32")
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
        auto_model.model.emoq_fused_attention = fused_attention
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
        engine = cls(
            auto_model,
            info,
            max_batch_seconds=settings.max_batch_seconds,
            max_padding_ratio=settings.max_padding_ratio,
            options=EngineOptions.from_settings(settings),
        )
        if settings.cast_weights:
            engine.cast_weights()
        return engine

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
        only near-equal lengths share a pass there. With ``cuda_graphs`` the
        padded size is the shape bucket's, which the budget must hold too."""
        budget = int(self.max_batch_seconds * SAMPLE_RATE)
        order = sorted(range(len(lengths)), key=lambda i: lengths[i])
        batches: list[list[int]] = []
        current: list[int] = []
        real = 0
        for index in order:
            # Sorted ascending, so this clip is the longest in the batch so far.
            rows, width = self.padded_shape(len(current) + 1, lengths[index])
            padded = rows * width
            too_padded = padded and 1 - (real + lengths[index]) / padded > self.max_padding_ratio
            if current and (padded > budget or too_padded):
                batches.append(current)
                current, real = [], 0
            current.append(index)
            real += lengths[index]
        if current:
            batches.append(current)
        return batches

    def padded_shape(self, rows: int, longest: int) -> tuple[int, int]:
        """(rows, samples) a batch of ``rows`` clips, the longest ``longest``
        samples, runs as: itself, or with ``cuda_graphs`` its shape bucket."""
        if self.options.cuda_graphs:
            return bucket_rows(rows), bucket_samples(longest, SAMPLE_RATE)
        return rows, longest

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
        lengths = np.array([len(c) for c in clips])
        rows, width = self.padded_shape(len(clips), int(lengths.max()))
        # Padded batch and mask built on the host: one copy to the device, not one per clip.
        # Rows beyond the clips are silence, unpadded (a row of no length
        # would rely on FunASR's mask arithmetic for length 0); their results are dropped.
        host = np.zeros((rows, width), dtype=np.float32)
        for row, clip in enumerate(clips):
            host[row, : len(clip)] = clip
        source = torch.from_numpy(host).to(device, non_blocking=True)
        row_lengths = np.pad(lengths, (0, rows - len(clips)), constant_values=width)
        padding = torch.from_numpy(np.arange(width)[None, :] >= row_lengths[:, None]).to(device, non_blocking=True)
        if self.model.cfg.normalize:
            # Per clip, before padding: zeros must not enter the statistics.
            for row, n in enumerate(lengths.tolist()):
                source[row, :n] = F.layer_norm(source[row, :n], (n,))
        # With graphs always a mask (all False when nothing is padded): one graph a shape, not two.
        frame_padding = self._frame_padding_for(padding, always=self.options.cuda_graphs)
        with self._tf32(), self._autocast(), self._sdpa_backend():
            if self.options.own_forward and self._own_forward_ok:
                feats = self._extract_function()(source, frame_padding)
            else:
                with self._padding(frame_padding):
                    out = self.model.extract_features(
                        source, padding_mask=padding if frame_padding is not None else None
                    )
                feats = out["x"]
        # A graph's output is overwritten by its next replay: all of it is read
        # into new tensors and host copies below, before the next batch.
        feats = feats[: len(clips)].float()
        valid = torch.ones(feats.shape[:2], dtype=torch.bool, device=device)
        if frame_padding is not None:
            valid = ~frame_padding[: len(clips), : feats.shape[1]]
        weights = valid.unsqueeze(-1).float()
        embeddings = (feats * weights).sum(1) / weights.sum(1).clamp_min(1.0)
        scores = self.classify(embeddings)
        pooled = embeddings.cpu().numpy()
        if not keep_frames:
            return [ClipScores(scores[row], pooled[row], None) for row in range(len(clips))]
        host_feats, host_valid = feats.cpu().numpy(), valid.cpu().numpy()  # one copy off the device
        return [ClipScores(scores[row], pooled[row], host_feats[row, host_valid[row]]) for row in range(len(clips))]

    def _extract_function(self) -> Forward:
        """The own forward pass as the options run it: eager, compiled, or
        replayed from CUDA graphs (made on first use, kept until the options change)."""
        cuda = self.info.device.startswith("cuda")
        if self.options.cuda_graphs and not (self.options.bias_once or self.options.flex_attention):
            # FunASR's attention asks the GPU whether any key is padded: a host
            # sync, which a recorded graph cannot hold.
            raise ValueError("EMOQ_ENGINE_CUDA_GRAPHS needs EMOQ_ENGINE_BIAS_ONCE or EMOQ_ENGINE_FLEX_ATTENTION")
        if self._prepared_extract is None:
            if self.options.compile:
                mode = "reduce-overhead" if self.options.cuda_graphs and cuda else None
                self._prepared_extract = torch.compile(self._extract, dynamic=True, mode=mode)
            elif self.options.cuda_graphs and cuda:
                self._prepared_extract = GraphedForward(self._extract)
        return self._prepared_extract or self._extract

    @contextmanager
    def _tf32(self) -> Iterator[None]:
        """TF32 for fp32 matmuls and convs only when asked for (process-wide
        flags, so set around each pass and put back)."""
        if not self.info.device.startswith("cuda"):
            yield
            return
        saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = self.options.tf32
        try:
            yield
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved

    def _sdpa_backend(self):
        name = self.options.sdpa_backend
        if name == "auto":
            return nullcontext()
        from torch.nn.attention import SDPBackend, sdpa_kernel

        backends = {
            "efficient": SDPBackend.EFFICIENT_ATTENTION,
            "cudnn": SDPBackend.CUDNN_ATTENTION,
            "math": SDPBackend.MATH,
            "flash": SDPBackend.FLASH_ATTENTION,
        }
        if name not in backends:
            raise ValueError(f"unknown SDPA backend {name!r}; one of auto, {', '.join(backends)}")
        return sdpa_kernel([backends[name]])

    def with_options(self, **changes) -> EmotionEngine:
        """Switch options on this engine (the model is shared); for benchmarks."""
        self.options = replace(self.options, **changes)
        self._prepared_extract = None
        return self

    def cast_weights(self) -> int:
        """Store Linear and Conv1d weights in the autocast dtype once, instead
        of autocast casting them again on every batch: the same rounding,
        without ~2 copies per layer per batch. The classification head and
        the norms stay fp32. Irreversible; CUDA bf16/fp16 only. Returns how
        many tensors were cast."""
        if self.compute_dtype == torch.float32:
            return 0
        self._prepared_extract = None  # recorded graphs hold the old weights' addresses
        cast = 0
        for module in self.model.modules():
            if isinstance(module, (torch.nn.Linear, torch.nn.Conv1d)) and module is not self.model.proj:
                for name in ("weight", "bias"):
                    param = getattr(module, name, None)
                    if param is not None and param.dtype == torch.float32:
                        param.data = param.data.to(self.compute_dtype)
                        cast += 1
        return cast

    # -- emoq's forward pass over FunASR's modules (EngineOptions) ---------------------------

    def _extract(self, source: torch.Tensor, frame_padding: torch.Tensor | None) -> torch.Tensor:
        """Emotion2vec.extract_features (features only, no masking, extra
        tokens removed) for normalised, zero-padded waveforms (B, S) and the
        frame padding mask (B, T) or None; returns (B, T, D)."""
        enc = self._encoder
        model = self.model
        opts = self.options
        if opts.conv_gemm and self._conv_gemm_ok:
            x = _feature_extractor_gemm(enc.local_encoder, source)  # (B, T, C), channels last
            x = enc.project_features[1:](x)  # without its TransposeLast
        else:
            x = enc.local_features(source)  # convs + project_features: (B, T, D)
        x = x + _positional(enc.relative_positional_encoder, x, frame_padding, gemm=opts.pos_conv_gemm)
        extra = 0
        if enc.extra_tokens is not None:
            extra = enc.extra_tokens.size(1)
            x = torch.cat([enc.extra_tokens.expand(x.size(0), -1, -1), x], dim=1)
        key_padding = None if frame_padding is None else F.pad(frame_padding, (extra, 0))
        blocks = [*enc.context_encoder.blocks, *model.blocks]
        prenet = len(enc.context_encoder.blocks)
        scales = enc.alibi_scale.clamp_min(0)
        flex = opts.flex_attention and self._fused_attention
        if flex:
            block_mask = _key_padding_block_mask(key_padding, x.size(0), x.size(1))
            slopes = self._alibi_slopes(x.device)
            block_padding = None
        elif opts.bias_once:
            base, width = self._alibi_positions(x.size(1) - extra, extra, x.device)
            padded_keys = None
            if key_padding is not None:
                padded_keys = F.pad(key_padding, (0, width - key_padding.size(1)))[:, None, None, :]
            block_padding = None  # folded into the bias
        else:  # FunASR's way: one batch-sized fp32 bias, rescaled per block, masked in the attention
            stock = enc.get_alibi_bias(
                batch_size=x.size(0),
                time_steps=x.size(1) - extra,
                heads=enc.modality_cfg.num_alibi_heads,
                dtype=torch.float32,
                device=x.device,
            )
            stock = F.pad(stock, (extra, 0, extra, 0))
            block_padding = key_padding
        context = enc.context_encoder
        if context.norm is not None and not context.layer_norm_first:
            x = context.norm(x)
        for i, block in enumerate(blocks):
            if i == prenet and context.norm is not None and context.layer_norm_first:
                x = context.norm(x)
            scale = scales[i] if scales.size(0) > 1 else scales[0]  # (1, H, 1, 1)
            if flex:
                bias = FlexBias(-(slopes * scale.reshape(-1).float()), extra, block_mask)
            elif opts.bias_once:
                bias = (base * scale[0]).to(self.compute_dtype)  # (H, T, width)
                # (B, H, T, width) with the padded keys masked in one pass, else (1, H, T, width)
                bias = bias.masked_fill(padded_keys, float("-inf")) if padded_keys is not None else bias.unsqueeze(0)
                bias = bias[..., : x.size(1)]
            else:
                bias = stock * scale.type_as(stock)
            x, _ = block(x, block_padding, bias)
        if model.norm is not None:
            x = model.norm(x)
        return x[:, extra:]

    def _alibi_positions(self, frames: int, extra: int, device) -> tuple[torch.Tensor, int]:
        """FunASR's ALiBi position bias (slope × -|i - j|, fp32) for ``frames``
        frames, zero for the extra tokens, built on the device: (H, T, width)
        with T = extra + frames and width T rounded up to 16 (aligned rows)."""
        total = extra + frames
        width = -(-total // 16) * 16
        slopes = self._alibi_slopes(device)
        pos = torch.arange(frames, device=device)
        distance = -(pos[None, :] - pos[:, None]).abs()  # int64, as get_alibi computes it
        base = torch.zeros(slopes.numel(), total, width, dtype=torch.float32, device=device)
        base[:, extra:, extra:total] = slopes[:, None, None] * distance
        return base, width

    def _alibi_slopes(self, device) -> torch.Tensor:
        key = str(device)
        if key not in self._slopes:
            from funasr.models.emotion2vec.base import get_alibi

            heads = self._encoder.modality_cfg.num_alibi_heads
            self._slopes[key] = (-get_alibi(2, heads)[:, 0, 1]).to(device)  # get_alibi's own slopes, exactly
        return self._slopes[key]

    def _frame_padding_for(self, padding: torch.Tensor, *, always: bool = False) -> torch.Tensor | None:
        if not always and not padding.any():
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


def _supports_own_forward(model) -> bool:
    """emoq's forward covers emotion2vec+'s configuration: fixed ALiBi with
    one bias head per attention head, no fixed positional encoder. Anything
    else runs FunASR's own ``extract_features``."""
    try:
        enc = model.modality_encoders["AUDIO"]
        cfg = enc.modality_cfg
        heads = {block.attn.num_heads for block in [*enc.context_encoder.blocks, *model.blocks]}
        from funasr.models.emotion2vec.fairseq_modules import TransposeLast

        return (
            enc.get_alibi_bias is not None
            and not cfg.learned_alibi
            and heads == {cfg.num_alibi_heads}
            and enc.alibi_scale is not None
            and enc.fixed_positional_encoder is None
            and enc.relative_positional_encoder is not None
            and isinstance(enc.project_features[0], TransposeLast)
        )
    except (AttributeError, KeyError, IndexError, TypeError):
        return False


def _key_padding_block_mask(key_padding: torch.Tensor | None, batch: int, tokens: int):
    """flex_attention's block mask for padded keys (None when nothing is padded)."""
    if key_padding is None:
        return None
    from torch.nn.attention.flex_attention import create_block_mask

    lengths = (~key_padding).sum(1)  # padding is only ever at the end

    def real_key(b, h, q_idx, kv_idx):
        return kv_idx < lengths[b]

    return create_block_mask(real_key, batch, None, tokens, tokens, device=key_padding.device)


def _feature_extractor_gemm(extractor, source: torch.Tensor) -> torch.Tensor:
    """FunASR's ConvFeatureExtractionModel (layer_norm mode) channels-last:
    each conv as im2col + one matmul, its LayerNorm over channels without
    transposes. (B, S) waveforms → (B, T, C)."""
    x = source.unsqueeze(-1)  # (B, S, 1)
    for block in extractor.conv_layers:
        conv, norm, act = block[0], block[2][1], block[3]
        (k,), (stride,) = conv.kernel_size, conv.stride
        patches = x.unfold(1, k, stride)  # (B, T', C_in, k)
        x = F.linear(patches.reshape(*patches.shape[:2], -1), conv.weight.reshape(conv.out_channels, -1), conv.bias)
        x = act(norm(x))
    return x


def _conv_is_gemmable(extractor) -> bool:
    from funasr.models.emotion2vec.fairseq_modules import Fp32LayerNorm, TransposeLast

    try:
        return all(
            isinstance(b[0], torch.nn.Conv1d)
            and b[0].groups == 1
            and b[0].padding == (0,)
            and b[0].dilation == (1,)
            and isinstance(b[2][0], TransposeLast)
            and isinstance(b[2][1], Fp32LayerNorm)
            and isinstance(b[3], torch.nn.GELU)
            for b in extractor.conv_layers
        )
    except (TypeError, IndexError):
        return False


def _positional(encoder, x: torch.Tensor, frame_padding: torch.Tensor | None, *, gemm: bool) -> torch.Tensor:
    """The relative positional encoder on (B, T, C) features, padded frames
    zeroed in front of every conv (exactly what the conv pre-hooks do on
    FunASR's path); with ``gemm`` each conv layer runs channels-last as a
    batched matmul per group."""
    if gemm and _pos_is_gemmable(encoder):
        for layer in encoder[1:-1]:  # between the outer TransposeLasts
            if frame_padding is not None:
                x = x.masked_fill(frame_padding[:, : x.size(1), None], 0.0)
            x = _grouped_conv_gemm(layer[0], x)
            if layer[1].remove > 0:  # SamePad
                x = x[:, : -layer[1].remove]
            x = layer[3](x)  # the LayerNorm between the TransposeLasts
            x = layer[5](x)  # GELU
        return x

    def run(module, x):
        if isinstance(module, torch.nn.Sequential):
            for child in module:
                x = run(child, x)
            return x
        if isinstance(module, torch.nn.Conv1d) and frame_padding is not None:  # (B, C, T)
            x = x.masked_fill(frame_padding[:, None, : x.size(-1)], 0.0)
        return module(x)

    return run(encoder, x)


def _pos_is_gemmable(encoder) -> bool:
    from funasr.models.emotion2vec.fairseq_modules import SamePad, TransposeLast

    try:
        layers = list(encoder)
        return (
            isinstance(layers[0], TransposeLast)
            and isinstance(layers[-1], TransposeLast)
            and all(
                isinstance(layer[0], torch.nn.Conv1d)
                and layer[0].stride == (1,)
                and layer[0].dilation == (1,)
                and isinstance(layer[1], SamePad)
                and isinstance(layer[2], TransposeLast)
                and isinstance(layer[4], TransposeLast)
                and isinstance(layer[5], torch.nn.GELU)
                for layer in layers[1:-1]
            )
        )
    except (TypeError, IndexError):
        return False


def _grouped_conv_gemm(conv: torch.nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """A stride-1 grouped Conv1d on (B, T, C) as one batched matmul over groups."""
    batch, _, channels = x.shape
    (k,), groups = conv.kernel_size, conv.groups
    (pad,) = conv.padding if isinstance(conv.padding, tuple) else (k // 2,)
    x = F.pad(x, (0, 0, pad, pad))
    patches = x.unfold(1, k, 1)  # (B, T_out, C, k)
    t_out = patches.size(1)
    patches = patches.reshape(batch * t_out, groups, (channels // groups) * k).transpose(0, 1)  # (G, N, Cg*k)
    weight = conv.weight.reshape(groups, conv.out_channels // groups, -1).transpose(1, 2)  # (G, Cg*k, Og)
    out = torch.bmm(patches, weight.to(patches.dtype))  # under autocast bmm casts both anyway
    out = out.transpose(0, 1).reshape(batch, t_out, conv.out_channels)
    if conv.bias is not None:
        out = out + conv.bias.to(out.dtype)
    return out
