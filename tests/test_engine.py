"""The inference engine against FunASR's own AutoModel.generate, on a
random-weight checkpoint (the stand-in for the real weights)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from analysis.engine import EmotionEngine, ModelUnavailable, english_label, resolve_model_source
from config.settings import EngineSettings
from models import EMOTION_LABELS

LENGTHS = (0.6, 1.0, 2.5, 3.3, 5.1, 7.9)


@pytest.fixture(scope="module")
def engine(model_dir) -> EmotionEngine:
    return EmotionEngine.load(EngineSettings(model=str(model_dir), ncpu=2))


@pytest.fixture(scope="module")
def clips() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [(0.1 * rng.standard_normal(int(16000 * s))).astype(np.float32) for s in LENGTHS]


@pytest.fixture(scope="module")
def stock_funasr(model_dir):
    """FunASR's own AutoModel, untouched (the engine swaps in fused attention on its instance)."""
    from funasr import AutoModel

    return AutoModel(
        model=str(model_dir), device="cpu", ncpu=2, disable_update=True, disable_pbar=True, log_level="ERROR"
    )


def test_engine_agrees_with_funasr_generate(engine, clips, stock_funasr):
    from funasr.models.emotion2vec.modules import AltAttention

    assert all(
        type(m).forward is AltAttention.forward for m in stock_funasr.model.modules() if isinstance(m, AltAttention)
    )
    ours = engine.score(clips)
    for clip, mine in zip(clips, ours):
        (ref,) = stock_funasr.generate(clip, granularity="utterance", extract_embedding=True, disable_pbar=True)
        assert [english_label(t) for t in ref["labels"]] == list(EMOTION_LABELS)
        np.testing.assert_allclose(mine.scores, ref["scores"], atol=1e-5)
        np.testing.assert_allclose(mine.embedding, ref["feats"], atol=1e-4)


def test_batched_scores_agree_with_one_at_a_time(engine, clips, monkeypatch):
    single = [engine.score([c])[0] for c in clips]
    monkeypatch.setattr(engine, "max_padding_ratio", 1.0)  # one padded batch of very different lengths
    assert len(engine.batches([len(c) for c in clips])) == 1
    batched = engine.score(clips)
    worst = max(float(np.abs(b.scores - s.scores).max()) for b, s in zip(batched, single))
    print(f"max |batched - single| score difference: {worst:.2e}")
    assert worst < 1e-4
    for b, s in zip(batched, single):
        assert b.scores.sum() == pytest.approx(1.0, abs=1e-5)
        np.testing.assert_allclose(b.embedding, s.embedding, atol=1e-4)


def test_frame_features_match_the_utterance_embedding(engine, clips):
    (scored,) = engine.score([clips[3]], keep_frames=True)
    assert scored.frames.shape[1] == engine.info.embed_dim
    assert scored.frames.shape[0] == pytest.approx(len(clips[3]) / 16000 * engine.info.frame_rate, abs=2)
    np.testing.assert_allclose(scored.frames.mean(axis=0), scored.embedding, atol=1e-5)
    np.testing.assert_allclose(engine.classify(scored.embedding[None])[0], scored.scores, atol=1e-5)


def test_batches_stay_under_the_padded_budget_and_padding_ratio(engine, monkeypatch):
    monkeypatch.setattr(engine, "max_batch_seconds", 10.0)
    monkeypatch.setattr(engine, "max_padding_ratio", 1.0)
    lengths = [16000 * s for s in (1, 9, 2, 3, 4, 1, 8)]
    batches = engine.batches(lengths)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) == 1 or max(lengths[i] for i in batch) * len(batch) <= 10 * 16000
        assert [lengths[i] for i in batch] == sorted(lengths[i] for i in batch)
    assert len(batches) < len(lengths)

    monkeypatch.setattr(engine, "max_batch_seconds", 100.0)
    monkeypatch.setattr(engine, "max_padding_ratio", 0.1)
    lengths = [16000 * s for s in (5.0, 5.2, 9.0, 5.1, 9.5)]
    assert sorted(map(sorted, engine.batches(lengths))) == [[0, 1, 3], [2, 4]]


def test_int8_quantised_engine_scores(model_dir, clips):
    quantised = EmotionEngine.load(EngineSettings(model=str(model_dir), ncpu=2, precision="int8"))
    reference = EmotionEngine.load(EngineSettings(model=str(model_dir), ncpu=2))
    q, r = quantised.score(clips), reference.score(clips)
    worst = max(float(np.abs(a.scores - b.scores).max()) for a, b in zip(q, r))
    print(f"int8 vs fp32 max score difference on the tiny random model: {worst:.3f}")
    assert all(a.scores.sum() == pytest.approx(1.0, abs=1e-4) for a in q)
    assert quantised.info.precision == "int8"


def test_model_sources(tmp_path, model_dir):
    assert resolve_model_source("iic/emotion2vec_plus_large") == ("iic/emotion2vec_plus_large", False)
    assert resolve_model_source(str(model_dir)) == (str(model_dir), True)
    with pytest.raises(ModelUnavailable, match="does not exist"):
        resolve_model_source(str(tmp_path / "missing"))
    (tmp_path / "partial").mkdir()
    (tmp_path / "partial" / "config.yaml").write_text("model: Emotion2vec\n")
    with pytest.raises(ModelUnavailable, match=r"model\.pt"):
        resolve_model_source(str(tmp_path / "partial"))


def test_focus_window_is_found_inside_the_segment_and_rescored(engine, clips):
    from analysis.focus import WINDOW_WIDTHS, focus_evidence

    clip = clips[4]
    focus = focus_evidence(engine, clip)
    assert 0 <= focus["start"] < focus["end"] <= len(clip) / 16000 + 1e-6
    assert round(focus["end"] - focus["start"], 3) in WINDOW_WIDTHS
    assert sum(focus["crop_scores"].values()) == pytest.approx(1.0, abs=1e-3)
    assert 0.0 <= focus["crop_fear_share"] <= 1.0
    assert focus_evidence(engine, clip[:1600]) is None  # 0.1 s: no window fits


def test_fused_attention_is_bound_to_the_quantised_modules(model_dir):
    from funasr.models.emotion2vec.modules import AltAttention

    quantised = EmotionEngine.load(EngineSettings(model=str(model_dir), ncpu=2, precision="int8"))
    blocks = [m for m in quantised.model.modules() if isinstance(m, AltAttention)]
    assert blocks and all(m.forward.__self__ is m for m in blocks)
    assert all("quantized" in type(m.qkv).__module__ for m in blocks)


OPTION_SETS = (
    {"bias_once": True},
    {"conv_gemm": True},
    {"pos_conv_gemm": True},
    {"bias_once": True, "conv_gemm": True, "pos_conv_gemm": True},
    {"flex_attention": True},  # flex_attention's eager reference on CPU: the arithmetic, not the kernel
    # On a CPU only the shape buckets apply (padded rows and samples), not the graphs.
    {"bias_once": True, "cuda_graphs": True},
    {"bias_once": True, "conv_gemm": True, "pos_conv_gemm": True, "cuda_graphs": True},
)


@pytest.mark.parametrize("options", OPTION_SETS, ids=lambda o: "+".join(o))
def test_engine_options_keep_fp32_scores(model_dir, clips, options):
    """Each forward-pass switch agrees with FunASR's own forward on one padded
    batch of very different lengths, with distinct ALiBi scales per layer and
    head (the random model's are all 1.0, which would hide a mix-up)."""
    from analysis.engine import EngineOptions

    legacy = EngineOptions(bias_once=False)
    engine = EmotionEngine.load(
        EngineSettings(model=str(model_dir), ncpu=2, max_padding_ratio=1.0, **dataclasses.asdict(legacy))
    )
    scales = engine.model.modality_encoders["AUDIO"].alibi_scale
    assert scales.shape[0] > 1 and scales.shape[2] > 1  # per layer and per head
    with torch.no_grad():
        scales.copy_(torch.linspace(0.3, 1.7, scales.numel()).reshape(scales.shape))
    batch = [*clips, clips[3][: 2 * 16000 + 123]]  # 7 clips: cuda_graphs pads a row (bucket 8) and samples
    reference = engine.score(batch, keep_frames=True)
    mine = engine.with_options(**options).score(batch, keep_frames=True)
    assert engine.options.own_forward
    for r, m in zip(reference, mine):
        np.testing.assert_allclose(m.scores, r.scores, atol=1e-5)
        np.testing.assert_allclose(m.embedding, r.embedding, atol=1e-4)
        np.testing.assert_allclose(m.frames, r.frames, atol=1e-4)


def test_bias_once_is_the_default_and_equal_in_fp32(engine, clips, monkeypatch):
    monkeypatch.setattr(engine, "max_padding_ratio", 1.0)
    monkeypatch.setattr(engine, "options", engine.options)
    assert engine.options.bias_once  # the default
    once = engine.score(clips)
    legacy = engine.with_options(bias_once=False).score(clips)
    for a, b in zip(once, legacy):
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-6)  # bitwise equal where measured


def test_precision_auto_is_fp32_on_a_cpu(engine):
    # bf16 autocast is CUDA-only here; a CPU worker keeps fp32 unless int8 is asked for.
    assert engine.info.precision == "fp32"


def test_shape_buckets_bound_the_padding():
    from analysis.cuda_graphs import bucket_rows, bucket_samples

    rows = [bucket_rows(n) for n in range(1, 200)]
    assert rows[:12] == [1, 2, 3, 4, 6, 6, 8, 8, 12, 12, 12, 12]
    assert all(n <= r <= 1.5 * n for n, r in zip(range(1, 200), rows))  # padding: a third of the rows at most
    assert sorted(set(rows)) == [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256]
    assert bucket_samples(8000, 16000) == 8000
    assert bucket_samples(8001, 16000) == 16000
    assert bucket_samples(1, 16000) == 8000


def test_shape_buckets_stay_within_the_batch_budget(engine, monkeypatch):
    from analysis.cuda_graphs import bucket_rows, bucket_samples

    monkeypatch.setattr(engine, "options", engine.options)
    monkeypatch.setattr(engine, "max_batch_seconds", 200.0)
    monkeypatch.setattr(engine, "max_padding_ratio", 0.5)
    lengths = [int(16000 * s) for s in np.random.default_rng(3).uniform(2, 15, 400)]
    batches = engine.with_options(cuda_graphs=True).batches(lengths)
    assert sorted(i for b in batches for i in b) == list(range(400))
    padded = [bucket_rows(len(b)) * bucket_samples(max(lengths[i] for i in b), 16000) for b in batches]
    assert max(padded) <= 200 * 16000


def test_cuda_graphs_need_a_bias_without_host_syncs(engine, clips, monkeypatch):
    monkeypatch.setattr(engine, "options", engine.options)
    with pytest.raises(ValueError, match="BIAS_ONCE"):
        engine.with_options(bias_once=False, flex_attention=False, cuda_graphs=True).score(clips[:2])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU (bench.engine_gpu measures them)")
def test_cuda_graph_replays_match_the_eager_pass(model_dir, clips):
    engine = EmotionEngine.load(EngineSettings(model=str(model_dir), device="cuda", precision="fp32"))
    eager = engine.with_options(cuda_graphs=False).score(clips)
    graphed = engine.with_options(cuda_graphs=True)
    for _ in range(2):  # recorded, then replayed
        for e, g in zip(eager, graphed.score(clips)):
            np.testing.assert_allclose(g.scores, e.scores, atol=1e-5)
