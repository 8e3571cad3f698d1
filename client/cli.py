"""The client's commands, reached through ``emoq`` (``ops.launcher`` sends
them here without loading the operator stack):

    emoq submit PATH... --batch NAME [--domain D] [--channels agent,customer]
                [--granularity frame] [--callback-url URL] [--concurrency 8]
                [--wait] [--results FILE --format csv|jsonl|parquet]
    emoq status BATCH [--json]
    emoq results BATCH [--format csv|jsonl|parquet] [--rows recording|segment] -o FILE
    emoq cancel BATCH

BATCH is a batch id or name (your newest batch of that name). The API is
``EMOQ_URL`` (default http://127.0.0.1:7860) with the key ``EMOQ_API_KEY``, or
``--url`` and ``--api-key``. Exit codes: 0 done, 1 some files refused or not
sent (run the same command again to send what is missing), 2 usage or
connection errors, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

COMMANDS = ("submit", "status", "results", "cancel")
FORMATS = ("csv", "jsonl", "parquet")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=os.environ.get("EMOQ_URL", "http://127.0.0.1:7860"), help="the API (EMOQ_URL)")
    parser.add_argument("--api-key", default=os.environ.get("EMOQ_API_KEY"), help="a submitter key (EMOQ_API_KEY)")


def _results_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=FORMATS, help="default: the file's suffix, else csv")
    parser.add_argument("--rows", choices=("recording", "segment"), default="recording")


def add_commands(commands: Any) -> None:
    """Add the client's subcommands to an ``add_subparsers()`` object."""
    submit = commands.add_parser("submit", help="upload recordings (files or folders) as one batch")
    submit.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    submit.add_argument("--batch", required=True, help="the batch's name; the same name resumes the same batch")
    submit.add_argument("--domain")
    submit.add_argument("--channels", help="a role per channel, e.g. agent,customer")
    submit.add_argument("--granularity", choices=("utterance", "frame"))
    submit.add_argument("--callback-url", help="receives one signed batch.finished webhook")
    submit.add_argument("--concurrency", type=_positive, default=8, help="uploads at once (default 8)")
    submit.add_argument("--wait", action="store_true", help="close the batch and follow it to the end")
    submit.add_argument("--results", type=Path, metavar="FILE", help="then write its results here (implies --wait)")
    _results_options(submit)
    _common(submit)
    submit.set_defaults(client=_submit)

    status = commands.add_parser("status", help="a batch's progress")
    status.add_argument("batch", metavar="BATCH")
    status.add_argument("--json", action="store_true", help="print the API's JSON")
    _common(status)
    status.set_defaults(client=_status)

    results = commands.add_parser("results", help="download a batch's results table")
    results.add_argument("batch", metavar="BATCH")
    results.add_argument("-o", "--output", type=Path, required=True, metavar="FILE", help="'-' for standard output")
    _results_options(results)
    _common(results)
    results.set_defaults(client=_results)

    cancel = commands.add_parser("cancel", help="cancel a batch's queued jobs (running ones finish)")
    cancel.add_argument("batch", metavar="BATCH")
    _common(cancel)
    cancel.set_defaults(client=_cancel)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


class UsageError(Exception):
    pass


def _api(args: argparse.Namespace, pool_size: int = 4) -> Any:
    from client.api import Api

    if not args.api_key:
        raise UsageError("no API key: set EMOQ_API_KEY or pass --api-key")
    return Api(args.url, args.api_key, pool_size=pool_size)


def _resolve(api: Any, batch: str) -> dict[str, Any]:
    from client.api import batch_path

    try:
        return api.json("GET", batch_path(str(uuid.UUID(batch))))
    except ValueError:
        pass
    found = api.json("GET", "/v1/batches", query={"name": batch, "limit": 1})["items"]
    if not found:
        raise UsageError(f"no batch named {batch!r}")
    return api.json("GET", batch_path(found[0]["id"]))


def _format(args: argparse.Namespace, path: Path | None) -> str:
    if args.format:
        return args.format
    suffix = path.suffix.lstrip(".").lower() if path else ""
    return suffix if suffix in FORMATS else "csv"


def _download(api: Any, batch_id: str, args: argparse.Namespace, path: Path) -> int:
    from client.api import batch_path

    query = {"format": _format(args, path), "rows": args.rows}
    if str(path) == "-":
        return api.download(batch_path(batch_id, "results"), query, sys.stdout.buffer)
    partial = path.with_name(path.name + ".part")
    with partial.open("wb") as out:
        size = api.download(batch_path(batch_id, "results"), query, out)
    partial.replace(path)  # never a half-written table under the real name
    return size


def _submit(args: argparse.Namespace) -> int:
    from rich.console import Console

    from client.api import batch_path
    from client.files import find_audio
    from client.submit import find_or_create_batch, follow, summary, upload_all

    files = find_audio(args.paths)
    if not files:
        raise UsageError("no audio files found in " + ", ".join(map(str, args.paths)))
    err, out = Console(stderr=True), Console()
    api = _api(args, pool_size=args.concurrency)
    settings = {
        "domain": args.domain,
        "channels": args.channels,
        "granularity": args.granularity,
        "callback_url": args.callback_url,
    }
    batch, created = find_or_create_batch(api, args.batch, settings)
    err.print(f"batch {batch['name']!r} ({batch['id']}, {batch['status']}{', new' if created else ''})")
    outcomes = upload_all(api, batch["id"], files, args.concurrency, err)
    out.print(summary(outcomes))
    incomplete = any(o.status in ("refused", "failed") for o in outcomes)
    if not (args.wait or args.results):
        return 1 if incomplete else 0
    if any(o.status == "failed" for o in outcomes):
        err.print("some files were not sent: the batch stays open; run the same command again")
        return 1
    api.json("POST", batch_path(batch["id"], "close"))
    final = follow(api, batch["id"], err)
    jobs = final["jobs"]
    out.print(f"batch {final['status']}: {jobs['succeeded']} succeeded, {jobs['failed']} failed")
    if args.results:
        size = _download(api, batch["id"], args, args.results)
        out.print(f"wrote {args.results} ({size} bytes)")
    return 1 if incomplete else 0


def _status(args: argparse.Namespace) -> int:
    batch = _resolve(_api(args), args.batch)
    if args.json:
        print(json.dumps(batch, indent=2))
        return 0
    jobs, seconds = batch["jobs"], batch["audio_seconds"]
    eta = batch.get("eta_seconds")
    print(f"batch {batch['name']!r} {batch['id']}: {batch['status']}")
    print(
        f"  jobs: {jobs['total']} ({jobs['queued']} queued, {jobs['running']} running, "
        f"{jobs['succeeded']} succeeded, {jobs['failed']} failed)"
    )
    print(f"  audio: {seconds['done']:.0f} s done, {seconds['queued'] + seconds['running']:.0f} s to go")
    print(
        f"  created {batch['created_at']}, closed {batch['closed_at'] or '-'}, finished {batch['finished_at'] or '-'}"
    )
    if eta is not None and batch["finished_at"] is None:
        print(f"  ETA: {eta:.0f} s at {batch['throughput_audio_seconds_per_second']} audio-s/s")
    return 0


def _results(args: argparse.Namespace) -> int:
    api = _api(args)
    batch = _resolve(api, args.batch)
    size = _download(api, batch["id"], args, args.output)
    if str(args.output) != "-":
        print(f"wrote {args.output} ({size} bytes)", file=sys.stderr)
    return 0


def _cancel(args: argparse.Namespace) -> int:
    from client.api import batch_path

    api = _api(args)
    batch = _resolve(api, args.batch)
    done = api.json("POST", batch_path(batch["id"], "cancel"))
    print(f"batch {done['name']!r}: {done['status']}; {done['cancelled_jobs']} queued jobs cancelled")
    return 0


def run(args: argparse.Namespace) -> int:
    """Run a parsed client command: one line on stderr and a non-zero code for any error."""
    from client.api import ApiError

    try:
        return int(args.client(args))
    except (UsageError, FileNotFoundError) as exc:
        print(f"emoq: {exc}", file=sys.stderr)
        return 2
    except ApiError as exc:
        print(f"emoq: {exc.code}: {exc.detail}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("emoq: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="emoq", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_commands(parser.add_subparsers(dest="command", required=True))
    return run(parser.parse_args(argv))
