"""Engine variants side by side: how much of the chip each forward-pass
option (``analysis.engine.EngineOptions``), batch budget and precision uses.

    python -m bench.engine_gpu [--device auto|cpu|cuda] [--model DIR | --size large|tiny]
                               [--clips 400] [--variants all|NAME,NAME] [--compile] [--profile]

Clips of 2-15 s cut from synthetic speech (``analysis.synthetic``) go through
one engine per precision (the model is emotion2vec+ large's architecture
with random weights: the same compute, meaningless answers). For each
variant: audio-seconds per wall-second, achieved TFLOP/s and its share of
the bf16 matmul peak measured in the same run (an 8192³ matmul), max
|score - fp32 score| and top-label agreement against the fp32 reference
(FunASR's own forward, no TF32), peak GPU memory. Model FLOPs per audio
second are counted once with ``torch.utils.flop_counter`` on a 10 s clip.
``--profile`` adds the top GPU kernels of the baseline and of the best
variant. Prints a table, then the report as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from analysis.engine import EmotionEngine, pick_device
from analysis.synthetic import speech_like
from config.settings import EngineSettings
from ops.random_model import write_random_model

RATE = 16000
LEGACY = dict(
    bias_once=False,
    conv_gemm=False,
    pos_conv_gemm=False,
    compile=False,
    tf32=False,
    sdpa_backend="auto",
    flex_attention=False,
    cuda_graphs=False,
)
EAGER_ALL = dict(bias_once=True, conv_gemm=True, pos_conv_gemm=True)


@dataclass
class Variant:
    name: str
    precision: str  # fp32 | bf16
    batch_seconds: float
    options: dict = field(default_factory=dict)
    cast_weights: bool = False
    what: str = ""


def variants(device: str, compile_too: bool) -> list[Variant]:
    low = "bf16" if device.startswith("cuda") else "fp32"  # autocast is CUDA-only; on CPU every row is fp32
    rows = [
        Variant("fp32_reference", "fp32", 200, dict(LEGACY), what="FunASR's forward, fp32, no TF32: the reference"),
        Variant("fp32_all_tf32", "fp32", 200, dict(LEGACY, **EAGER_ALL, tf32=True), what="all eager options + TF32"),
        Variant(f"{low}_b60_baseline", low, 60, dict(LEGACY), what="today's path: FunASR's forward, 60 s batches"),
        Variant(f"{low}_b200", low, 200, dict(LEGACY), what="200 s batches"),
        Variant(f"{low}_b200_bias_once", low, 200, dict(LEGACY, bias_once=True)),
        Variant(f"{low}_b200_conv_gemm", low, 200, dict(LEGACY, conv_gemm=True)),
        Variant(f"{low}_b200_pos_conv_gemm", low, 200, dict(LEGACY, pos_conv_gemm=True)),
        Variant(f"{low}_b200_all", low, 200, dict(LEGACY, **EAGER_ALL), what="bias_once + conv_gemm + pos_conv_gemm"),
        Variant(f"{low}_b200_all_sdpa_efficient", low, 200, dict(LEGACY, **EAGER_ALL, sdpa_backend="efficient")),
        Variant(f"{low}_b200_all_sdpa_cudnn", low, 200, dict(LEGACY, **EAGER_ALL, sdpa_backend="cudnn")),
        Variant(
            f"{low}_b200_all_cast",
            low,
            200,
            dict(LEGACY, **EAGER_ALL),
            cast_weights=True,
            what="+ weights stored in bf16",
        ),
        Variant(f"{low}_b400_all_cast", low, 400, dict(LEGACY, **EAGER_ALL), cast_weights=True),
        # flex_attention compiles its kernel on first use (seconds to a minute), so last.
        Variant(
            f"{low}_b200_flex",
            low,
            200,
            dict(LEGACY, flex_attention=True),
            what="ALiBi inside flex_attention's kernel, no bias tensor",
        ),
        Variant(
            f"{low}_b200_all_flex_cast", low, 200, dict(LEGACY, **EAGER_ALL, flex_attention=True), cast_weights=True
        ),
        # Recorded on first use of each shape bucket: the warm-up pass records them all.
        Variant(
            f"{low}_b200_all_cast_graphs",
            low,
            200,
            dict(LEGACY, **EAGER_ALL, cuda_graphs=True),
            cast_weights=True,
            what="+ shape buckets replayed from CUDA graphs",
        ),
        Variant(
            f"{low}_b200_all_flex_cast_graphs",
            low,
            200,
            dict(LEGACY, **EAGER_ALL, flex_attention=True, cuda_graphs=True),
            cast_weights=True,
        ),
    ]
    if compile_too:
        rows.append(
            Variant(
                f"{low}_b200_all_compile",
                low,
                200,
                dict(LEGACY, **EAGER_ALL, compile=True),
                cast_weights=True,
                what="+ torch.compile(dynamic=True); first pass compiles",
            )
        )
        rows.append(
            Variant(
                f"{low}_b200_all_compile_graphs",
                low,
                200,
                dict(LEGACY, **EAGER_ALL, compile=True, cuda_graphs=True),
                cast_weights=True,
                what="+ torch.compile(mode=reduce-overhead) over shape buckets: fused kernels in CUDA graphs",
            )
        )
    if low == "fp32":  # nothing to cast on CPU, no CUDA kernels to pick; keep the rows that differ
        rows = [
            v for v in rows if (not v.cast_weights or "compile" in v.name or "flex" in v.name) and "sdpa" not in v.name
        ]
    return rows


def clip_set(count: int, low: float, high: float, seed: int = 0) -> list[np.ndarray]:
    """Crops of a few long synthetic recordings: speech-like, cheap to make."""
    rng = np.random.default_rng(seed)
    pool = [speech_like(high + 5, RATE, seed=100 + i) for i in range(6)]
    clips = []
    for _ in range(count):
        n = int(rng.uniform(low, high) * RATE)
        src = pool[int(rng.integers(len(pool)))]
        a = int(rng.integers(0, len(src) - n))
        clips.append((src[a : a + n] * rng.uniform(0.3, 1.0)).astype(np.float32))
    return clips


def sig(x: float, digits: int = 4) -> float:
    return float(f"{x:.{digits}g}")


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def matmul_peak_tflops(device: str, n: int = 8192) -> dict:
    """Best of a few n³ matmuls: bf16 on CUDA, fp32 on CPU (smaller n)."""
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    if not device.startswith("cuda"):
        n = 2048
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    best = math.inf
    for i in range(12 if device.startswith("cuda") else 3):
        sync(device)
        t = time.perf_counter()
        reps = 5 if device.startswith("cuda") else 1
        for _ in range(reps):
            a @ b
        sync(device)
        if i:  # the first is warm-up
            best = min(best, (time.perf_counter() - t) / reps)
    del a, b
    return {"n": n, "dtype": str(dtype).replace("torch.", ""), "tflops": sig(2 * n**3 / best / 1e12)}


def flops_per_audio_second(engine: EmotionEngine, seconds: float = 10.0) -> dict:
    """FLOPs of one forward pass on one clip, counted by PyTorch's FlopCounterMode
    (matmuls, convs, attention); the attention is counted by hand when the
    counter does not know the kernel."""
    from torch.utils.flop_counter import FlopCounterMode

    clip = speech_like(seconds, RATE, seed=1)
    counter = FlopCounterMode(display=False)
    with counter:
        engine.score([clip])
    total = counter.get_total_flops()
    by_op = {str(k): int(v) for k, v in counter.get_flop_counts().get("Global", {}).items()}
    attention_counted = any("attention" in k for k in by_op)
    if not attention_counted:
        cfg = engine.model.cfg
        frames = seconds * engine.info.frame_rate + engine._encoder.modality_cfg.num_extra_tokens
        blocks = cfg.depth + engine._encoder.modality_cfg.prenet_depth
        extra = blocks * 4 * frames * frames * cfg.embed_dim  # QK^T and AV, 2 FLOPs per MAC
        total += extra
        by_op["attention (by hand)"] = int(extra)
    return {
        "clip_seconds": seconds,
        "gflop_per_audio_second": float(f"{total / seconds / 1e9:.4g}"),
        "attention_counted_by_flop_counter": attention_counted,
        "by_op_gflop": {k: round(v / 1e9, 2) for k, v in sorted(by_op.items(), key=lambda kv: -kv[1])},
    }


def run_variant(engine: EmotionEngine, variant: Variant, clips, device: str, repeat: int) -> tuple[dict, list]:
    engine.max_batch_seconds = variant.batch_seconds
    engine.with_options(**variant.options)
    lengths = [len(c) for c in clips]
    batches = engine.batches(lengths)
    padded = sum(math.prod(engine.padded_shape(len(b), max(lengths[i] for i in b))) for b in batches)
    audio = sum(lengths) / RATE
    before = 0
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    # Compiling and recording graphs happen on first use of each shape: warm up on every clip.
    records = variant.options.get("compile") or variant.options.get("cuda_graphs")
    warm = clips if records else clips[:: max(1, len(clips) // 16)]
    t = time.perf_counter()
    engine.score(warm)
    sync(device)
    warm_seconds = time.perf_counter() - t
    best, scores = math.inf, []
    for _ in range(repeat):
        sync(device)
        t = time.perf_counter()
        scores = engine.score(clips)
        sync(device)
        best = min(best, time.perf_counter() - t)
    row: dict[str, Any] = {
        "what": variant.what,
        "precision": variant.precision,
        "batch_seconds": variant.batch_seconds,
        "options": {k: v for k, v in variant.options.items() if v},
        "cast_weights": variant.cast_weights,
        "batches": len(batches),
        "padding_share": round(1 - sum(lengths) / padded, 4),
        "wall_seconds": round(best, 3),
        "audio_per_second": round(audio / best, 1),
        "warmup_seconds": round(warm_seconds, 1),
    }
    if device.startswith("cuda"):
        # This engine's weights plus the peak of what its passes allocated (other engines' weights left out).
        weights = sum(p.numel() * p.element_size() for p in engine.model.parameters())
        row["gpu_activation_peak_mb"] = round((torch.cuda.max_memory_allocated() - before) / 2**20)
        row["gpu_peak_mb"] = round(row["gpu_activation_peak_mb"] + weights / 2**20)
    return row, scores


def agreement(reference: list, other: list) -> dict:
    diffs = [float(np.abs(a.scores - b.scores).max()) for a, b in zip(reference, other)]
    same = [int(np.argmax(a.scores) == np.argmax(b.scores)) for a, b in zip(reference, other)]
    return {"max_score_diff": round(max(diffs), 5), "top_label_agreement": round(float(np.mean(same)), 4)}


def profile_pass(engine: EmotionEngine, variant: Variant, clips, device: str, top: int = 15) -> dict:
    """Kernel time by name for one pass; what a GPU spends its time on."""
    from torch.profiler import ProfilerActivity, profile

    engine.max_batch_seconds = variant.batch_seconds
    engine.with_options(**variant.options)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.startswith("cuda") else [])
    sync(device)
    t = time.perf_counter()
    with profile(activities=activities) as prof:
        engine.score(clips)
        sync(device)
    wall = time.perf_counter() - t
    events = prof.key_averages()
    cuda = device.startswith("cuda")

    def dev_time(e) -> float:  # µs, self time on the device (or CPU)
        return (
            float(getattr(e, "self_device_time_total", 0) or getattr(e, "self_cuda_time_total", 0))
            if cuda
            else float(e.self_cpu_time_total)
        )

    kernels = (
        [e for e in events if dev_time(e) > 0 and (not cuda or e.device_type.name == "CUDA")]
        if cuda
        else [e for e in events if e.key.startswith("aten::")]
    )
    total = sum(dev_time(e) for e in kernels) or 1.0
    rows = sorted(kernels, key=dev_time, reverse=True)[:top]

    def is_matmul(name: str) -> bool:
        n = name.lower()
        return any(
            s in n for s in ("gemm", "cutlass", "xmma", "matmul", "aten::mm", "aten::addmm", "aten::bmm", "nvjet")
        )

    def is_conv(name: str) -> bool:
        n = name.lower()
        return any(s in n for s in ("conv", "cudnn", "implicit", "winograd", "fprop", "dgrad"))

    def is_attention(name: str) -> bool:
        n = name.lower()
        return any(s in n for s in ("fmha", "attention", "flash", "cutlass::kernel<attentionkernel"))

    copies = sum(e.count for e in events if e.key == "aten::copy_")
    launches = sum(e.count for e in kernels) if cuda else None
    return {
        "variant": variant.name,
        "wall_seconds": round(wall, 3),
        "device_busy_share": round(total / 1e6 / wall, 3) if cuda else None,
        "kernel_launches": launches,
        "aten_copy_calls": copies,
        "matmul_share": round(sum(dev_time(e) for e in kernels if is_matmul(e.key)) / total, 3),
        "attention_share": round(sum(dev_time(e) for e in kernels if is_attention(e.key)) / total, 3),
        "conv_share": round(sum(dev_time(e) for e in kernels if is_conv(e.key) and not is_matmul(e.key)) / total, 3),
        "top": [
            {
                "name": e.key[:110],
                "ms": round(dev_time(e) / 1e3, 2),
                "share": round(dev_time(e) / total, 3),
                "count": e.count,
            }
            for e in rows
        ],
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="model directory (default var/models/random-SIZE)")
    parser.add_argument("--size", choices=("large", "tiny"), default="large")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--clips", type=int, default=400)
    parser.add_argument("--min-seconds", type=float, default=2.0)
    parser.add_argument("--max-seconds", type=float, default=15.0)
    parser.add_argument("--repeat", type=int, default=2, help="timed passes per variant (best is kept)")
    parser.add_argument("--variants", default="all", help="comma-separated names, or all")
    parser.add_argument("--compile", action="store_true", help="add the torch.compile variant (compiles for minutes)")
    parser.add_argument("--profile", action="store_true", help="kernel profile of the baseline and the fastest variant")
    parser.add_argument("--json-out", type=Path, default=None)
    args = parser.parse_args(argv)

    device = pick_device(args.device)
    model = args.model or Path(f"var/models/random-{args.size}")
    if not (model / "model.pt").exists():
        write_random_model(model, args.size)
    cuda = device.startswith("cuda")
    report: dict = {
        "bench": "engine_gpu",
        "device": torch.cuda.get_device_name(0)
        if cuda
        else f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)",
        "torch": torch.__version__,
        "model": str(model),
        "clips": args.clips,
        "clip_seconds": [args.min_seconds, args.max_seconds],
    }
    t0 = time.perf_counter()
    clips = clip_set(args.clips, args.min_seconds, args.max_seconds)
    report["audio_seconds"] = round(sum(len(c) for c in clips) / RATE, 1)
    report["synthesis_seconds"] = round(time.perf_counter() - t0, 1)
    report["matmul_peak"] = matmul_peak_tflops(device)
    peak = report["matmul_peak"]["tflops"]
    print(
        f"device: {report['device']}  torch {torch.__version__}  matmul peak {peak:.4g} TFLOP/s "
        f"({report['matmul_peak']['dtype']} {report['matmul_peak']['n']}³)",
        flush=True,
    )

    wanted = variants(device, args.compile)
    if args.variants != "all":
        names = set(args.variants.split(","))
        wanted = [v for v in wanted if v.name in names or v.name == "fp32_reference"]
    ncpu = 2 if not cuda else 4
    engines: dict[tuple[str, bool], EmotionEngine] = {}

    def engine_for(v: Variant) -> EmotionEngine:
        key = (v.precision, v.cast_weights)
        if key not in engines:
            e = EmotionEngine.load(
                EngineSettings.model_validate(
                    {"model": str(model), "device": device, "ncpu": ncpu, "precision": v.precision, **LEGACY}
                )
            )
            if v.cast_weights:
                e.cast_weights()
            engines[key] = e
        return engines[key]

    reference = engine_for(wanted[0])
    report["flops"] = flops_per_audio_second(reference)
    gflop = report["flops"]["gflop_per_audio_second"]
    print(
        f"model: {gflop} GFLOP per audio second (10 s clip); {report['audio_seconds']} s of audio in {len(clips)} clips",
        flush=True,
    )

    rows: dict[str, dict] = {}
    report["variants"] = rows

    def save() -> None:  # after every variant: a step killed by its timeout keeps what it measured
        if args.json_out:
            args.json_out.parent.mkdir(parents=True, exist_ok=True)
            args.json_out.write_text(json.dumps(report, indent=2))

    ref_scores = None
    header = f"{'variant':34s} {'audio-s/s':>10s} {'TFLOP/s':>8s} {'%peak':>6s} {'max|Δ|':>8s} {'agree':>6s} {'GPU MB':>7s} {'batches':>7s}"
    print(header, flush=True)
    for v in wanted:
        try:
            row, scores = run_variant(engine_for(v), v, clips, device, args.repeat)
        except Exception as exc:  # one failing variant (a compile error, say) must not lose the others
            rows[v.name] = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
            print(f"{v.name:34s} FAILED {rows[v.name]['error']}", flush=True)
            save()
            continue
        if ref_scores is None:
            ref_scores = scores
        row.update(agreement(ref_scores, scores))
        row["tflops"] = sig(row["audio_per_second"] * gflop / 1e3)
        row["share_of_matmul_peak"] = sig(row["tflops"] / peak, 3) if peak > 0 else None
        rows[v.name] = row
        print(
            f"{v.name:34s} {row['audio_per_second']:10.1f} {row['tflops']:8.3g} {100 * (row['share_of_matmul_peak'] or 0):5.1f}% "
            f"{row['max_score_diff']:8.5f} {row['top_label_agreement']:6.4f} {row.get('gpu_peak_mb', '-'):>7} "
            f"{row['batches']:7d}",
            flush=True,
        )
        save()

    # The candidates: the reduced-precision rows on a GPU; every row but the reference on a CPU.
    ok = {
        k: r
        for k, r in rows.items()
        if "error" not in r and k != "fp32_reference" and (not cuda or not k.startswith("fp32"))
    }
    if ok:
        best = max(ok, key=lambda k: ok[k]["audio_per_second"])
        base = next((k for k in ok if "baseline" in k), None)
        report["best"] = {
            "variant": best,
            **{
                k: ok[best][k]
                for k in ("audio_per_second", "share_of_matmul_peak", "max_score_diff", "top_label_agreement")
            },
        }
        if base:
            report["best"]["speedup_over_baseline"] = round(
                ok[best]["audio_per_second"] / ok[base]["audio_per_second"], 2
            )
        if cuda:
            report["targets"] = {
                "audio_per_second_>=_7500": ok[best]["audio_per_second"] >= 7500,
                "share_of_peak_>=_0.25": (ok[best]["share_of_matmul_peak"] or 0) >= 0.25,
                "max_score_diff_<=_1e-2": ok[best]["max_score_diff"] <= 1e-2,
                "top_label_agreement_>=_0.995": ok[best]["top_label_agreement"] >= 0.995,
            }
        if args.profile:
            by_name = {v.name: v for v in wanted}
            profiles = []
            for name in dict.fromkeys([base, best]):
                if name and name in by_name:
                    v = by_name[name]
                    profiles.append(profile_pass(engine_for(v), v, clips, device))
                    p = profiles[-1]
                    print(
                        f"\nprofile {name}: busy {p['device_busy_share']}, launches {p['kernel_launches']}, "
                        f"copy_ {p['aten_copy_calls']}, matmul {p['matmul_share']}, attention {p['attention_share']}, "
                        f"conv {p['conv_share']}",
                        flush=True,
                    )
                    for k in p["top"]:
                        print(f"  {k['ms']:9.2f} ms {100 * k['share']:5.1f}% x{k['count']:<6d} {k['name']}", flush=True)
            report["profiles"] = profiles
    report["rss_peak_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    report["bench_seconds"] = round(time.perf_counter() - t0, 1)
    save()
    print(json.dumps(report), flush=True)
    return report


if __name__ == "__main__":
    main()
