"""Many processes on one store file: no lock errors, exact counts, typed busy errors.

The writers are separate OS processes, each with its own SQLite connection, released at
the same moment against a store file none of them has created yet. The lock holder and
the reader are separate processes holding a raw SQLite transaction open.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

import master_sdk as ms
from tests.support.durability import copy_hello_project, last_json, run_driver, spawn

PROCESSES = 8
RUNS_EACH = 100


def hello_run(wb: ms.Workbench, text: str = "hi") -> ms.Run:
    """One hello_world run, from start to completion."""
    run = wb.run("hello_world/greet", {"text": text})
    run.approve(by="ana")
    run.submit({"audience": "board"}, by="ana")
    assert run.status == "completed"
    return run


@pytest.mark.slow
def test_eight_processes_writing_a_hundred_runs_each_lose_nothing(tmp_path: Path) -> None:
    """8 processes x 100 hello_world runs (start, approve, submit) on one new store file at
    synchronous=FULL: zero lock errors, exactly the rows 800 runs make, integrity ok."""
    root = copy_hello_project(tmp_path / "hello")
    store = tmp_path / "shared.sqlite3"
    folder = tmp_path / "writers"
    folder.mkdir()
    code, report, err = run_driver(
        "writers", root, store, str(PROCESSES), str(RUNS_EACH), folder, timeout=240
    )
    assert code == 0, err
    assert report is not None
    assert set(report["codes"].values()) == {0}, report
    for result in report["results"]:
        assert result["errors"] == [], result
        assert result["completed"] == RUNS_EACH

    total = PROCESSES * RUNS_EACH
    with ms.Workbench.open(root, store=tmp_path / "one.sqlite3") as solo:
        events_per_run = len(hello_run(solo).trace())
    with ms.Workbench.open(root, store=store) as wb:
        info = wb.store_info()
        assert info["synchronous"] == "FULL"
        assert info["journal_mode"] == "wal"
        assert info["integrity"] == "ok"
        assert info["runs_by_status"] == {"completed": total}
        assert len(wb.approvals()) == total
        events = wb.store.count_events()
        trace = wb.traces()
    conn = sqlite3.connect(store)
    try:
        counts = {
            table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608  # fixed names
            for table in ("runs", "steps", "approvals", "user_inputs")
        }
        distinct_texts = conn.execute("SELECT count(DISTINCT inputs) FROM runs").fetchone()[0]
    finally:
        conn.close()
    assert counts == {"runs": total, "steps": 4 * total, "approvals": total, "user_inputs": total}
    assert events == len(trace) == events_per_run * total
    seqs = trace.groupby("run_id", observed=True)["seq"].agg(["min", "max", "count", "nunique"])
    assert len(seqs) == total
    # every run's trace is 1..n with no hole and no duplicate
    assert (seqs["min"] == 1).all() and (seqs["max"] == seqs["count"]).all()
    assert (seqs["nunique"] == seqs["count"]).all()
    assert distinct_texts == total  # every run is its own, none written twice


@pytest.fixture
def busy_root(tmp_path: Path) -> Path:
    """The hello_world project with a 200 ms busy timeout."""
    root = copy_hello_project(tmp_path / "hello")
    app = root / "configs" / "app.yaml"
    app.write_text(
        app.read_text(encoding="utf-8").replace("busy_timeout_ms: 5000", "busy_timeout_ms: 200"),
        encoding="utf-8",
    )
    return root


def hold(store: Path, what: str) -> tuple[subprocess.Popen[str], dict[str, object]]:
    """Start a process holding a ``write`` lock or a ``read`` snapshot on ``store``."""
    proc = spawn(f"hold-{what}", store, stdin=subprocess.PIPE)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # blocks until the holder reports (or dies)
    report = json.loads(line) if line.startswith("{") else {}
    assert report.get("held") == what, line + (proc.stderr.read() if proc.stderr else "")
    return proc, report


def release(proc: subprocess.Popen[str]) -> dict[str, object]:
    """Tell a holder to let go; its last report."""
    out, err = proc.communicate("\n", timeout=30)
    assert proc.returncode == 0, err
    report = last_json(out)
    assert report is not None
    return report


def test_a_store_locked_beyond_the_busy_timeout_raises_store_busy_and_writes_nothing(
    busy_root: Path, tmp_path: Path
) -> None:
    """While another process holds the write lock past the busy timeout, starting a run or
    approving one raises StoreBusy (retryable, naming the store) and stores nothing; reads
    and opening the store still work; once the lock is gone the same calls succeed."""
    store = tmp_path / "s.sqlite3"
    with ms.Workbench.open(busy_root, store=store) as wb:
        paused = wb.run("hello_world/greet", {"text": "before the lock"})
        proc, _ = hold(store, "write")
        try:
            with ms.Workbench.open(busy_root, store=store) as other:
                assert len(other.runs()) == 1  # reading is not blocked by a writer

            started = time.monotonic()
            with pytest.raises(ms.StoreBusy) as caught:
                wb.run("hello_world/greet", {"text": "during the lock"})
            waited = time.monotonic() - started
            assert caught.value.retryable is True
            assert isinstance(caught.value, ms.StoreError)
            assert str(store) in str(caught.value) and "nothing was written" in str(caught.value)
            assert 0.15 < waited < 5

            with pytest.raises(ms.StoreBusy):
                paused.approve(by="ana")
            assert paused.status == "waiting_approval"
            assert len(wb.runs()) == 1
            assert len(wb.approvals()) == 0
        finally:
            release(proc)

        paused.approve(by="ana")
        assert paused.status == "waiting_input"
        assert len(wb.approvals()) == 1
        hello_run(wb, "after the lock")
        assert wb.store_info()["integrity"] == "ok"


def test_a_read_left_open_in_another_process_does_not_block_writers(
    busy_root: Path, tmp_path: Path
) -> None:
    """A process keeping a read transaction open (WAL) does not delay writers: runs
    complete within a 200 ms busy timeout, and the reader's snapshot stays as it was."""
    store = tmp_path / "s.sqlite3"
    with ms.Workbench.open(busy_root, store=store) as wb:
        hello_run(wb, "first")
        proc, report = hold(store, "read")
        try:
            for number in range(5):
                hello_run(wb, f"while reading {number}")
            assert len(wb.runs()) == 6
        finally:
            final = release(proc)
    assert report["count"] == 1
    assert final["count_in_snapshot"] == 1  # its read transaction really stayed open
    assert final["count_after"] == 6
