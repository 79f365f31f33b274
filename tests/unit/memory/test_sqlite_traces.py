"""Trace chunks read back through sqlite3 in one aggregate query and decoded by numpy."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np

from master_sdk.memory.chunks import CHUNKS_DDL, INSERT_CHUNK, NAMES_DDL, attrs_text, pack
from master_sdk.memory.sqlite.traces import read_trace_table
from master_sdk.tracing.events import EVENT_CODE, EventRow

TS = 1_767_225_600_000_000


def event(seq: int, attrs: dict[str, int] | None = None) -> EventRow:
    return (seq, TS + seq, EVENT_CODE["step_started"], "s", None, None, None,
            None, None, None, None, attrs)  # fmt: skip


def store_with_chunks(path: Path, chunks: list[tuple[int, list[EventRow]]]) -> sqlite3.Connection:
    """A bare store schema holding ``chunks`` as ``(run_pk, events)``, inserted in order."""
    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.execute("CREATE TABLE runs (pk INTEGER PRIMARY KEY, run_id TEXT, product TEXT, flow TEXT)")
    conn.execute(CHUNKS_DDL)
    conn.execute(NAMES_DDL)
    conn.execute("INSERT INTO trace_names (code, text) VALUES (1, 's')")
    for pk in sorted({pk for pk, _ in chunks}):
        conn.execute("INSERT INTO runs VALUES (?, ?, 'p', 'f')", (pk, f"run{pk}"))
    for pk, events in chunks:
        packed = pack(events, {"s": 1})
        attrs = attrs_text(events, lambda v: str(v).replace("'", '"'))
        conn.execute(INSERT_CHUNK, (pk, events[0][0], len(events), *packed, attrs))
    return conn


def test_chunks_written_out_of_order_read_back_by_run_then_seq(tmp_path: Path) -> None:
    """Chunks inserted in any order come back ordered by run, then sequence, with their
    attrs still on their own events."""
    conn = store_with_chunks(
        tmp_path / "s.sqlite3",
        [
            (2, [event(3, {"x": 3}), event(4)]),
            (1, [event(5)]),
            (2, [event(1), event(2, {"x": 2})]),
            (1, [event(1, {"x": 1}), event(2), event(3), event(4)]),
        ],
    )
    table = read_trace_table(conn, "", [], since_us=None)
    assert table.run_ids == ["run1", "run2"]
    assert table.run.tolist() == [0] * 5 + [1] * 4
    assert table.seq.tolist() == [1, 2, 3, 4, 5, 1, 2, 3, 4]
    texts = [table.attrs_texts[c] if c >= 0 else None for c in table.attrs_codes]
    assert texts == ['[{"x": 1},null,null,null]', None, '[null,{"x": 2}]', '[{"x": 3},null]']
    assert table.attrs_starts.tolist() == [0, 4, 5, 7]


def test_the_decoder_sorts_chunks_handed_over_in_another_order(tmp_path: Path) -> None:
    """Were SQLite ever to scan the chunks out of key order, the decoder sorts them: the
    records, metrics and attrs of a chunk stay together."""
    from master_sdk.memory.sqlite import traces as chunk_reader

    parts = [(2, [event(1, {"x": 21})]), (1, [event(2)]), (1, [event(1, {"x": 11})])]
    blobs = [pack(events, {"s": 1}) for _, events in parts]
    chunks = chunk_reader._Chunks(
        pk=np.array([p for p, _ in parts], dtype="int64"),
        data=b"".join(b[0] for b in blobs),
        data_sizes=np.array([len(b[0]) for b in blobs], dtype="int64"),
        metrics=b"",
        metric_sizes=np.zeros(3, dtype="int64"),
        attrs=['[{"x":21}]', "", '[{"x":11}]'],
    )
    chunks.sort()
    assert chunks.pk.tolist() == [1, 1, 2]
    records = np.frombuffer(chunks.data, dtype=chunk_reader.EVENT_DTYPE)
    assert records["seq"].tolist() == [1, 2, 1]
    assert chunks.attrs == ['[{"x":11}]', "", '[{"x":21}]']
