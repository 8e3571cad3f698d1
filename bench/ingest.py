"""Ingest benchmark: how fast the API takes a night's recordings in.

    python -m bench.ingest --url http://127.0.0.1:7860 --api-key KEY
                           [--files 1000] [--seconds 5] [--concurrency 8] [--label worker-stopped]

Writes ``--files`` distinct 16 kHz mono WAV files of ``--seconds`` each, then
submits them as one new batch through the client's own upload path (what
``emoq submit --concurrency N`` runs), timing every upload request. Prints
files per second (first request to last answer), request latency p50/p95/max,
and JSON last. Run it against ``make run`` once with the analysis worker
stopped and once with it running (``--label`` tells the runs apart).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import soundfile as sf
from rich.console import Console

from analysis.synthetic import speech_like
from client.api import Api
from client.files import find_audio
from client.submit import find_or_create_batch, upload_all

RATE = 16000


class TimedApi(Api):
    """The client's API, recording each upload's latency (retries included)."""

    latencies: list[float]

    def upload(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            return super().upload(*args, **kwargs)
        finally:
            self.latencies.append(time.perf_counter() - started)


def write_recordings(folder: Path, count: int, seconds: float) -> None:
    for i in range(count):
        sf.write(folder / f"rec-{i:05d}.wav", speech_like(seconds, RATE, seed=i), RATE, subtype="PCM_16")


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=os.environ.get("EMOQ_URL", "http://127.0.0.1:7860"))
    parser.add_argument("--api-key", default=os.environ.get("EMOQ_API_KEY"), required="EMOQ_API_KEY" not in os.environ)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--label", default="", help="a name for this run (e.g. worker-stopped)")
    args = parser.parse_args()

    console = Console(stderr=True)
    with tempfile.TemporaryDirectory(prefix="emoq-ingest-") as tmp:
        folder = Path(tmp)
        console.print(f"writing {args.files} recordings of {args.seconds:g} s ...")
        write_recordings(folder, args.files, args.seconds)
        files = find_audio([folder])
        api = TimedApi(args.url, args.api_key, pool_size=args.concurrency)
        api.latencies = []
        batch, _ = find_or_create_batch(api, f"bench-ingest-{int(time.time())}", {})
        started = time.perf_counter()
        outcomes = upload_all(api, batch["id"], files, args.concurrency, console)
        wall = time.perf_counter() - started

    counts = Counter(o.status for o in outcomes)
    latencies = sorted(api.latencies)
    report = {
        "label": args.label,
        "files": args.files,
        "seconds_per_file": args.seconds,
        "concurrency": args.concurrency,
        "outcomes": dict(counts),
        "wall_seconds": round(wall, 2),
        "files_per_second": round(args.files / wall, 2),
        "latency_ms": {
            "p50": round(1000 * percentile(latencies, 50), 1),
            "p95": round(1000 * percentile(latencies, 95), 1),
            "max": round(1000 * latencies[-1], 1),
        },
        "batch_id": batch["id"],
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
    }
    print(f"{args.label or 'ingest'}: {args.files} files of {args.seconds:g} s with concurrency {args.concurrency}")
    print(f"  {report['files_per_second']} files/s ({report['wall_seconds']} s), outcomes {dict(counts)}")
    lat = report["latency_ms"]
    print(f"  request latency p50 {lat['p50']} ms, p95 {lat['p95']} ms, max {lat['max']} ms")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
