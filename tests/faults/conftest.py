"""Fixtures of the fault suite: one stack of its own for the session (see
``stack.py``), and the table of what each scenario measured, printed at the
end of the run."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.faults.stack import FaultStack


@dataclass
class Row:
    scenario: str
    jobs: int
    succeeded: int
    failed: int
    lost: int
    duplicate_results: int
    duplicate_review_items: int
    recovery_seconds: float
    detail: str

    HEADER = (
        "| scenario | jobs | succeeded | failed | lost | duplicate results | duplicate review items "
        "| recovery (s) | detail |\n|---|---|---|---|---|---|---|---|---|"
    )

    def markdown(self) -> str:
        return (
            f"| {self.scenario} | {self.jobs} | {self.succeeded} | {self.failed} | {self.lost} "
            f"| {self.duplicate_results} | {self.duplicate_review_items} | {self.recovery_seconds:.0f} | {self.detail} |"
        )


_rows = pytest.StashKey[list[Row]]()


@pytest.fixture(scope="session")
def fault_table(pytestconfig) -> list[Row]:
    return pytestconfig.stash.setdefault(_rows, [])


def pytest_terminal_summary(terminalreporter, config) -> None:
    rows = config.stash.get(_rows, [])
    if rows:
        terminalreporter.section("fault suite")
        terminalreporter.write_line(Row.HEADER)
        for row in rows:
            terminalreporter.write_line(row.markdown())


@pytest.fixture(scope="session")
def fault_stack(request, model_dir) -> Iterator[FaultStack]:
    """PostgreSQL, Redis, S3, the API, a worker and beat, all our own."""
    root = Path(tempfile.mkdtemp(prefix="emoq-faults-"))
    if os.geteuid() == 0:
        root.chmod(0o755)  # the PostgreSQL cluster runs as the postgres user, inside
    stack = FaultStack(root, model_dir)
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()
        if request.session.testsfailed:
            print(f"\nfault suite: logs and data kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
