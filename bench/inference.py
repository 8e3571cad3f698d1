"""Inference benchmark: FunASR's one-clip-at-a-time ``generate`` against
emoq's batched engine, on emotion2vec+ large's architecture with random
weights (same compute as the real model, meaningless answers).

    python -m bench.inference [--model DIR] [--device auto|cpu|cuda] [--quick]

Reports audio-seconds per wall-second, real-time factor, the batched/FunASR
ratio, reduced-precision agreement and speed-up, peak memory and the device;
then a 10-minute stereo call through the whole pipeline. Prints JSON last.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import soundfile as sf
import torch

from analysis.engine import ClipScores, EmotionEngine, pick_device
from analysis.pipeline import JobSpec, analyse
from analysis.synthetic import speech_like, stereo_call
from config import Settings
from ops.random_model import write_random_model

RATE = 16000
T = TypeVar("T")


def mixed_clips(count: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [speech_like(float(s), RATE, seed=i) for i, s in enumerate(rng.uniform(1.0, 30.0, count))]


def funasr_wall(model: Path, device: str, ncpu: int, clips: list[np.ndarray]) -> float:
    """Stock FunASR ``generate``, one clip at a time; the instance is dropped on return."""
    from funasr import AutoModel

    stock = AutoModel(
        model=str(model), device=device, ncpu=ncpu, disable_update=True, disable_pbar=True, log_level="ERROR"
    )
    stock.generate(clips[0][: RATE * 2], disable_pbar=True)  # warm-up
    wall, _ = timed(
        lambda: [
            stock.generate(c, granularity="utterance", extract_embedding=True, disable_pbar=True)[0] for c in clips
        ],
        device,
    )
    return wall


def low_precision_run(
    settings: Settings, precision: str, clips: list[np.ndarray], device: str
) -> tuple[float, list[ClipScores]]:
    engine = EmotionEngine.load(settings.engine.model_copy(update={"precision": precision}))
    engine.score([clips[0][: RATE * 2]])
    return timed(lambda: engine.score(clips), device)


def peak_memory_mb(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn: Callable[[], T], device: str) -> tuple[float, T]:
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - start, out


def throughput(audio_seconds: float, wall: float) -> dict:
    return {
        "wall_seconds": round(wall, 2),
        "audio_per_wall": round(audio_seconds / wall, 2),
        "rtf": round(wall / audio_seconds, 4),
    }


def agreement(reference: list, other: list) -> dict:
    diffs = [float(np.abs(a.scores - b.scores).max()) for a, b in zip(reference, other)]
    same = [int(np.argmax(a.scores) == np.argmax(b.scores)) for a, b in zip(reference, other)]
    return {"max_score_difference": round(max(diffs), 5), "top_label_agreement": round(float(np.mean(same)), 4)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("var/models/random-large"))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--clips", type=int, default=24)
    parser.add_argument("--call-seconds", type=float, default=600.0)
    parser.add_argument("--max-batch-seconds", type=float, default=None)
    parser.add_argument("--quick", action="store_true", help="6 clips and a 60 s call")
    args = parser.parse_args(argv)
    if args.quick:
        args.clips, args.call_seconds = 6, 60.0
    if not (args.model / "model.pt").exists():
        write_random_model(args.model, "large")
    device = pick_device(args.device)
    ncpu = 2 if device == "cpu" else 4
    budget = args.max_batch_seconds or (60.0 if device == "cpu" else 600.0)
    report: dict = {
        "device": torch.cuda.get_device_name(0)
        if device.startswith("cuda")
        else f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)",
        "model": str(args.model),
        "torch": torch.__version__,
    }

    clips = mixed_clips(args.clips)
    audio_seconds = sum(len(c) for c in clips) / RATE
    report["mixed_set"] = {"clips": len(clips), "audio_seconds": round(audio_seconds, 1)}
    settings = Settings.from_env(
        {"EMOQ_MODEL": str(args.model), "EMOQ_DEVICE": device, "EMOQ_NCPU": ncpu, "EMOQ_MAX_BATCH_SECONDS": budget}
    )
    engine = EmotionEngine.load(settings.engine)
    engine.score([clips[0][: RATE * 2]])  # warm-up

    wall_a = funasr_wall(args.model, device, ncpu, clips)
    report["funasr_generate"] = throughput(audio_seconds, wall_a)
    wall_b, fp32 = timed(lambda: engine.score(clips), device)
    report["engine_batched"] = throughput(audio_seconds, wall_b)
    report["engine_batched"]["batches"] = len(engine.batches([len(c) for c in clips]))
    report["ratio_engine_over_funasr"] = round(wall_a / wall_b, 2)

    low = "int8" if device == "cpu" else "bf16"
    wall_c, low_scores = low_precision_run(settings, low, clips, device)
    report[f"engine_{low}"] = {
        **throughput(audio_seconds, wall_c),
        "speedup_over_fp32_engine": round(wall_b / wall_c, 2),
        "ratio_over_funasr": round(wall_a / wall_c, 2),
        **agreement(fp32, low_scores),
    }

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "call.wav"
        sf.write(path, stereo_call(args.call_seconds, RATE).T, RATE, subtype="PCM_16")
        wall_d, analysis = timed(
            lambda: analyse(
                path, JobSpec("bench", "bench", "utterance", None, ("agent", "customer")), engine, None, settings
            ),
            device,
        )
    report["stereo_call"] = {
        "call_seconds": args.call_seconds,
        "segments": len(analysis.segments),
        "wall_seconds": round(wall_d, 1),
        "faster_than_real_time": wall_d < args.call_seconds,
        "rtf": round(wall_d / args.call_seconds, 3),
    }
    report["peak_memory_mb"] = round(peak_memory_mb(device), 1)

    for key in ("funasr_generate", "engine_batched", f"engine_{low}"):
        r = report[key]
        print(f"{key:18s} {r['audio_per_wall']:8.2f} audio-s/wall-s   RTF {r['rtf']:.4f}")
    print(f"engine / FunASR: {report['ratio_engine_over_funasr']}x   {low}: {report[f'engine_{low}']}")
    print(f"stereo call: {report['stereo_call']}")
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
