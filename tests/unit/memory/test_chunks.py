"""Trace chunks: a commit's events as one row of fixed-width records, names as codes."""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path

import numpy as np
import pytest

import master_sdk as ms
from master_sdk.memory.chunks import (
    CHUNKS_DDL,
    EVENT,
    METRICS,
    NAMES_DDL,
    NO_CODE,
    NO_NAME,
    NO_TOKENS,
    NewNames,
    attrs_text,
    pack,
    unpack,
)
from master_sdk.memory.records import Changes, RunRow, VersionConflict
from master_sdk.memory.sqlite import SQLiteStore
from master_sdk.memory.sqlite.traces import EVENT_DTYPE, METRICS_DTYPE
from master_sdk.memory.store import TraceEvent
from master_sdk.tracing.events import EventRow

TS = 1_767_225_600_000_000
EVENTS: list[EventRow] = [
    (1, TS, 0, None, None, None, None, None, None, None, None, {"by": "ana"}),
    (2, TS + 5, 5, "echo", 0, "echo", 9, 0.25, None, None, None, None),
    (3, TS + 9, 6, "summary", 1, "default", 9, 12.5, 10, 2**40, 0.0, {"n": [1, {"x": None}]}),
    (4, TS + 9, 7, "summary", 1, "default", 10, None, 0, None, 3.5, {}),
    (5, TS + 2**40, 19, None, None, None, 12, None, None, None, None, None),
]
CODES = {"echo": 1, "summary": 2, "default": 3}
NAMES = {code: name for name, code in CODES.items()}


def test_events_read_back_exactly_as_the_engine_emitted_them() -> None:
    """Every field, present or missing, survives pack and unpack (attributes through JSON)."""
    data, metrics = pack(EVENTS, CODES)
    assert unpack(data, metrics, attrs_text(EVENTS, json.dumps), NAMES) == EVENTS


def test_an_event_that_measured_nothing_costs_one_fixed_record() -> None:
    """data holds one EVENT record per event; metrics only the events with a duration,
    tokens or a cost; attrs is a JSON array aligned with the events, or None."""
    data, metrics = pack(EVENTS, CODES)
    assert (EVENT.size, METRICS.size) == (23, 36)
    assert len(data) == 5 * EVENT.size
    assert metrics is not None and len(metrics) == 3 * METRICS.size
    assert [m[0] for m in METRICS.iter_unpack(metrics)] == [1, 2, 3]
    assert json.loads(attrs_text(EVENTS, json.dumps) or "") == [e[11] for e in EVENTS]
    quiet = [(*EVENTS[0][:11], None), EVENTS[4]]
    assert pack(quiet, CODES)[1] is None
    assert attrs_text(quiet, json.dumps) is None


def test_the_numpy_records_read_the_struct_records() -> None:
    """The frames' dtypes are the codec's layouts: numpy reads the same values, with the
    documented markers for what is missing."""
    assert EVENT_DTYPE.itemsize == EVENT.size and METRICS_DTYPE.itemsize == METRICS.size
    data, metrics = pack(EVENTS, CODES)
    records = np.frombuffer(data, dtype=EVENT_DTYPE)
    assert records["seq"].tolist() == [1, 2, 3, 4, 5]
    assert records["ts_us"].tolist() == [e[1] for e in EVENTS]
    assert records["event"].tolist() == [0, 5, 6, 7, 19]
    assert records["step_id"].tolist() == [NO_NAME, 1, 2, 2, NO_NAME]
    assert records["name"].tolist() == [NO_NAME, 1, 3, 3, NO_NAME]
    assert records["step_type"].tolist() == [NO_CODE, 0, 1, 1, NO_CODE]
    assert records["status"].tolist() == [NO_CODE, 9, 9, 10, 12]
    measured = np.frombuffer(metrics or b"", dtype=METRICS_DTYPE)
    assert measured["index"].tolist() == [1, 2, 3]
    assert measured["tokens_in"].tolist() == [NO_TOKENS, 10, 0]
    assert measured["tokens_out"].tolist() == [NO_TOKENS, 2**40, NO_TOKENS]
    assert measured["duration_ms"][:2].tolist() == [0.25, 12.5]
    assert math.isnan(measured["duration_ms"][2])
    assert math.isnan(measured["cost_usd"][0]) and measured["cost_usd"][1:].tolist() == [0.0, 3.5]


def test_a_damaged_chunk_is_a_store_error() -> None:
    """Bytes that are not whole records, attrs of another length, or metrics naming an event
    the chunk does not have: StoreError saying the store is damaged."""
    data, metrics = pack(EVENTS, CODES)
    attrs = attrs_text(EVENTS, json.dumps)
    with pytest.raises(ms.StoreError, match="damaged"):
        unpack(data[:-1], metrics, attrs, NAMES)
    with pytest.raises(ms.StoreError, match="damaged"):
        unpack(data, metrics, json.dumps([None]), NAMES)
    with pytest.raises(ms.StoreError, match="damaged"):
        unpack(data[: EVENT.size], metrics, None, NAMES)


def test_connections_agree_on_name_codes_and_redact_names_first(tmp_path: Path) -> None:
    """A name gets one code in a store whichever connection adds it first; a name is stored
    as the store's redaction leaves it."""
    path = tmp_path / "names.sqlite3"
    setup = sqlite3.connect(path, isolation_level=None)
    setup.execute(NAMES_DDL)
    setup.execute(CHUNKS_DDL)
    one, two = sqlite3.connect(path, isolation_level=None), sqlite3.connect(path)
    one.execute("BEGIN IMMEDIATE")
    first = NewNames(one, {}, str.upper)
    assert (first["echo"], first["review"]) == (1, 2)
    assert first.added == {"echo": 1, "review": 2}
    one.execute("COMMIT")
    two.execute("BEGIN IMMEDIATE")
    second = NewNames(two, {"echo": 1}, str.upper)
    assert (second["review"], second["summary"], second["echo"]) == (2, 3, 1)
    assert second.added == {"review": 2, "summary": 3}
    two.execute("COMMIT")
    assert setup.execute("SELECT code, text FROM trace_names ORDER BY code").fetchall() == [
        (1, "ECHO"),
        (2, "REVIEW"),
        (3, "SUMMARY"),
    ]
    for conn in (setup, one, two):
        conn.close()


def new_run(store: SQLiteStore, run_id: str) -> RunRow:
    run = RunRow(run_id, "demo", "f", "running", 1, 0, TS, TS, "hash", "1.0")
    store.commit(run, Changes(), expect_version=None, label="start")
    return run


def event(seq: int, name: str) -> TraceEvent:
    return TraceEvent(seq, TS + seq, "step_started", name, "tool", name)


def test_a_store_learns_a_name_code_only_once_its_commit_succeeded(tmp_path: Path) -> None:
    """A commit that loses its compare-and-set takes its new name codes with it: when
    another process then gives those codes to other names, this store's next events still
    read with their own names."""
    path = tmp_path / "s.sqlite3"
    mine, other = SQLiteStore(path), SQLiteStore(path)
    run = new_run(mine, "r1")
    run.version = 2
    with pytest.raises(VersionConflict):
        mine.commit(run, Changes(events=[event(1, "late")]), expect_version=7, label="x")
    theirs = new_run(other, "r2")
    theirs.version = 2
    events = [event(1, "filler"), event(2, "late")]
    other.commit(theirs, Changes(events=events), expect_version=1, label="x")
    mine.commit(run, Changes(events=[event(1, "late")]), expect_version=1, label="x")
    frame = mine.trace_frame(run_id="r1")
    assert frame["name"].tolist() == ["late"] and frame["step_id"].tolist() == ["late"]
    assert other.trace_frame(run_id="r2")["name"].tolist() == ["filler", "late"]
    mine.close()
    other.close()


def test_each_commit_writes_its_events_as_one_chunk(wb: ms.Workbench) -> None:
    """A completed hello_world run: seven commits (each decision is committed apart from
    the continuation that follows it), seven trace_chunks rows holding its sixteen events;
    trace_names holds only its step ids and tool, agent and model names."""
    run = wb.run("hello_world/greet", inputs={"text": "hi"})
    run.approve(by="ana")
    run.submit({"audience": "the board"}, by="ana")
    conn = wb.store.conn
    sizes = [r[0] for r in conn.execute("SELECT n FROM trace_chunks ORDER BY first_seq")]
    assert sizes == [2, 4, 2, 2, 2, 1, 3]
    assert wb.store.count_events() == wb.store.count_events(run.id) == 16
    assert wb.store.count_events("no-such-run") == 0
    names = {r[0] for r in conn.execute("SELECT text FROM trace_names")}
    assert names == {"echo", "review", "audience", "summary", "summarizer", "default"}
