"""``emoq submit``: a folder of recordings into one batch — found or created by
name, uploaded with bounded concurrency under per-file idempotency keys, with
a progress bar (files, bytes, rate, ETA); files the batch already holds are
skipped, so a re-run after Ctrl-C, a crash or a network cut sends only what is
missing. Then, with ``--wait``, the batch is closed and followed to the end
with a second bar, and its results downloaded."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from rich import filesize
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table
from rich.text import Text

from client.api import Api, ApiError, Upload, batch_path
from client.files import LocalFile, batch_key, idempotency_key, sha256_of

_POLL_SECONDS = 1.0
_UNFINISHED = ("queued", "running")


@dataclass
class Outcome:
    file: LocalFile
    # queued (sent now), duplicate (the API found it in the batch), present (skipped:
    # the batch had it already), refused (the API said no), failed (not sent: re-run)
    status: str
    job_id: str | None = None
    code: str | None = None
    message: str | None = None


def find_or_create_batch(api: Api, name: str, settings: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The caller's newest batch of this name, else a new one; (batch, created).
    The creation's idempotency key is the name's, so two racing runs make one batch."""
    found = api.json("GET", "/v1/batches", query={"name": name, "limit": 1})["items"]
    if found:
        return found[0], False
    body = {"name": name, **{k: v for k, v in settings.items() if v is not None}}
    return api.json("POST", "/v1/batches", data=body, headers={"Idempotency-Key": batch_key(name)}), True


def batch_contents(api: Api, batch_id: str) -> set[tuple[str | None, str | None]]:
    """(external id, sha256) of every job the batch holds."""
    held: set[tuple[str | None, str | None]] = set()
    cursor = None
    while True:
        page = api.json("GET", batch_path(batch_id, "jobs"), query={"limit": 200, "cursor": cursor})
        held.update((job["external_id"], job["recording"]["sha256"]) for job in page["items"])
        cursor = page["next_cursor"]
        if not cursor:
            return held


def _send_one(api: Api, batch_id: str, file: LocalFile, held: set, on_bytes: Callable[[int], None]) -> Outcome:
    sha256 = sha256_of(file.path)
    if (file.external_id, sha256) in held:
        return Outcome(file, "present")
    try:
        answer = api.upload(
            batch_path(batch_id, "recordings"),
            Upload(file.path, file.path.name, (("external_id", file.external_id),)),
            idempotency_key=idempotency_key(batch_id, sha256, file.external_id),
            on_bytes=on_bytes,
        )
    except ApiError as exc:
        if exc.status == 0 or exc.status >= 500 or exc.status == 429 or exc.code == "request_in_progress":
            return Outcome(file, "failed", code=exc.code, message=exc.detail)
        return Outcome(file, "refused", code=exc.code, message=exc.detail)
    (item,) = answer["items"]
    error = item.get("error") or {}
    return Outcome(file, item["status"], item.get("job_id"), error.get("code"), error.get("message"))


def _progress(console: Console, *columns: Any) -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), *columns, console=console)


class _SentSpeedColumn(TransferSpeedColumn):
    """The rate of the bytes sent. A skipped file takes its bytes off the task's total,
    and rich then drops the task's speed samples: an upload whose last file was skipped
    ends with the average over the whole upload instead of rich's "?", and one that sent
    nothing with no rate at all."""

    def render(self, task: Task) -> Text:
        if not task.finished or task.finished_speed or task.speed:
            return super().render(task)
        if not task.completed or not task.finished_time:
            return Text("")
        return Text(f"{filesize.decimal(int(task.completed / task.finished_time))}/s", style="progress.data.speed")


def upload_all(api: Api, batch_id: str, files: list[LocalFile], concurrency: int, console: Console) -> list[Outcome]:
    held = batch_contents(api, batch_id)
    outcomes: list[Outcome] = []
    started = time.monotonic()
    lock = threading.Lock()
    to_send, skipped = sum(f.size for f in files), 0
    with _progress(
        console,
        TextColumn("{task.fields[files]}"),
        DownloadColumn(),
        _SentSpeedColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
    ) as bar:
        task: TaskID = bar.add_task("upload", total=to_send, files=f"0/{len(files)} files", rate="")

        def one(file: LocalFile) -> None:
            nonlocal to_send, skipped
            outcome = _send_one(api, batch_id, file, held, lambda n: bar.advance(task, n))
            with lock:
                outcomes.append(outcome)
                if outcome.status == "present":
                    # A file the batch holds is not sent: its bytes leave the total rather than
                    # count as sent in no time, so the bar, the rates and the ETA are of what goes out.
                    to_send -= file.size
                    skipped += 1
                tried = len(outcomes) - skipped
                counted = f"{len(outcomes)}/{len(files)} files"
                if skipped:
                    counted += f", {skipped} already in the batch"
                rate = f"{tried / max(time.monotonic() - started, 1e-6):.1f} files/s" if tried else ""
                bar.update(task, total=to_send, files=counted, rate=rate)

        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="emoq-upload") as pool:
            futures = [pool.submit(one, f) for f in files]
            try:
                finished, _ = wait(futures, return_when=FIRST_EXCEPTION)
            except KeyboardInterrupt:
                pool.shutdown(wait=False, cancel_futures=True)
                raise
            for future in finished:
                future.result()  # a bug in a worker thread is not swallowed
    return outcomes


def follow(api: Api, batch_id: str, console: Console) -> dict[str, Any]:
    """Poll the batch until it has finished; a bar of finished jobs, with the API's ETA."""
    with _progress(console, MofNCompleteColumn(), TextColumn("{task.fields[detail]}"), TimeElapsedColumn()) as bar:
        task = bar.add_task("analysis", total=None, detail="")
        while True:
            batch = api.json("GET", batch_path(batch_id))
            jobs = batch["jobs"]
            eta = batch.get("eta_seconds")
            detail = f"{jobs['running']} running, {jobs['failed']} failed" + (
                f", ETA {_duration(eta)}" if eta is not None and batch["finished_at"] is None else ""
            )
            bar.update(task, total=jobs["total"], completed=jobs["succeeded"] + jobs["failed"], detail=detail)
            if batch["finished_at"] is not None:
                return batch
            time.sleep(_POLL_SECONDS)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def summary(outcomes: list[Outcome]) -> Table:
    counts = Counter(o.status for o in outcomes)
    table = Table(title="emoq submit", show_header=True)
    table.add_column("files")
    table.add_column("count", justify="right")
    table.add_column("reason")
    for status, label in (
        ("queued", "submitted"),
        ("present", "already in the batch"),
        ("duplicate", "duplicates (reported by the API)"),
    ):
        table.add_row(label, str(counts[status]), "")
    for status, label in (("refused", "refused"), ("failed", "not sent (run again)")):
        reasons = Counter(o.code for o in outcomes if o.status == status)
        if not reasons:
            table.add_row(label, "0", "")
        for code, n in reasons.most_common():
            example = next(o for o in outcomes if o.status == status and o.code == code)
            table.add_row(label, str(n), f"{code}: {example.message} (e.g. {example.file.external_id})")
    return table
