"""The ``emoq`` client against the real stack: a 200-file batch killed half way
and run again ends with exactly 200 jobs and one batch.finished webhook; status,
results and cancel; and the client starts without the service's heavy imports."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from sqlalchemy import func, select

from models import Batch, Job
from tests.batch_fixtures import write_calls
from tests.conftest import ROOT, wait_until
from tests.test_batches import assert_exports_agree
from worker.webhooks import signature


def emoq(*args: str) -> list[str]:
    return [sys.executable, "-m", "ops.launcher", *args]


def client_env(api_server: str, key: str) -> dict[str, str]:
    return {**os.environ, "EMOQ_URL": api_server, "EMOQ_API_KEY": key, "COLUMNS": "160", "PYTHONPATH": str(ROOT)}


def batch_named(sessions, name: str) -> Batch | None:
    with sessions() as session:
        return session.scalar(select(Batch).where(Batch.name == name))


def job_count(sessions, batch_id: uuid.UUID) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(Job).where(Job.batch_id == batch_id))


def test_a_killed_submission_resumes_without_duplicates(
    api_server, _key_values, keys, sessions, settings, worker, receiver, client, tmp_path
):
    write_calls(tmp_path / "calls" / "a", 100)
    write_calls(tmp_path / "calls" / "b", 100, start=100)
    env = client_env(api_server, _key_values["submitter"])
    results = tmp_path / "nightly.csv"
    command = emoq(
        "submit", str(tmp_path / "calls"), "--batch", "nightly", "--callback-url", receiver.url,
        "--concurrency", "4", "--wait", "--results", str(results),
    )  # fmt: skip
    first = subprocess.Popen(
        command, env=env, cwd=tmp_path, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        batch = wait_until(lambda: batch_named(sessions, "nightly"), 30, "the batch")
        wait_until(lambda: job_count(sessions, batch.id) >= 100 or first.poll() is not None, 120, "half the files")
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # as a crash or a pulled cable would
        first.wait(10)
    assert job_count(sessions, batch.id) < 200, "the first run finished before it could be killed"

    again = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "already in the batch" in again.stdout and "batch finished: 200 succeeded, 0 failed" in again.stdout
    assert job_count(sessions, batch.id) == 200
    with sessions() as session:
        external_ids = session.scalars(select(Job.external_id).where(Job.batch_id == batch.id)).all()
    assert sorted(external_ids) == sorted(
        [f"a/call-{i:04d}.wav" for i in range(100)] + [f"b/call-{i:04d}.wav" for i in range(100, 200)]
    )

    rows = list(csv.DictReader(results.open()))
    assert len(rows) == 200 and {r["status"] for r in rows} == {"succeeded"}
    wait_until(lambda: receiver.received, 60, "the batch.finished webhook")
    (hit,) = receiver.received
    assert hit["headers"]["X-Emoq-Signature"] == signature(hit["body"], settings.webhooks.secret)
    assert json.loads(hit["body"])["jobs"]["succeeded"] == 200

    # Once more: nothing new is created, and still one webhook.
    third = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert third.returncode == 0, third.stderr[-3000:]
    assert job_count(sessions, batch.id) == 200
    assert assert_exports_agree(client, keys["submitter"], str(batch.id)) == 200
    assert len(receiver.received) == 1


def test_status_results_and_cancel(api_server, _key_values, keys, sessions, tmp_path):
    write_calls(tmp_path / "calls", 3)
    env = client_env(api_server, _key_values["submitter"])
    submitted = subprocess.run(
        emoq("submit", str(tmp_path / "calls"), "--batch", "later"),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert submitted.returncode == 0, submitted.stderr
    assert "submitted" in submitted.stdout
    status = subprocess.run(emoq("status", "later", "--json"), env=env, capture_output=True, text=True, timeout=60)
    assert json.loads(status.stdout)["jobs"]["total"] == 3
    out = tmp_path / "later.jsonl"
    fetched = subprocess.run(
        emoq("results", "later", "-o", str(out)), env=env, capture_output=True, text=True, timeout=60
    )
    assert fetched.returncode == 0 and len(out.read_text().splitlines()) == 3
    cancelled = subprocess.run(emoq("cancel", "later"), env=env, capture_output=True, text=True, timeout=60)
    assert cancelled.returncode == 0 and "cancelled" in cancelled.stdout

    missing = subprocess.run(emoq("status", "no-such-batch"), env=env, capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and missing.stderr.strip() == "emoq: no batch named 'no-such-batch'"
    closed = subprocess.run(
        emoq("submit", str(tmp_path / "calls" / "call-0000.wav"), "--batch", "later", "--concurrency", "1"),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert closed.returncode == 0 and "already in the batch" in closed.stdout  # skipped: the batch holds it
    write_calls(tmp_path / "new", 1, start=7)
    refused = subprocess.run(
        emoq("submit", str(tmp_path / "new"), "--batch", "later"), env=env, capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == 1 and "batch_closed" in refused.stdout
    unreachable = subprocess.run(
        emoq("status", "later", "--url", "http://127.0.0.1:9"),
        env={**env, "EMOQ_API_KEY": "x"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert unreachable.returncode == 2 and unreachable.stderr.startswith("emoq: unreachable:")
    assert len(unreachable.stderr.strip().splitlines()) == 1


# A transfer rate as rich shows one ("903.2 kB/s"), or rich's unknown one.
RATE = re.compile(r"\d B/s|\d [kMGT]B/s| \? ")


def test_files_already_in_the_batch_are_not_counted_as_sent(api_server, _key_values, keys, tmp_path):
    """A re-run that sends nothing shows no rate (it showed the skipped files' bytes as sent
    in no time: an absurd MB/s); one that sends some counts only their bytes."""
    from rich.console import Console

    from client.api import Api
    from client.files import find_audio
    from client.submit import find_or_create_batch, upload_all

    write_calls(tmp_path / "calls", 6)
    files = find_audio([tmp_path / "calls"])
    api = Api(api_server, _key_values["submitter"])
    batch_id = find_or_create_batch(api, "again", {})[0]["id"]

    def upload(some: list) -> tuple[list[str], str]:
        shown = io.StringIO()  # not a terminal: rich prints the bar once, as it ends
        outcomes = upload_all(api, batch_id, some, 4, Console(file=shown, width=200))
        return sorted(o.status for o in outcomes), shown.getvalue()

    assert upload(files[:4])[0] == ["queued"] * 4
    statuses, shown = upload(files[:4])
    assert statuses == ["present"] * 4
    assert "4/4 files, 4 already in the batch 0/0 bytes" in shown, shown
    assert not RATE.search(shown) and "files/s" not in shown, shown

    statuses, shown = upload(files)
    assert statuses == ["present"] * 4 + ["queued"] * 2
    sent = sum(f.size for f in files[4:]) / 1000
    assert f"6/6 files, 4 already in the batch {sent:.1f}/{sent:.1f} kB" in shown, shown
    assert RATE.search(shown) and " ? " not in shown, shown


def test_the_client_starts_fast_without_the_service_stack():
    probe = (
        "import sys, time; t = time.perf_counter(); sys.argv = ['emoq', 'submit', '--help'];"
        "from ops.launcher import main\n"
        "try: main()\n"
        "except SystemExit: pass\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'funasr', 'sqlalchemy', 'celery', 'worker', 'api', 'config'});"
        "print(heavy, time.perf_counter() - t, file=sys.stderr)"
    )
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT)
    elapsed = time.perf_counter() - started
    assert "usage: emoq submit" in out.stdout
    assert out.stderr.startswith("[] ")
    assert elapsed < 1.0, f"emoq submit --help took {elapsed:.2f} s"


def test_the_console_script_is_the_launcher():
    assert 'emoq = "ops.launcher:main"' in (ROOT / "pyproject.toml").read_text()
    assert Path(ROOT / "ops" / "launcher.py").is_file()
