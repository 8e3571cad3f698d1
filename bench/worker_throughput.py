"""Worker throughput: stereo calls through the worker's own code path in K
worker processes, as a Celery prefork worker runs them.

    python -m bench.worker_throughput [--device auto|cpu|cuda] [--size large|tiny | --model DIR]
        [--calls 200] [--min-seconds 120] [--max-seconds 600] [--rate 8000]
        [--processes 1,2,4] [--vad silero|energy] [--precision auto|fp32|bf16] [--json-out PATH]

The layout measured is the one production runs: ``celery worker
--concurrency K`` (prefork, prefetch 1) on one machine or GPU. Here K
processes are started with multiprocessing (spawn); each loads the model once
(``EmotionEngine.load``, what ``worker_process_init`` does) and then
pulls recordings from one shared queue until it is empty, as pool processes
pull tasks from Redis. While one process decodes, runs VAD or enhances,
another's batch is on the model, so the GPU is fed without a home-made
scheduler. Each process holds its own model copy: the GPU memory per process
is reported.

Per recording, in each process: the WAV is read from a local file (instead of
S3); ``analysis.pipeline.analyse`` decodes, segments (Silero VAD), scores
(batched engine), re-scores focus windows and enhances; then
``worker.results`` builds the rows that ``persist`` writes and
they are JSON-encoded (the database itself is left out). ``--vad energy``
replaces Silero's probabilities with a frame-energy threshold (the rest of
the segmentation unchanged), to show the layout once VAD is cheap.

Reports calls per hour, audio hours per hour, the model's busy fraction (the
share of wall time in which at least one process was inside the engine), time
per stage (from ``Analysis.timings``), peak memory (RSS per process; GPU per
process from PyTorch and for the whole GPU from nvidia-smi when present).
Prints a table per K, then the report as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import platform
import queue
import resource
import shutil
import subprocess
import threading
import time
from pathlib import Path

import numpy as np

STAGES = ("decode", "vad", "model", "focus", "enhance", "persist")
_ENERGY_SPEECH_DBFS = -45.0


# --------------------------------------------------------------------- recordings


def make_calls(
    directory: Path, count: int, low: float, high: float, rate: int, seed: int = 0
) -> list[tuple[Path, float]]:
    """Stereo 16-bit WAVs at ``rate`` (8 kHz telephony by default), 2-12 s
    turns cut from a pool of synthetic speech, noise floor at -60 dBFS.
    Files already there (same name, same parameters) are reused; missing
    ones are written by a process pool."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    lengths = rng.uniform(low, high, count) if high > low else np.full(count, low)
    calls = [(directory / f"call-{rate}-{seed}-{i:04d}-{s:.1f}s.wav", float(s)) for i, s in enumerate(lengths)]
    missing = [
        (str(path), seconds, rate, seed * 10_000 + i) for i, (path, seconds) in enumerate(calls) if not path.exists()
    ]
    if len(missing) > 2:
        with mp.get_context("spawn").Pool(min(len(missing), os.cpu_count() or 1)) as pool:
            pool.starmap(_write_call, missing)
    else:
        for args in missing:
            _write_call(*args)
    return calls


def _write_call(path: str, seconds: float, rate: int, seed: int) -> None:
    import soundfile as sf

    from analysis.synthetic import speech_like, stereo_call

    snippets = [speech_like(12.0, rate, seed=1000 + k) for k in range(24)]
    call = stereo_call(seconds, rate, seed=seed, snippets=snippets, noise_dbfs=-60.0)
    tmp = Path(path).with_suffix(".tmp.wav")
    sf.write(str(tmp), call.T, rate, subtype="PCM_16")
    tmp.rename(path)


# --------------------------------------------------------------------- one worker process


def energy_probabilities(samples: np.ndarray, device: str = "cpu") -> np.ndarray:
    """Stand-in for Silero: 1.0 for 32 ms frames louder than -45 dBFS, else 0.0."""
    from analysis.segment import VAD_FRAME_SAMPLES

    n = math.ceil(len(samples) / VAD_FRAME_SAMPLES)
    padded = np.zeros(n * VAD_FRAME_SAMPLES, dtype=np.float32)
    padded[: len(samples)] = samples
    rms = np.sqrt(np.mean(np.square(padded.reshape(n, VAD_FRAME_SAMPLES), dtype=np.float64), axis=1))
    return (rms > 10 ** (_ENERGY_SPEECH_DBFS / 20)).astype(np.float32)


def _worker(index: int, config: dict, tasks, results, go) -> None:
    """One pool process: load once, then analyse recordings until the sentinel."""
    import torch

    started = time.monotonic()
    try:
        from analysis.engine import EmotionEngine
        from analysis.enhance import Centroids
        from analysis.pipeline import JobSpec, analyse
        from config import Settings
        from models import EMOTION_LABELS
        from worker.results import result_values, review_item_values

        settings = Settings.from_env(config["settings"])
        engine = EmotionEngine.load(settings.engine)
        if config["vad"] == "energy":
            import analysis.segment as segment_module

            setattr(segment_module, "speech_probabilities", energy_probabilities)  # noqa: B010
        else:
            from analysis.segment import load_vad

            load_vad()
        rng = np.random.default_rng(7)
        # Random centroids: the fear/disgust re-decision runs as it does once calibrated.
        centroids = Centroids(
            labels=EMOTION_LABELS,
            vectors=rng.standard_normal((len(EMOTION_LABELS), engine.info.embed_dim)).astype(np.float32),
            temperature=0.1,
            version=None,
            source="bench",
        )
        intervals: list[tuple[float, float]] = []
        score = engine.score

        def timed_score(clips, **kwargs):
            t = time.monotonic()
            try:
                return score(clips, **kwargs)
            finally:
                intervals.append((t, time.monotonic()))

        setattr(engine, "score", timed_score)  # noqa: B010  (the pipeline's calls, focus windows' too, are timed)
        score([np.zeros(16000 * s, dtype=np.float32) + 0.01 for s in (2, 5, 9)])  # warm-up
        cuda = engine.info.device.startswith("cuda")
        if cuda:
            torch.cuda.synchronize()
        results.put({"kind": "ready", "worker": index, "startup_seconds": time.monotonic() - started})
        go.wait()
        roles = ("agent", "customer")
        while True:
            item = tasks.get()
            if item is None:
                break
            path, seconds = item
            t0 = time.monotonic()
            spec = JobSpec(
                job_id=f"bench-{index}", object_key=str(path), granularity=config["granularity"], channel_roles=roles
            )
            analysis = analyse(Path(path), spec, engine, centroids, settings)
            t1 = time.monotonic()
            flags = settings.review.flags_for(spec.domain)
            result = result_values(analysis, flags, {})
            review_items = review_item_values(analysis, spec, settings.review)
            payload = json.dumps({"result": result, "review_items": review_items}, default=str)  # ids are UUIDs
            t2 = time.monotonic()
            timings = dict(analysis.timings, persist=t2 - t1)
            results.put(
                {
                    "kind": "call",
                    "worker": index,
                    "seconds": seconds,
                    "start": t0,
                    "end": t2,
                    "timings": timings,
                    "segments": len(analysis.segments),
                    "segment_audio_seconds": float(sum(s.end - s.start for s in analysis.segments)),
                    "review_items": len(review_items),
                    "json_bytes": len(payload),
                }
            )
        gpu = {}
        if cuda:
            gpu = {
                "gpu_allocated_peak_mb": torch.cuda.max_memory_allocated() / 2**20,
                "gpu_reserved_peak_mb": torch.cuda.max_memory_reserved() / 2**20,
            }
        results.put(
            {
                "kind": "done",
                "worker": index,
                "intervals": intervals,
                "rss_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                **gpu,
                "engine": {
                    "device": engine.info.device,
                    "precision": engine.info.precision,
                    "max_batch_seconds": engine.max_batch_seconds,
                    "options": {k: v for k, v in vars(engine.options).items() if v},
                },
            }
        )
    except BaseException as exc:  # report, don't hang the parent
        import traceback

        results.put(
            {
                "kind": "error",
                "worker": index,
                "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc()[-3000:],
            }
        )
        raise


# --------------------------------------------------------------------- the parent


class GpuSampler:
    """nvidia-smi every 250 ms: utilisation and memory used on the whole GPU
    (all processes, CUDA contexts included)."""

    def __init__(self, enabled: bool = True) -> None:
        self.samples: list[tuple[float, float]] = []
        self._proc = None
        exe = shutil.which("nvidia-smi") if enabled else None
        if exe:
            self._proc = subprocess.Popen(
                [
                    exe,
                    "--query-gpu=utilization.gpu,memory.used",
                    "--format=csv,noheader,nounits",
                    "-lms",
                    "250",
                    "-i",
                    os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0],
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            try:
                util, mem = (float(x) for x in line.split(","))
            except ValueError:
                continue
            self.samples.append((util, mem))

    def mark(self) -> int:
        return len(self.samples)

    def summary(self, since: int) -> dict:
        window = self.samples[since:]
        if not window:
            return {}
        return {
            "nvidia_smi_utilization_mean": round(float(np.mean([u for u, _ in window])), 1),
            "nvidia_smi_memory_used_peak_mb": round(max(m for _, m in window)),
        }

    def close(self) -> None:
        if self._proc is not None:
            self._proc.terminate()


def union_seconds(intervals: list[tuple[float, float]], lo: float, hi: float) -> float:
    total, end = 0.0, lo
    for a, b in sorted(intervals):
        a, b = max(a, end), min(b, hi)
        if b > a:
            total += b - a
            end = b
    return total


def run_pool(k: int, calls: list[tuple[Path, float]], config: dict, sampler: GpuSampler, timeout: float) -> dict:
    ctx = mp.get_context("spawn")
    tasks, results, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    spawned = time.monotonic()
    procs = [ctx.Process(target=_worker, args=(i, config, tasks, results, go), daemon=True) for i in range(k)]
    for p in procs:
        p.start()
    for path, seconds in calls:
        tasks.put((str(path), seconds))
    for _ in procs:
        tasks.put(None)
    ready: list[dict] = []
    rows: list[dict] = []
    done: list[dict] = []
    errors: list[dict] = []

    def collect(until) -> None:
        deadline = time.monotonic() + timeout
        while not until():
            try:
                msg = results.get(timeout=5)
            except queue.Empty:
                if time.monotonic() > deadline or not any(p.is_alive() for p in procs):
                    raise RuntimeError(
                        f"workers stalled: {len(ready)} ready, {len(rows)} calls, errors {errors}"
                    ) from None
                continue
            {"ready": ready, "call": rows, "done": done, "error": errors}[msg["kind"]].append(msg)
            if msg["kind"] == "error":
                raise RuntimeError(f"worker {msg['worker']} failed: {msg['error']}\n{msg['traceback']}")

    try:
        collect(lambda: len(ready) == k)
        mark = sampler.mark()
        t0 = time.monotonic()
        go.set()
        collect(lambda: len(done) == k)
        t1 = max(r["end"] for r in rows) if rows else time.monotonic()
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.terminate()
    wall = t1 - t0
    audio = sum(r["seconds"] for r in rows)
    stage_totals = {s: sum(r["timings"].get(s, 0.0) for r in rows) for s in STAGES}
    busy = sum(stage_totals.values())
    intervals = [iv for d in done for iv in d["intervals"]]
    model_union = union_seconds(intervals, t0, t1)
    mean_minutes = audio / len(rows) / 60
    report = {
        "processes": k,
        "calls": len(rows),
        "mean_call_minutes": round(mean_minutes, 2),
        "audio_hours": round(audio / 3600, 3),
        "wall_seconds": round(wall, 2),
        "startup_seconds_max": round(max(r["startup_seconds"] for r in ready), 1),
        "spawn_to_go_seconds": round(t0 - spawned, 1),
        "calls_per_hour": round(len(rows) / wall * 3600, 1),
        "ten_minute_calls_per_hour": round(audio / 600 / wall * 3600, 1),
        "audio_hours_per_hour": round(audio / wall, 2),
        "mean_seconds_per_call_in_a_process": round(busy / len(rows), 3),
        "model_busy_fraction": round(model_union / wall, 3),
        "model_seconds_sum_over_wall": round(sum(b - a for a, b in intervals if a >= t0) / wall, 3),
        "stage_seconds_per_call": {s: round(v / len(rows), 4) for s, v in stage_totals.items()},
        "stage_share": {s: round(v / busy, 3) for s, v in stage_totals.items()},
        "segments_per_call": round(float(np.mean([r["segments"] for r in rows])), 1),
        "segment_audio_seconds_per_call": round(float(np.mean([r["segment_audio_seconds"] for r in rows])), 1),
        "rss_peak_mb_per_process_max": round(max(d["rss_peak_mb"] for d in done)),
        "rss_peak_mb_sum": round(sum(d["rss_peak_mb"] for d in done)),
        "engine": done[0]["engine"],
    }
    if "gpu_allocated_peak_mb" in done[0]:
        report["gpu_allocated_peak_mb_per_process_max"] = round(max(d["gpu_allocated_peak_mb"] for d in done))
        report["gpu_reserved_peak_mb_per_process_max"] = round(max(d["gpu_reserved_peak_mb"] for d in done))
        report.update(sampler.summary(mark))
    return report


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--model", type=Path, default=None, help="model directory (default var/models/random-SIZE)")
    parser.add_argument("--size", choices=("large", "tiny"), default="large")
    parser.add_argument("--precision", default="auto", help="auto: bf16 on CUDA, fp32 on CPU")
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--min-seconds", type=float, default=120.0)
    parser.add_argument("--max-seconds", type=float, default=600.0)
    parser.add_argument("--rate", type=int, default=8000)
    parser.add_argument("--processes", default="1", help="comma-separated K values, each run in turn")
    parser.add_argument(
        "--ncpu", type=int, default=None, help="torch threads per process (default: cores/K on CPU, 2 on a GPU)"
    )
    parser.add_argument("--vad", choices=("silero", "energy"), default="silero")
    parser.add_argument("--granularity", choices=("utterance", "frame"), default="utterance")
    parser.add_argument("--data-dir", type=Path, default=Path("var/bench/calls"))
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds without progress before giving up")
    parser.add_argument("--json-out", type=Path, default=None)
    args = parser.parse_args(argv)

    import torch

    from analysis.engine import pick_device
    from ops.random_model import write_random_model

    device = pick_device(args.device)
    cuda = device.startswith("cuda")
    model = args.model or Path(f"var/models/random-{args.size}")
    if not (model / "model.pt").exists():
        write_random_model(model, args.size)
    precision = args.precision if args.precision != "auto" else ("bf16" if cuda else "fp32")
    t = time.monotonic()
    calls = make_calls(args.data_dir, args.calls, args.min_seconds, args.max_seconds, args.rate)
    synthesis = time.monotonic() - t
    settings = {"EMOQ_MODEL": str(model.resolve()), "EMOQ_DEVICE": device, "EMOQ_PRECISION": precision}
    try:
        import imageio_ffmpeg  # noqa: F401  (WAVs need no ffmpeg; Settings only asks for its path)
    except ImportError:
        settings["EMOQ_FFMPEG"] = os.environ.get("EMOQ_FFMPEG") or shutil.which("ffmpeg") or "ffmpeg"
    report: dict = {
        "bench": "worker_throughput",
        "device": torch.cuda.get_device_name(0) if cuda else f"cpu ({platform.machine()}, {os.cpu_count()} cores)",
        "torch": torch.__version__,
        "model": str(model),
        "precision": precision,
        "vad": args.vad,
        "granularity": args.granularity,
        "recordings": {
            "calls": len(calls),
            "seconds": [args.min_seconds, args.max_seconds],
            "rate": args.rate,
            "channels": 2,
            "synthesis_seconds": round(synthesis, 1),
            "source": "local WAV files (not S3)",
        },
        "layout": "K spawn processes, one model each, one shared queue (Celery prefork --concurrency K, prefetch 1)",
        "persist": "result_values + review_item_values + JSON encoding; no database",
        "runs": [],
    }
    sampler = GpuSampler(enabled=cuda)
    header = (
        f"{'K':>2s} {'calls':>5s} {'wall s':>7s} {'calls/h':>8s} {'10-min/h':>8s} {'audio h/h':>9s} {'model busy':>10s} "
        f"{'decode':>7s} {'vad':>7s} {'model':>7s} {'focus':>7s} {'enhance':>7s} {'persist':>7s} {'RSS MB':>7s} {'GPU MB':>7s}"
    )
    print(
        f"device: {report['device']}  model {model} ({precision})  VAD {args.vad}  {len(calls)} calls of "
        f"{args.min_seconds:g}-{args.max_seconds:g} s at {args.rate} Hz",
        flush=True,
    )
    print(header + "   (stage columns: seconds per call inside one process)", flush=True)
    try:
        for k in (int(x) for x in args.processes.split(",")):
            ncpu = args.ncpu or (max(1, (os.cpu_count() or 2) // k) if not cuda else 2)
            config = {"settings": dict(settings, EMOQ_NCPU=ncpu), "vad": args.vad, "granularity": args.granularity}
            try:
                run = run_pool(k, calls, config, sampler, args.timeout)
            except Exception as exc:
                report["runs"].append({"processes": k, "error": str(exc)[:2000]})
                print(f"{k:2d} FAILED: {str(exc)[:2000]}", flush=True)
                continue
            run["ncpu_per_process"] = ncpu
            report["runs"].append(run)
            if args.json_out:  # after every K: a run cut short by a timeout keeps what it measured
                args.json_out.parent.mkdir(parents=True, exist_ok=True)
                args.json_out.write_text(json.dumps(report, indent=2))
            st = run["stage_seconds_per_call"]
            gpu_mb = run.get("gpu_reserved_peak_mb_per_process_max", "-")
            print(
                f"{k:2d} {run['calls']:5d} {run['wall_seconds']:7.1f} {run['calls_per_hour']:8.1f} "
                f"{run['ten_minute_calls_per_hour']:8.1f} {run['audio_hours_per_hour']:9.2f} {run['model_busy_fraction']:10.3f} "
                + " ".join(f"{st[s]:7.3f}" for s in STAGES)
                + f" {run['rss_peak_mb_per_process_max']:7d} {gpu_mb!s:>7s}",
                flush=True,
            )
    finally:
        sampler.close()
    ok = [r for r in report["runs"] if "error" not in r]
    if ok:
        best = max(ok, key=lambda r: r["ten_minute_calls_per_hour"])
        report["best"] = {
            k: best[k]
            for k in (
                "processes",
                "calls_per_hour",
                "ten_minute_calls_per_hour",
                "audio_hours_per_hour",
                "model_busy_fraction",
            )
        }
        if cuda:
            report["best"]["target_5000_ten_minute_calls_per_hour"] = best["ten_minute_calls_per_hour"] >= 5000
        else:
            one = next((r for r in ok if r["processes"] == 1), None)
            if one:
                report["best"]["k1_faster_than_real_time"] = one["audio_hours_per_hour"] > 1.0
    line = json.dumps(report)
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(report, indent=2))
    print(line, flush=True)
    return report


if __name__ == "__main__":
    main()
