"""The DataFrames over the store: columns, dtypes, filters, and values as written."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import master_sdk as ms
from master_sdk.memory import frames
from master_sdk.memory.chunks import INSERT_CHUNK, NewNames, attrs_text, pack
from master_sdk.memory.frames import (
    APPROVAL_COLUMNS,
    RUN_COLUMNS,
    STEP_COLUMNS,
    TRACE_COLUMNS,
)
from master_sdk.tracing.events import EventRow

UTC_US = "datetime64[us, UTC]"
TRACE_DTYPES = {
    "run_id": "string",
    "seq": "int64",
    "ts": UTC_US,
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


def dtypes(frame: pd.DataFrame) -> dict[str, str]:
    return {name: str(dtype) for name, dtype in frame.dtypes.items()}


def completed(wb: ms.Workbench, text: str, audience: str = "the board") -> ms.Run:
    run = wb.run("hello_world/greet", inputs={"text": text})
    run.approve("ok", by="ana")
    run.submit({"audience": audience}, by="ben")
    assert run.status == "completed"
    return run


def read(wb: ms.Workbench, **filters: Any) -> pd.DataFrame:
    """The trace frame straight from the store (no redaction on read), with filters."""
    return frames.traces(wb.store, **filters)


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


def test_trace_filters_read_the_runs_asked_for_with_the_documented_dtypes(
    wb: ms.Workbench,
) -> None:
    """run_id, status, product and flow filters each read exactly their runs' events, typed
    like the whole frame, and an unknown run reads as an empty frame."""
    first = completed(wb, "one")
    completed(wb, "two")
    paused = wb.run("hello_world/greet", inputs={"text": "three"})
    whole = read(wb)
    for filters, ids in (
        ({}, None),
        ({"run_id": first.id}, {first.id}),
        ({"status": "waiting_approval"}, {paused.id}),
        ({"product": "hello_world", "flow": "greet"}, None),
        ({"run_id": "no-such-run"}, set()),
    ):
        frame = read(wb, **filters)
        assert dtypes(frame) == TRACE_DTYPES
        expected = whole if ids is None else whole[whole["run_id"].isin(ids)]
        assert frame["seq"].tolist() == expected["seq"].tolist()
        assert set(frame["run_id"].astype(str)) == set(expected["run_id"].astype(str))


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


def test_a_trace_filtered_to_one_run_holds_only_that_run(wb: ms.Workbench) -> None:
    """Filtering leaves no other run behind (group-bys stay clean); run_id is a string, as
    in every frame, so it merges with runs() and steps() without turning into object."""
    a = completed(wb, "a")
    completed(wb, "b")
    frame = wb.traces(run_id=a.id)
    assert frame["run_id"].unique().tolist() == [a.id]
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


def _add_events(path: Path, run_id: str, events: list[EventRow], per_chunk: int = 1) -> None:
    """Write events of a run straight into the store's chunks, ``per_chunk`` to a row."""
    conn = sqlite3.connect(str(path), isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        (pk,) = conn.execute("SELECT pk FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        codes = NewNames(conn, {}, lambda name: name)
        for start in range(0, len(events), per_chunk):
            part = events[start : start + per_chunk]
            packed = pack(part, codes)
            attrs = attrs_text(part, json.dumps)
            conn.execute(INSERT_CHUNK, (pk, part[0][0], len(part), *packed, attrs))
        conn.execute("COMMIT")
    finally:
        conn.close()


def _event(seq: int, event: int = 1, **fields: Any) -> EventRow:
    row: dict[str, Any] = {
        "step_id": None,
        "step_type": None,
        "name": None,
        "status": None,
        "duration_ms": None,
        "tokens_in": None,
        "tokens_out": None,
        "cost_usd": None,
        "attrs": None,
        **fields,
    }
    return (
        seq,
        1_767_225_600_000_000 + seq,
        event,
        row["step_id"],
        row["step_type"],
        row["name"],
        row["status"],
        row["duration_ms"],
        row["tokens_in"],
        row["tokens_out"],
        row["cost_usd"],
        row["attrs"],
    )


def test_columns_empty_in_the_first_thousands_of_chunks_keep_their_types(
    wb: ms.Workbench,
) -> None:
    """Chunks without metrics or attrs for thousands of rows, then one with both, are still
    typed."""
    run = wb.run("hello_world/greet", inputs={"text": "x"})
    base = len(run.trace())
    filler = [_event(base + i) for i in range(1, 5001)]
    filled = _event(
        base + 5001,
        6,
        step_id="s",
        step_type=1,
        name="m",
        status=9,
        duration_ms=1.5,
        tokens_in=3,
        tokens_out=4,
        cost_usd=0.25,
        attrs={"model": "m", "n": [1, 2]},
    )
    _add_events(wb.store.path, run.id, [*filler, filled])
    fast = read(wb)
    last = fast.iloc[-1]
    assert (last["duration_ms"], last["tokens_in"], last["cost_usd"]) == (1.5, 3, 0.25)
    assert last["attrs"] == {"model": "m", "n": [1, 2]}
    assert last["step_type"] == "agent" and last["status"] == "ok"
    assert (last["step_id"], last["name"]) == ("s", "m")
    assert fast["duration_ms"].iloc[base : base + 5000].isna().all()
    assert fast["tokens_in"].iloc[base : base + 5000].isna().all()


def test_event_codes_unknown_to_this_version_read_as_missing(wb: ms.Workbench) -> None:
    """An event, step type or status code written by a newer version is NaN, not a crash."""
    run = wb.run("hello_world/greet", inputs={"text": "x"})
    _add_events(wb.store.path, run.id, [_event(999, 250, step_type=77, status=99)])
    fast = read(wb)
    last = fast.iloc[-1]
    assert pd.isna(last["event"]) and pd.isna(last["step_type"]) and pd.isna(last["status"])


def test_a_damaged_trace_chunk_is_a_store_error_not_a_wrong_frame(wb: ms.Workbench) -> None:
    """A chunk whose bytes are not whole events, or whose name code is not in trace_names,
    makes the reader raise StoreError saying the store is damaged."""
    run = wb.run("hello_world/greet", inputs={"text": "x"})
    conn = sqlite3.connect(str(wb.store.path))
    with conn:
        conn.execute(
            "INSERT INTO trace_chunks (id, run_pk, first_seq, n, data) "
            "SELECT (pk << 32) | 100, pk, 100, 1, zeroblob(22) FROM runs WHERE run_id = ?",
            (run.id,),
        )
    with pytest.raises(ms.StoreError, match="damaged"):
        read(wb)
    with conn:
        conn.execute(
            "UPDATE trace_chunks SET data = ? WHERE first_seq = 100",
            (pack([_event(100, step_id="gone")], {"gone": 999})[0],),
        )
    conn.close()
    with pytest.raises(ms.StoreError, match="code 999 is not in trace_names"):
        read(wb)


def test_every_value_reads_back_as_written(wb: ms.Workbench) -> None:
    """Each field of an event, present or missing, at the edges of its range, in chunks of
    several events with and without metrics and attrs, reads back as written."""
    run = wb.run("hello_world/greet", inputs={"text": "x"})
    base = len(run.trace())
    events = [
        _event(base + 1, 0, tokens_in=0, tokens_out=2**62, attrs={}),
        _event(base + 2, 22, step_id="é ü 字", name="é ü 字", duration_ms=0.0),
        _event(base + 3, 5, step_type=3, status=12, cost_usd=1e-12, attrs={"a": [{"b": None}]}),
        _event(base + 4, 13, duration_ms=123456.789, tokens_in=None, tokens_out=7),
    ]
    _add_events(wb.store.path, run.id, events, per_chunk=3)
    fast = read(wb)
    rows = fast.iloc[base:].to_dict("records")
    assert [r["seq"] for r in rows] == [base + 1, base + 2, base + 3, base + 4]
    events_read = [r["event"] for r in rows]
    assert events_read == ["run_started", "tool_retry", "tool_called", "run_completed"]
    assert rows[0]["tokens_in"] == 0 and rows[0]["tokens_out"] == 2**62 and rows[0]["attrs"] == {}
    assert rows[1]["step_id"] == rows[1]["name"] == "é ü 字" and rows[1]["duration_ms"] == 0.0
    assert (rows[2]["step_type"], rows[2]["status"]) == ("user_input", "aborted")
    assert rows[2]["cost_usd"] == 1e-12 and rows[2]["attrs"] == {"a": [{"b": None}]}
    assert rows[3]["duration_ms"] == 123456.789 and pd.isna(rows[3]["tokens_in"])
    assert rows[3]["tokens_out"] == 7 and rows[3]["attrs"] is None
    assert [r["ts"].value // 1000 for r in rows] == [e[1] for e in events]


def test_attrs_are_redacted_once_per_distinct_value_as_the_frame_is_built(
    wb: ms.Workbench,
) -> None:
    """The store's redaction sees each distinct attribute value once, however many rows
    hold it, and every row gets the redacted value as its own object."""
    for text in ("a", "b", "c"):
        completed(wb, text)
    seen: list[str] = []

    def redact(value: Any) -> Any:
        seen.append(json.dumps(value, sort_keys=True))
        return {**value, "by": "<HIDDEN>"} if value.get("by") == "ben" else value

    plain = frames.traces(wb.store)["attrs"].dropna().tolist()
    assert len(plain) == 12  # four events with attributes in each of three runs
    frame = frames.traces(wb.store, redact=redact)
    assert sorted(seen) == sorted({json.dumps(v, sort_keys=True) for v in plain})
    received = frame.loc[frame["event"] == "input_received", "attrs"].tolist()
    assert [r["by"] for r in received] == ["<HIDDEN>"] * 3
    assert received[0] is not received[1]
    assert frame["attrs"].dropna().tolist() == [
        {**v, "by": "<HIDDEN>"} if v.get("by") == "ben" else v for v in plain
    ]


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
        "tokens_in": "Int64",
        "tokens_out": "Int64",
        "total_tokens": "Int64",
        "cost_usd": "float64",
        "flow_hash": "string",
        "product_version": "string",
        "error": "string",
        "parent_run_id": "string",
        "forked_at": "string",
    }
    assert list(frame["run_id"]) == [paused.id, done.id]
    assert frame["parent_run_id"].isna().all() and frame["forked_at"].isna().all()
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
