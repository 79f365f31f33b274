"""Schema version 8: trace chunks and steps keyed by the row ids ``run_pk << 32 |
first_seq`` and ``run_pk << 32 | idx``.

A version 7 store (``tests/fixtures/stores/v7.sqlite3``: one completed and one paused
hello_world run) is migrated by another process; its chunks and steps are the same values
under their new keys, its trace and steps read back exactly as the version 7 layout read
them, and its paused run resumes and completes, its new events after the old ones.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd

import master_sdk as ms
from master_sdk.memory.chunks import chunk_id
from master_sdk.memory.frames import trace_frame
from master_sdk.memory.schema import SCHEMA_VERSION
from master_sdk.memory.sqlite.traces import read_trace_table
from master_sdk.memory.store import TraceTable

FIXTURES = Path(__file__).parents[2] / "fixtures" / "stores"
REPO = Path(__file__).parents[3]

MIGRATE = """
import sys
import master_sdk as ms
with ms.Workbench.open(sys.argv[1], store=sys.argv[2]) as wb:
    print(len(wb.runs()))
"""


def assert_same(left: TraceTable, right: TraceTable) -> None:
    assert len(left) == len(right) > 0
    pd.testing.assert_frame_equal(trace_frame(left), trace_frame(right))


def chunk_rows(conn: sqlite3.Connection, order: str) -> list[tuple[Any, ...]]:
    return conn.execute(
        f"SELECT run_pk, first_seq, n, data, metrics, attrs FROM trace_chunks ORDER BY {order}"  # noqa: S608  # constant
    ).fetchall()


STEP_ROWS = (
    "SELECT run_pk, idx, step_id, type, status, attempt, started_us, ended_us, output, error "
    "FROM steps ORDER BY run_pk, idx"
)


def test_a_version_7_store_migrates_its_chunks_and_its_runs_go_on(tmp_path: Path) -> None:
    project = tmp_path / "project"
    shutil.copytree(FIXTURES / "v7_project", project)
    store = tmp_path / "v7.sqlite3"
    shutil.copyfile(FIXTURES / "v7.sqlite3", store)
    old = sqlite3.connect(store)
    assert old.execute("PRAGMA user_version").fetchone()[0] == 7
    before = chunk_rows(old, "run_pk, first_seq")
    trace_before = read_trace_table(old, "", [], since_us=None)
    steps_before = old.execute(STEP_ROWS).fetchall()
    old.close()
    assert len(before) > 4

    done = subprocess.run(
        [sys.executable, "-c", MIGRATE, str(project), str(store)],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "2"

    conn = sqlite3.connect(store)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 8
    ddl = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'trace_chunks'").fetchone()[0]
    assert "WITHOUT ROWID" not in ddl
    assert chunk_rows(conn, "id") == before
    ids = [r[0] for r in conn.execute("SELECT id FROM trace_chunks ORDER BY id")]
    assert ids == [chunk_id(pk, first) for pk, first, *_ in before]
    assert_same(read_trace_table(conn, "", [], since_us=None), trace_before)
    assert conn.execute(STEP_ROWS).fetchall() == steps_before and len(steps_before) == 6
    keys = conn.execute("SELECT id, run_pk, idx FROM steps ORDER BY id").fetchall()
    assert [key for key, _, _ in keys] == [chunk_id(pk, idx) for _, pk, idx in keys]
    ddl = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'steps'").fetchone()[0]
    assert "WITHOUT ROWID" not in ddl
    conn.close()

    with ms.Workbench.open(project, store=store) as wb:
        runs = wb.runs().set_index("status")
        done_id = runs.loc["completed", "run_id"]
        paused_id = runs.loc["waiting_approval", "run_id"]
        assert [s.step_id for s in wb.store.step_attempts(done_id)] == [
            "echo",
            "review",
            "audience",
            "summary",
        ]
        one = wb.traces(run_id=done_id)
        assert list(one["event"])[-1] == "run_completed"
        assert len(one) == wb.store.count_events(done_id)
        events_before = wb.store.count_events(paused_id)
        paused = wb.get_run(paused_id)
        paused.approve(by="bo")
        paused.submit({"audience": "a colleague"}, by="bo")
        assert paused.status == "completed"
        trace = wb.traces(run_id=paused_id)
        assert list(trace["seq"]) == sorted(trace["seq"]) and trace["seq"].is_unique
        assert len(trace) == wb.store.count_events(paused_id) > events_before
        assert list(trace["event"])[-1] == "run_completed"
        latest = wb.store.step_attempts(paused_id)
        assert [(s.idx, s.status) for s in latest] == [(i, "completed") for i in range(4)]
        assert wb.store_info()["integrity"] == "ok"
        # pruning removes each run's range of chunks
        report = wb.store.prune(before_us=2**62, statuses=("completed",), dry_run=False)
        assert report.events == len(one) + len(trace)
        assert wb.store.count_events() == 0
