"""Schema versions: released stores open, older ones migrate in place, newer ones are refused.

``tests/fixtures/stores/v<N>.sqlite3`` is a store made by the release that introduced
schema version N (one completed and one paused hello_world run), with the project it was
made with in ``v<N>_project/``. The migration machinery is proven with a synthetic next
version, patched in for the test only.
"""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import master_sdk as ms
from master_sdk.memory import schema
from master_sdk.memory.sqlite import SQLiteStore

FIXTURES = Path(__file__).parents[2] / "fixtures" / "stores"
RELEASED = sorted(FIXTURES.glob("v*.sqlite3"))


def copy_release(path: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of a released store and of its project, to open and change freely."""
    project = tmp_path / "project"
    shutil.copytree(path.with_name(f"{path.stem}_project"), project)
    store = tmp_path / path.name
    shutil.copyfile(path, store)
    return project, store


def user_version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


def columns(path: Path, table: str) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
    finally:
        conn.close()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_fixture_is_kept_for_every_released_schema_version() -> None:
    """There is a store file for each version from 1 to the current one."""
    versions = sorted(int(p.stem[1:]) for p in RELEASED)
    assert versions == list(range(1, schema.SCHEMA_VERSION + 1))
    for path in RELEASED:
        assert user_version(path) == int(path.stem[1:])


@pytest.mark.parametrize("release", RELEASED, ids=lambda p: p.stem)
def test_a_released_store_opens_reads_and_resumes_its_paused_run(
    release: Path, tmp_path: Path
) -> None:
    """The current code opens a store of each released version (migrating it), shows its
    runs, trace and approvals, and continues the run that was paused in it."""
    project, store = copy_release(release, tmp_path)
    with ms.Workbench.open(project, store=store) as wb:
        assert user_version(store) == schema.SCHEMA_VERSION
        runs = wb.runs().set_index("status")
        assert sorted(runs.index) == ["completed", "waiting_approval"]
        done = wb.get_run(runs.loc["completed", "run_id"])
        assert done.output["audience"] == "the board"
        assert "A finished run" in done.output["summary"]
        assert list(done.trace()["event"])[-1] == "run_completed"
        assert list(wb.approvals()["by"]) == ["ana"]

        paused = wb.get_run(runs.loc["waiting_approval", "run_id"])
        assert paused.waiting_for is not None and paused.waiting_for["step"] == "review"
        paused.approve(by="bo")
        paused.submit({"audience": "a colleague"}, by="bo")
        assert paused.status == "completed"
        assert paused.output["audience"] == "a colleague"
        assert wb.store_info()["integrity"] == "ok"


# wb.traces() of tests/fixtures/stores/v1.sqlite3 as the version 1 code read it: run (a, b
# in order), seq, ts (seconds of 2026-11-26T03:27, UTC), event, step_id, step_type, name,
# status, duration_ms, tokens_in, tokens_out, cost_usd; "-" is missing. attrs below. The
# waits for a person (duration_ms of approval_decided, input_received and of the human
# steps' step_completed) are derived from the timestamps when the frame is read.
V1_TRACE = """
a 1 39.952230 run_started - - - - - - - -
a 2 39.952267 step_started echo tool echo - - - - -
a 3 39.953960 tool_called echo tool echo ok 0.01539899994895677 - - -
a 4 39.953992 step_completed echo tool echo completed 0.14448000001721084 - - -
a 5 39.954016 step_started review hitl review - - - - -
a 6 39.954018 approval_requested review hitl review waiting_approval - - - -
a 7 39.958269 approval_decided review hitl review approved 4.251 - - -
a 8 39.958325 step_completed review hitl review completed 4.309 - - -
a 9 39.958343 step_started audience user_input audience - - - - -
a 10 39.958345 input_requested audience user_input audience waiting_input - - - -
a 11 39.960602 input_received audience user_input audience - 2.257 - - -
a 12 39.960624 step_completed audience user_input audience completed 2.281 - - -
a 13 39.960685 step_started summary agent summarizer - - - - -
a 14 39.965194 model_called summary agent default ok 0.03670900014185463 10 12 0.0
a 15 39.965457 step_completed summary agent summarizer completed 3.2837799999470008 - - -
a 16 39.965491 run_completed - - - completed - - - -
b 1 39.967360 run_started - - - - - - - -
b 2 39.967399 step_started echo tool echo - - - - -
b 3 39.968464 tool_called echo tool echo ok 0.016991999927995494 - - -
b 4 39.968492 step_completed echo tool echo completed 0.13656600003741914 - - -
b 5 39.968519 step_started review hitl review - - - - -
b 6 39.968522 approval_requested review hitl review waiting_approval - - - -
"""
V1_RUNS = {"a": "01a215e503b0e8e14b188e3b90c21e11", "b": "01a215e503bf7d884a59bd866c6cd8c6"}
V1_ATTRS = {
    ("a", 1): {"by": "ana"},
    ("a", 7): {"by": "ana"},
    ("a", 11): {"by": "ana", "bytes": 25},
    ("a", 14): {"model": "default", "provider": "fake"},
    ("b", 1): {"by": "ana"},
}
# the values are what the version 1 code read; the dtypes are today's (ids are `string` in
# every frame since version 0.2)
TRACE_DTYPES = {
    "run_id": "string",
    "seq": "int64",
    "ts": "datetime64[us, UTC]",
    "event": "category",
    "step_id": "string",
    "step_type": "category",
    "product": "category",
    "flow": "category",
    "name": "category",
    "status": "category",
    "duration_ms": "float64",
    "tokens_in": "Int64",
    "tokens_out": "Int64",
    "cost_usd": "float64",
    "attrs": "object",
}


def v1_trace_rows() -> list[tuple[Any, ...]]:
    """The recorded frame's rows, in the frame's column order (missing values as None)."""
    rows = []
    for line in V1_TRACE.strip().splitlines():
        run, seq, ts, event, *rest = line.split()
        step_id, step_type, name, status, duration, t_in, t_out, cost = (
            None if v == "-" else v for v in rest
        )
        rows.append(
            (
                V1_RUNS[run],
                int(seq),
                pd.Timestamp(f"2026-11-26T03:27:{ts}", tz="UTC"),
                event,
                step_id,
                step_type,
                "hello_world",
                "greet",
                name,
                status,
                None if duration is None else float(duration),
                None if t_in is None else int(t_in),
                None if t_out is None else int(t_out),
                None if cost is None else float(cost),
                V1_ATTRS.get((run, int(seq))),
            )
        )
    return rows


def frame_rows(frame: pd.DataFrame) -> list[tuple[Any, ...]]:
    """A frame's rows with every missing value as None."""
    return [
        tuple(None if not isinstance(v, dict) and pd.isna(v) else v for v in row)
        for row in frame.itertuples(index=False)
    ]


def assert_v1_trace(frame: pd.DataFrame) -> None:
    """``frame`` is the trace the version 1 code read from the v1 fixture: values, dtypes
    and categories."""
    assert {name: str(dtype) for name, dtype in frame.dtypes.items()} == TRACE_DTYPES
    assert frame_rows(frame) == v1_trace_rows()
    assert frame["run_id"].unique().tolist() == [V1_RUNS["a"], V1_RUNS["b"]]
    assert sorted(frame["step_id"].dropna().unique()) == ["audience", "echo", "review", "summary"]
    assert list(frame["name"].cat.categories) == [
        "audience",
        "default",
        "echo",
        "review",
        "summarizer",
    ]


def v1_store(tmp_path: Path) -> tuple[Path, Path]:
    return copy_release(FIXTURES / "v1.sqlite3", tmp_path)


def test_a_version_1_store_reads_the_trace_the_version_1_code_read(tmp_path: Path) -> None:
    """Opening the v1 fixture migrates its trace rows into chunks (the trace table is gone)
    and every frame of it reads exactly as the version 1 code read it."""
    project, store = v1_store(tmp_path)
    with ms.Workbench.open(project, store=store) as wb:
        assert user_version(store) == schema.SCHEMA_VERSION
        assert columns(store, "trace") == []
        assert wb.store.count_events() == 22
        assert_v1_trace(wb.traces())
        done, paused = V1_RUNS["a"], V1_RUNS["b"]
        expected = v1_trace_rows()
        assert frame_rows(wb.get_run(done, recover=False).trace()) == expected[:16]
        assert frame_rows(wb.traces(status="waiting_approval")) == expected[16:]
        since = wb.traces(since="2026-11-26T03:27:39.960602+00:00")
        # a wait is derived within the frame: one that began before `since` is unknown
        assert frame_rows(since) == [
            (*r[:10], None, *r[11:]) if r[0] == done and r[1] in (11, 12) else r
            for r in expected[10:]
        ]
        assert since["run_id"].unique().tolist() == [done, paused]

        resumed = wb.get_run(paused)
        resumed.approve(by="bo")
        after = resumed.trace()
        assert frame_rows(after)[:6] == expected[16:]
        assert list(after["seq"]) == list(range(1, 11))
        assert after["event"].iloc[6] == "approval_decided"


def test_a_version_1_store_that_cannot_be_converted_is_left_as_it_was(tmp_path: Path) -> None:
    """A trace row the chunks cannot hold (an event code beyond a byte) fails the migration:
    StoreError naming both versions, and the file keeps its version 1 trace table."""
    _, store = v1_store(tmp_path)
    conn = sqlite3.connect(store)
    with conn:
        conn.execute(
            "INSERT INTO trace (run_pk, seq, ts_us, event) VALUES (1, 17, 1795750059965492, 300)"
        )
    conn.close()
    with pytest.raises(ms.StoreError) as caught:
        SQLiteStore(store)
    assert "from schema version 1 to 2 failed" in str(caught.value)
    assert "still at version 1" in str(caught.value)
    assert user_version(store) == 1
    assert columns(store, "trace_chunks") == [] and columns(store, "trace_names") == []
    conn = sqlite3.connect(store)
    try:
        assert conn.execute("SELECT count(*) FROM trace").fetchone()[0] == 23
    finally:
        conn.close()


def test_a_version_1_store_file_imports_with_the_same_trace(tmp_path: Path) -> None:
    """Importing the v1 fixture file into a current store (migrated in a private copy, the
    file left alone) gives the trace the version 1 code read."""
    project, v1 = v1_store(tmp_path)
    before = digest(v1)
    with ms.Workbench.open(project, store=tmp_path / "current.sqlite3") as wb:
        report = wb.import_store(v1)
        assert report.runs == (V1_RUNS["a"], V1_RUNS["b"])
        assert_v1_trace(wb.traces())
    assert digest(v1) == before


def _next_version(monkeypatch: pytest.MonkeyPatch, *steps: schema.Migration) -> None:
    base = schema.SCHEMA_VERSION
    monkeypatch.setattr(schema, "SCHEMA_VERSION", base + len(steps))
    monkeypatch.setattr(
        schema, "MIGRATIONS", {**schema.MIGRATIONS, **{base + i: s for i, s in enumerate(steps)}}
    )


def test_an_older_store_is_migrated_in_place_inside_one_transaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Opening a store one version behind runs the migration inside the opening
    transaction, sets the new version and keeps every run."""
    _, store = copy_release(RELEASED[-1], tmp_path)
    seen: list[bool] = []

    def add_labels(conn: sqlite3.Connection) -> None:
        seen.append(conn.in_transaction)
        conn.execute("ALTER TABLE runs ADD COLUMN labels TEXT")
        conn.execute("UPDATE runs SET labels = '[]'")

    _next_version(monkeypatch, add_labels)
    opened = SQLiteStore(store)
    assert seen == [True]
    assert user_version(store) == schema.SCHEMA_VERSION
    assert "labels" in columns(store, "runs")
    assert opened.info()["runs"] == 2
    opened.close()
    SQLiteStore(store).close()  # already current: the migration does not run again
    assert seen == [True]


def test_a_failing_migration_rolls_back_every_step_and_names_the_versions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two migrations where the second fails: StoreError names the failing step, and the
    file is left at its old version without the first step's change."""
    _, store = copy_release(RELEASED[-1], tmp_path)
    old = schema.SCHEMA_VERSION

    def add_labels(conn: sqlite3.Connection) -> None:
        conn.execute("ALTER TABLE runs ADD COLUMN labels TEXT")

    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE tags (name TEXT)")
        raise ValueError("bad data in runs")

    _next_version(monkeypatch, add_labels, broken)
    with pytest.raises(ms.StoreError) as caught:
        SQLiteStore(store)
    message = str(caught.value)
    assert f"from schema version {old + 1} to {old + 2} failed" in message
    assert "ValueError: bad data in runs" in message
    assert f"still at version {old}" in message and str(store) in message
    assert user_version(store) == old
    assert "labels" not in columns(store, "runs")
    assert columns(store, "tags") == []


def test_a_missing_migration_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A code version that forgot a migration step says so instead of half-upgrading."""
    _, store = copy_release(RELEASED[-1], tmp_path)
    monkeypatch.setattr(schema, "SCHEMA_VERSION", schema.SCHEMA_VERSION + 1)
    with pytest.raises(ms.StoreError, match="no migration from store schema version"):
        SQLiteStore(store)
    assert user_version(store) == schema.SCHEMA_VERSION - 1


def test_a_store_from_a_newer_version_is_refused_and_left_unchanged(tmp_path: Path) -> None:
    """A store written by a newer schema (user_version = current + 1) is refused with a
    message naming both versions and what to do; the file is not touched."""
    _, store = copy_release(RELEASED[-1], tmp_path)
    conn = sqlite3.connect(store)
    conn.execute(f"PRAGMA user_version = {schema.SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    before = digest(store)
    with pytest.raises(ms.StoreError) as caught:
        SQLiteStore(store)
    message = str(caught.value)
    assert f"schema version {schema.SCHEMA_VERSION + 1} is newer" in message
    assert f"understands ({schema.SCHEMA_VERSION})" in message
    assert "upgrade master_sdk" in message and str(store) in message
    assert digest(store) == before
    assert not Path(f"{store}-wal").exists()


def test_a_sqlite_file_that_is_not_a_store_is_refused(tmp_path: Path) -> None:
    """Tables without a schema version: refused, not adopted."""
    other = tmp_path / "other.sqlite3"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE notes (x)")
    conn.commit()
    conn.close()
    with pytest.raises(ms.StoreError, match="not a master_sdk store"):
        SQLiteStore(other)
    garbage = tmp_path / "garbage.sqlite3"
    garbage.write_bytes(b"not a database at all" * 100)
    with pytest.raises(ms.StoreError, match="cannot open the store"):
        SQLiteStore(garbage)


def test_a_version_2_store_keeps_each_steps_latest_attempt_as_its_first_history(
    tmp_path: Path,
) -> None:
    """Opening the v2 fixture adds an empty step_attempts (version 2 kept only each step's
    latest attempt, which stays in steps): steps read the same with and without
    attempts=True, and the paused run resumes on the migrated store."""
    project, store = copy_release(FIXTURES / "v2.sqlite3", tmp_path)
    conn = sqlite3.connect(store)
    steps_before = conn.execute(
        "SELECT run_pk, idx, step_id, type, status, attempt, started_us, ended_us, output, "
        "error FROM steps ORDER BY run_pk, idx"
    ).fetchall()
    conn.close()
    with ms.Workbench.open(project, store=store) as wb:
        assert user_version(store) == schema.SCHEMA_VERSION
        conn = sqlite3.connect(store)
        steps_after = conn.execute(
            "SELECT run_pk, idx, step_id, type, status, attempt, started_us, ended_us, "
            "output, error FROM steps ORDER BY run_pk, idx"
        ).fetchall()
        archived = conn.execute("SELECT count(*) FROM step_attempts").fetchone()[0]
        conn.close()
        assert steps_after == steps_before and len(steps_after) == 6 and archived == 0
        runs = wb.runs().set_index("status")
        done = wb.get_run(runs.loc["completed", "run_id"], recover=False)
        pd.testing.assert_frame_equal(done.steps(), wb.store.steps_frame(done.id, attempts=True))
        paused = wb.get_run(runs.loc["waiting_approval", "run_id"])
        paused.approve(by="bo")
        paused.submit({"audience": "a colleague"}, by="bo")
        assert paused.status == "completed"
        history = wb.store.steps_frame(paused.id, attempts=True)
        assert list(history["step_id"]) == ["echo", "review", "audience", "summary"]
        assert set(history["status"]) == {"completed"}
