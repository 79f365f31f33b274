"""Trace chunks read through ``sqlite3`` and decoded by numpy into a :class:`TraceTable`.

The chunks' BLOBs come back as Python ``bytes`` (one per chunk, a few hundred thousand
for a million events), are joined once and viewed as one structured numpy array of the
fixed-width records of ``memory/chunks.py`` (decoded by ``memory/trace_decoding.py``).
Only the standard library's SQLite touches a store file in this process: a second SQLite
library (a driver bundling its own copy) would drop this process's POSIX locks when its
connection closes, and another process could then delete the WAL this one is still writing
to.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import numpy as np

from master_sdk.errors import StoreError
from master_sdk.memory.chunks import run_range
from master_sdk.memory.store import TraceTable
from master_sdk.memory.trace_decoding import EVENT_DTYPE, METRICS_DTYPE, empty_trace_table
from master_sdk.memory.trace_decoding import Chunks as _Chunks
from master_sdk.memory.trace_decoding import Runs as _Runs
from master_sdk.memory.trace_decoding import decode as _decode

__all__ = ["EVENT_DTYPE", "METRICS_DTYPE", "empty_trace_table", "read_trace_table"]

# One pass over the chunks asked for: every aggregate of one query sees the rows in the
# same order, so the concatenated records, metrics, attrs and per-chunk numbers line up.
# That order is the table's row id, (run_pk, first_seq), as SQLite scans it; should it
# ever differ, the chunks are sorted afterwards (_Chunks.sort). group_concat keeps a BLOB's
# bytes as they are; attrs are JSON texts, which hold no raw control character, so
# char(30) separates them unambiguously ('' stands for NULL).
_CHUNKS_SELECT = (
    "SELECT CAST(group_concat(data, '') AS BLOB), CAST(group_concat(metrics, '') AS BLOB), "
    "group_concat(run_pk), group_concat(length(data)), "
    "group_concat(coalesce(length(metrics), 0)), "
    "group_concat(coalesce(attrs, ''), char(30)) FROM trace_chunks{where}"
)
_RUN_RANGE = run_range("runs.pk", "trace_chunks")
_NAMES_SELECT = "SELECT code, text FROM trace_names"
# run ids, products and flows joined by char(31), which none holds (checked by counting)
_RUNS_SELECT = (
    "SELECT group_concat(pk), group_concat(run_id, char(31)), group_concat(product, char(31)), "
    "group_concat(flow, char(31)) FROM runs WHERE pk BETWEEN ? AND ?"
)
_RUNS_ROWS = "SELECT pk, run_id, product, flow FROM runs WHERE pk BETWEEN ? AND ? ORDER BY pk"


def read_trace_table(
    conn: sqlite3.Connection, where: str, params: Sequence[Any], *, since_us: int | None
) -> TraceTable:
    """The trace events of the runs ``SELECT pk FROM runs{where}`` selects (all when
    ``where`` is empty), ordered by run then ``seq``.

    Raises:
        StoreError: a chunk is damaged (not whole records, metrics or attrs that do not
            match its events, a name or run it refers to is missing).
    """
    # the chunks of the runs asked for: each run's range of row ids (memory/chunks.py)
    chunk_where = f" JOIN runs ON {_RUN_RANGE}{where}" if where else ""
    data, metrics, pks, data_sizes, metric_sizes, attrs = conn.execute(
        _CHUNKS_SELECT.format(where=chunk_where), list(params)
    ).fetchone()
    if pks is None:
        return empty_trace_table()
    chunks = _Chunks(
        pk=_ints(pks),
        data=data,
        data_sizes=_ints(data_sizes),
        metrics=metrics or b"",
        metric_sizes=_ints(metric_sizes),
        attrs=attrs.split("\x1e"),
    )
    chunks.check()
    chunks.sort()
    # Read after the chunks, so every run and name they refer to is there (neither is ever
    # deleted from a store).
    runs = _read_runs(conn, int(chunks.pk[0]), int(chunks.pk[-1]))
    names = dict(conn.execute(_NAMES_SELECT).fetchall())
    return _decode(chunks, runs, names, since_us)


def _ints(text: str) -> np.ndarray:
    """A comma-separated list of integers as an int64 array."""
    values = np.fromstring(text, dtype="int64", sep=",")
    if len(values) != text.count(",") + 1:
        raise StoreError("a trace chunk's numbers do not read back; the store is damaged")
    return values


def _read_runs(conn: sqlite3.Connection, first: int, last: int) -> _Runs:
    """``pk`` (sorted), ``run_id``, ``product`` and ``flow`` of the runs from ``first`` to
    ``last``."""
    pks, ids, products, flows = conn.execute(_RUNS_SELECT, (first, last)).fetchone()
    if pks is not None:
        keys = _ints(pks)
        parts = [ids.split("\x1f"), products.split("\x1f"), flows.split("\x1f")]
        if all(len(p) == len(keys) for p in parts) and (keys[1:] > keys[:-1]).all():
            return keys, parts[0], parts[1], parts[2]
    # a name holds char(31), or SQLite did not scan in pk order
    rows = conn.execute(_RUNS_ROWS, (first, last)).fetchall()
    return (
        np.array([r[0] for r in rows], dtype="int64"),
        [r[1] for r in rows],
        [r[2] for r in rows],
        [r[3] for r in rows],
    )
