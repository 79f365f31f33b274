"""The DataFrames over the store: columns, dtypes, filters and both read paths."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

import master_sdk as ms
from master_sdk.memory.frames import (
    APPROVAL_COLUMNS,
    RUN_COLUMNS,
    STEP_COLUMNS,
    TRACE_COLUMNS,
    trace_frame,
)

UTC_US = "datetime64[us, UTC]"
TRACE_DTYPES = {
    "run_id": "category",
    "seq": "int64",
    "ts": UTC_US,
    "event": "category",
    "step_id": "category",
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


def dtypes(frame: pd.DataFrame) -> dict[str, str]:
    return {name: str(dtype) for name, dtype in frame.dtypes.items()}


def completed(wb: ms.Workbench, text: str, audience: str = "the board") -> ms.Run:
    run = wb.run("hello_world/greet", inputs={"text": text})
    run.approve("ok", by="ana")
    run.submit({"audience": audience}, by="ben")
    assert run.status == "completed"
    return run


def both_paths(wb: ms.Workbench, **filters: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The trace frame through ADBC and through sqlite3, with the same filters."""
    store = wb.store
    args: dict[str, Any] = {
        "run_id": None,
        "product": None,
        "flow": None,
        "status": None,
        "since_us": None,
        **filters,
    }
    fast = trace_frame(store.conn, store.path, use_adbc=True, **args)
    slow = trace_frame(store.conn, store.path, use_adbc=False, **args)
    return fast, slow


def test_trace_frame_has_the_documented_columns_and_dtypes(wb: ms.Workbench) -> None:
    """Every trace column is present, in order, with its documented dtype."""
    completed(wb, "Hello")
    frame = wb.traces()
    assert list(frame.columns) == TRACE_COLUMNS
    assert dtypes(frame) == TRACE_DTYPES
    assert list(frame["event"].cat.categories[:3]) == [
        "run_started",
        "step_started",
        "step_completed",
    ]


def test_empty_trace_frame_has_the_same_columns_and_dtypes(wb: ms.Workbench) -> None:
    """A store without runs gives an empty frame typed like a full one."""
    frame = wb.traces()
    assert frame.empty
    assert list(frame.columns) == TRACE_COLUMNS
    assert dtypes(frame) == TRACE_DTYPES


def test_hello_world_trace_reads_as_sixteen_ordered_events(wb: ms.Workbench) -> None:
    """A completed run's trace is its events in order, with tokens on the model call only."""
    run = completed(wb, "Hello")
    frame = run.trace()
    assert list(frame["seq"]) == list(range(1, 17))
    assert frame["event"].iloc[0] == "run_started"
    assert frame["event"].iloc[-1] == "run_completed"
    assert frame["ts"].is_monotonic_increasing
    model = frame[frame["event"] == "model_called"]
    assert len(model) == 1
    assert model["tokens_in"].iloc[0] > 0 and model["tokens_out"].iloc[0] > 0
    assert frame["tokens_in"].isna().sum() == 15
    assert set(frame["product"]) == {"hello_world"}
    assert set(frame["flow"]) == {"greet"}
    assert set(frame["run_id"]) == {run.id}
    decided = frame[frame["event"] == "approval_decided"]
    assert decided["status"].iloc[0] == "approved"
    assert decided["attrs"].iloc[0] == {"by": "ana"}


def test_adbc_and_sqlite3_paths_build_equal_frames(wb: ms.Workbench) -> None:
    """The ADBC reader and the sqlite3 fallback give the same frame, filters included."""
    first = completed(wb, "one")
    completed(wb, "two")
    wb.run("hello_world/greet", inputs={"text": "three"})
    for filters in (
        {},
        {"run_id": first.id},
        {"status": "waiting_approval"},
        {"product": "hello_world", "flow": "greet"},
        {"run_id": "no-such-run"},
    ):
        fast, slow = both_paths(wb, **filters)
        pd.testing.assert_frame_equal(fast, slow)
        assert dtypes(fast) == TRACE_DTYPES


def test_traces_filters_by_status_product_run_and_time(wb: ms.Workbench) -> None:
    """status=, product=, run_id= and since= keep only the matching events."""
    done = completed(wb, "done")
    paused = wb.run("hello_world/greet", inputs={"text": "paused"})
    assert set(wb.traces(status="waiting_approval")["run_id"]) == {paused.id}
    assert set(wb.traces(status="completed")["run_id"]) == {done.id}
    assert set(wb.traces(product="hello_world")["run_id"]) == {done.id, paused.id}
    assert wb.traces(product="elsewhere").empty
    assert set(wb.traces(run_id=paused.id)["run_id"]) == {paused.id}
    everything = wb.traces()
    middle = everything["ts"].iloc[len(everything) // 2]
    later = wb.traces(since=middle.to_pydatetime())
    assert len(later) == int((everything["ts"] >= middle).sum())
    naive = middle.tz_convert(None).to_pydatetime()
    assert len(wb.traces(since=naive)) == len(later)
    assert len(wb.traces(since=middle.isoformat())) == len(later)
    future = datetime.now(UTC) + timedelta(days=1)
    assert wb.traces(since=future).empty


def test_run_id_categories_hold_only_the_runs_in_the_frame(wb: ms.Workbench) -> None:
    """Filtering leaves no unused run_id category behind (group-bys stay clean)."""
    a = completed(wb, "a")
    completed(wb, "b")
    frame = wb.traces(run_id=a.id)
    assert list(frame["run_id"].cat.categories) == [a.id]
    assert frame.groupby("run_id", observed=False).size().to_dict() == {a.id: 16}


def test_attrs_are_separate_dicts_even_when_their_text_repeats(wb: ms.Workbench) -> None:
    """Rows with the same attrs text get equal but distinct dicts: editing one leaves the rest."""
    completed(wb, "a")
    completed(wb, "b")
    frame = wb.traces()
    decided = frame.loc[frame["event"] == "approval_decided", "attrs"].tolist()
    assert decided == [{"by": "ana"}, {"by": "ana"}]
    decided[0]["by"] = "someone else"
    assert decided[1] == {"by": "ana"}
    assert frame.loc[frame["event"] == "step_started", "attrs"].isna().all()


def _insert_trace(path: Path, events: list[tuple[Any, ...]]) -> None:
    conn = sqlite3.connect(str(path))
    with conn:
        conn.executemany("INSERT INTO trace VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", events)
    conn.close()


def test_columns_empty_in_the_first_thousands_of_rows_keep_their_types(
    wb: ms.Workbench,
) -> None:
    """A column NULL for thousands of rows, then filled, is still typed (no ADBC type clash)."""
    run = wb.run("hello_world/greet", inputs={"text": "x"})
    pk = wb.store.conn.execute("SELECT pk FROM runs WHERE run_id = ?", (run.id,)).fetchone()[0]
    base = len(run.trace())
    filler = [
        (
            pk,
            base + i,
            1_767_225_600_000_000 + i,
            1,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
        )
        for i in range(1, 5001)
    ]
    filled = (
        pk,
        base + 5001,
        1_767_225_600_100_000,
        6,
        "s",
        1,
        "m",
        9,
        1.5,
        3,
        4,
        0.25,
        '{"model": "m", "n": [1, 2]}',
    )
    _insert_trace(wb.store.path, [*filler, filled])
    fast, slow = both_paths(wb)
    pd.testing.assert_frame_equal(fast, slow)
    last = fast.iloc[-1]
    assert (last["duration_ms"], last["tokens_in"], last["cost_usd"]) == (1.5, 3, 0.25)
    assert last["attrs"] == {"model": "m", "n": [1, 2]}
    assert last["step_type"] == "agent" and last["status"] == "ok"


def test_event_codes_unknown_to_this_version_read_as_missing(wb: ms.Workbench) -> None:
    """An event code written by a newer version is NaN, not a crash."""
    run = wb.run("hello_world/greet", inputs={"text": "x"})
    pk = wb.store.conn.execute("SELECT pk FROM runs WHERE run_id = ?", (run.id,)).fetchone()[0]
    _insert_trace(
        wb.store.path,
        [(pk, 999, 1_767_225_600_000_000, 250, None, 77, None, 99, None, None, None, None, None)],
    )
    fast, slow = both_paths(wb)
    pd.testing.assert_frame_equal(fast, slow)
    last = fast.iloc[-1]
    assert pd.isna(last["event"]) and pd.isna(last["step_type"]) and pd.isna(last["status"])


def test_runs_frame_columns_dtypes_and_values(wb: ms.Workbench) -> None:
    """wb.runs(): documented columns; a paused run names its waiting step; newest first."""
    done = completed(wb, "done")
    paused = wb.run("hello_world/greet", inputs={"text": "paused"})
    frame = wb.runs()
    assert list(frame.columns) == RUN_COLUMNS
    assert dtypes(frame) == {
        "run_id": "string",
        "product": "category",
        "flow": "category",
        "status": "category",
        "created_at": UTC_US,
        "updated_at": UTC_US,
        "created_by": "string",
        "waiting_step": "string",
        "steps": "int64",
        "tool_calls": "int64",
        "model_calls": "int64",
        "tokens_in": "int64",
        "tokens_out": "int64",
        "total_tokens": "int64",
        "cost_usd": "float64",
        "flow_hash": "string",
        "product_version": "string",
        "error": "string",
    }
    assert list(frame["run_id"]) == [paused.id, done.id]
    assert frame["waiting_step"].tolist()[0] == "review"
    assert pd.isna(frame["waiting_step"].tolist()[1])
    row = frame.iloc[1]
    assert row["total_tokens"] == row["tokens_in"] + row["tokens_out"] > 0
    assert row["model_calls"] == 1 and row["tool_calls"] == 1
    assert list(wb.runs(status="waiting_approval")["run_id"]) == [paused.id]


def test_steps_frame_columns_dtypes_and_durations(wb: ms.Workbench) -> None:
    """run.steps(): one row per step, durations in ms from start and end times."""
    run = completed(wb, "x")
    frame = run.steps()
    assert list(frame.columns) == STEP_COLUMNS
    assert dtypes(frame) == {
        "run_id": "string",
        "idx": "int64",
        "step_id": "string",
        "step_type": "category",
        "status": "category",
        "attempt": "int64",
        "started_at": UTC_US,
        "ended_at": UTC_US,
        "duration_ms": "float64",
        "output": "object",
        "error": "string",
    }
    assert list(frame["step_id"]) == ["echo", "review", "audience", "summary"]
    expected = (frame["ended_at"] - frame["started_at"]) / pd.Timedelta(milliseconds=1)
    assert (frame["duration_ms"] - expected).abs().max() < 1e-6
    assert frame["output"].iloc[2] == {"audience": "the board"}


def test_approvals_frame_records_who_when_and_comment(wb: ms.Workbench) -> None:
    """wb.approvals(): the decision, who took it, when (UTC) and the comment."""
    before = pd.Timestamp.now(tz="UTC")
    completed(wb, "x")
    rejected = wb.run("hello_world/greet", inputs={"text": "y"})
    rejected.reject("no", by="chloe")
    frame = wb.approvals()
    assert list(frame.columns) == APPROVAL_COLUMNS
    assert dtypes(frame) == {
        "run_id": "string",
        "product": "category",
        "flow": "category",
        "step_id": "string",
        "decision": "category",
        "by": "string",
        "comment": "string",
        "at": UTC_US,
    }
    assert frame["decision"].tolist() == ["approved", "rejected"]
    assert frame["by"].tolist() == ["ana", "chloe"]
    assert frame["comment"].tolist() == ["ok", "no"]
    assert (frame["at"] >= before).all()
    assert wb.approvals(product="elsewhere").empty


def test_budget_frame_shows_used_limit_remaining_percent_for_every_budget(
    wb: ms.Workbench,
) -> None:
    """run.budget(): one row per budget, numbers as float64, remaining = limit - used."""
    run = completed(wb, "x")
    frame = run.budget()
    assert list(frame.columns) == [
        "budget",
        "used",
        "limit",
        "remaining",
        "percent",
        "status",
        "attempted",
    ]
    assert frame["budget"].tolist() == [
        "steps",
        "tool_calls",
        "model_calls",
        "total_tokens",
        "cost_usd",
    ]
    for column in ("used", "limit", "remaining", "percent"):
        assert str(frame[column].dtype) == "float64"
    assert str(frame["budget"].dtype) == "category"
    assert str(frame["status"].dtype) == "category"
    assert str(frame["attempted"].dtype) == "object"
    steps = frame.set_index("budget").loc["steps"]
    assert (steps["used"], steps["limit"], steps["remaining"]) == (4.0, 20.0, 16.0)
    assert steps["percent"] == 20.0
    limited = frame.dropna(subset=["limit"])
    assert ((limited["limit"] - limited["used"]) == limited["remaining"]).all()
