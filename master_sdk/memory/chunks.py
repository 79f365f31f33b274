"""Trace events on disk (schema version 2, keyed by row id since 8): one ``trace_chunks``
row per commit.

A commit's events are one row. ``data`` holds one fixed-width little-endian record per
event (:data:`EVENT`, 23 bytes), in ``seq`` order; ``metrics`` one :data:`METRICS` record
(36 bytes) per event that measured something (a duration, tokens or a cost: tool and model
calls, completed tool and agent steps), ``NULL`` when none did; ``attrs`` one JSON array
aligned with the events, ``NULL`` when none has attributes. Step ids and tool, agent and
model names are integer codes into ``trace_names``.

So a million events are read as a few hundred thousand large values and decoded by numpy
in one pass (``memory/frames.py``), instead of thirteen SQLite column reads per event, and
an event that measured nothing costs 23 bytes.

=========== ====== ==================================================================
record      format field (missing)
=========== ====== ==================================================================
EVENT       int64  ``ts_us``
            int32  ``seq``
            uint32 ``step_id`` code (:data:`NO_NAME`; codes start at 1)
            uint32 ``name`` code (:data:`NO_NAME`)
            uint8  ``event`` code (``tracing/events.py``)
            uint8  ``step_type`` code (:data:`NO_CODE`)
            uint8  ``status`` code (:data:`NO_CODE`)
METRICS     uint32 position of its event in the chunk
            double ``duration_ms`` (NaN)
            double ``cost_usd`` (NaN)
            int64  ``tokens_in`` (:data:`NO_TOKENS`)
            int64  ``tokens_out`` (:data:`NO_TOKENS`)
=========== ====== ==================================================================

A name gets its code the first time a commit needs it, inside that commit's transaction
(``INSERT OR IGNORE`` then read back), so every process agrees on codes; a store keeps the
codes it has seen, and only learns new ones once the commit holding them succeeded.
"""

from __future__ import annotations

import json
import math
import sqlite3
import struct
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from master_sdk.errors import StoreError
from master_sdk.memory.store import TraceEvent
from master_sdk.tracing.events import (
    EVENT_CODE,
    EVENTS,
    STATUS_CODE,
    STATUSES,
    STEP_TYPE_CODE,
    STEP_TYPES,
    EventRow,
)

__all__ = [
    "CHUNKS_DDL",
    "CHUNKS_DDL_V2",
    "EVENT",
    "INSERT_CHUNK",
    "INSERT_CHUNK_V2",
    "MAX_CHUNK",
    "METRICS",
    "NAMES_DDL",
    "NO_CODE",
    "NO_NAME",
    "NO_TOKENS",
    "RUN_BITS",
    "RUN_CHUNKS",
    "Chunk",
    "NewNames",
    "attrs_text",
    "chunk_id",
    "chunk_rows",
    "coded",
    "named",
    "pack",
    "read_names",
    "run_events",
    "run_range",
    "unpack",
    "used_codes",
]

EVENT = struct.Struct("<qiIIBBB")
METRICS = struct.Struct("<Iddqq")
NO_CODE = 0xFF
NO_NAME = 0
NO_TOKENS = -(2**63)
# events per chunk when a run's events are written at once (import, migration), so no row
# grows without bound; a commit writes the events it holds
MAX_CHUNK = 1024

CHUNKS_DDL = """
CREATE TABLE trace_chunks (
    id INTEGER PRIMARY KEY,
    run_pk INTEGER NOT NULL,
    first_seq INTEGER NOT NULL,
    n INTEGER NOT NULL,
    data BLOB NOT NULL,
    metrics BLOB,
    attrs TEXT
)
"""
"""Schema version 8: a chunk's row id is :func:`chunk_id` of its run and first event, so
a run's chunks are one range of row ids in ``seq`` order and the chunks of the run being
written go to the right edge of the table's B-tree, where SQLite appends a row by writing
the last leaf (and, when it is full, one new leaf and its parent) without rebalancing
its neighbours; no second index is kept. Version 2 keyed the table by
``(run_pk, first_seq)`` WITHOUT ROWID (:data:`CHUNKS_DDL_V2`)."""
CHUNKS_DDL_V2 = """
CREATE TABLE trace_chunks (
    run_pk INTEGER NOT NULL,
    first_seq INTEGER NOT NULL,
    n INTEGER NOT NULL,
    data BLOB NOT NULL,
    metrics BLOB,
    attrs TEXT,
    PRIMARY KEY (run_pk, first_seq)
) WITHOUT ROWID
"""
RUN_BITS = 32
"""A chunk's row id is ``run_pk << RUN_BITS | first_seq`` (``seq`` is an int32 of the
event record, never negative; a 64-bit row id leaves room for 2**31 runs)."""
NAMES_DDL = """
CREATE TABLE trace_names (
    code INTEGER PRIMARY KEY,
    text TEXT NOT NULL UNIQUE
)
"""
INSERT_CHUNK = (
    "INSERT INTO trace_chunks (id, run_pk, first_seq, n, data, metrics, attrs) "  # noqa: S608  # constants
    f"VALUES ((?1 << {RUN_BITS}) | ?2, ?1, ?2, ?3, ?4, ?5, ?6)"
)
"""Parameters: run_pk, first_seq, n, data, metrics, attrs (a :data:`Chunk`)."""
INSERT_CHUNK_V2 = (
    "INSERT INTO trace_chunks (run_pk, first_seq, n, data, metrics, attrs) VALUES (?,?,?,?,?,?)"
)


def run_range(pk: str, table: str = "") -> str:
    """An SQL condition: the chunk's row id (``table.id``) is in the range of the run whose
    pk is the SQL expression ``pk``."""
    return (
        f"{table}{'.' if table else ''}id BETWEEN ({pk} << {RUN_BITS}) AND "
        f"({pk} << {RUN_BITS}) + {(1 << RUN_BITS) - 1}"
    )


RUN_CHUNKS = run_range("?1")
"""The ``WHERE`` condition selecting the chunks of the run whose pk is ``?1``, by row id."""


def chunk_id(run_pk: int, first_seq: int) -> int:
    """The row id of a run's chunk starting at ``first_seq`` (see :data:`CHUNKS_DDL`)."""
    return run_pk << RUN_BITS | first_seq


# run_pk, first_seq, n, data, metrics, attrs
Chunk = tuple[int, int, int, bytes, bytes | None, str | None]
Scrub = Callable[[Any], Any]

_NAN = math.nan
_event = EVENT.pack
_metrics = METRICS.pack


def pack(events: Sequence[EventRow], codes: Mapping[str, int]) -> tuple[bytes, bytes | None]:
    """The ``data`` and ``metrics`` of ``events``; ``codes[name]`` gives the code of each
    step id and name.

    Raises:
        KeyError: a name has no code in ``codes`` (pass a :class:`NewNames` to add it).
        struct.error: a value does not fit its field.
    """
    records = []
    measured: list[bytes] | None = None
    for i, (
        seq,
        ts,
        event,
        step_id,
        step_type,
        name,
        status,
        dur,
        t_in,
        t_out,
        cost,
        _,
    ) in enumerate(events):
        records.append(
            _event(
                ts,
                seq,
                NO_NAME if step_id is None else codes[step_id],
                NO_NAME if name is None else codes[name],
                event,
                NO_CODE if step_type is None else step_type,
                NO_CODE if status is None else status,
            )
        )
        if dur is not None or t_in is not None or t_out is not None or cost is not None:
            if measured is None:
                measured = []
            measured.append(
                _metrics(
                    i,
                    _NAN if dur is None else dur,
                    _NAN if cost is None else cost,
                    NO_TOKENS if t_in is None else t_in,
                    NO_TOKENS if t_out is None else t_out,
                )
            )
    return b"".join(records), None if measured is None else b"".join(measured)


def coded(events: Sequence[TraceEvent]) -> list[EventRow]:
    """Events with names as the integer-coded rows :func:`pack` stores.

    Raises:
        StoreError: an event, step type or status outside the vocabulary of
            ``tracing/events.py``.
    """
    try:
        return [
            (
                e.seq,
                e.ts_us,
                EVENT_CODE[e.event],
                e.step_id,
                None if e.step_type is None else STEP_TYPE_CODE[e.step_type],
                e.name,
                None if e.status is None else STATUS_CODE[e.status],
                e.duration_ms,
                e.tokens_in,
                e.tokens_out,
                e.cost_usd,
                e.attrs,
            )
            for e in events
        ]
    except KeyError as exc:
        raise StoreError(
            f"trace event field value {exc} is not in the trace vocabulary (tracing/events.py); "
            "nothing was written"
        ) from None


def named(rows: Sequence[EventRow]) -> list[TraceEvent]:
    """Integer-coded rows (as :func:`unpack` reads them) as events with names; a code a
    newer version wrote reads as ``unknown_<code>`` (event) or None (step type, status)."""
    n_events, n_types, n_statuses = len(EVENTS), len(STEP_TYPES), len(STATUSES)
    return [
        TraceEvent(
            seq,
            ts,
            EVENTS[event] if event < n_events else f"unknown_{event}",
            step_id,
            None if step_type is None or step_type >= n_types else STEP_TYPES[step_type],
            name,
            None if status is None or status >= n_statuses else STATUSES[status],
            dur,
            t_in,
            t_out,
            cost,
            attrs,
        )
        for seq, ts, event, step_id, step_type, name, status, dur, t_in, t_out, cost, attrs in rows
    ]


def attrs_text(events: Sequence[EventRow], dumps: Callable[[Any], str | None]) -> str | None:
    """The chunk's ``attrs``: a JSON array of each event's attributes (each passed through
    ``dumps``, the store's redacting encoder), or None when no event has any."""
    texts: list[str] | None = None
    for i, row in enumerate(events):
        if row[11] is not None:
            if texts is None:
                texts = ["null"] * len(events)
            texts[i] = dumps(row[11]) or "null"
    return None if texts is None else "[" + ",".join(texts) + "]"


class NewNames(dict[str, int]):
    """Name codes that add a name missing from ``trace_names`` inside the caller's open
    transaction (``INSERT OR IGNORE``, then read back: another process may have added it).

    Args:
        conn: a connection inside a write transaction.
        known: the codes already known (copied).
        scrub: redaction applied to a name before it is stored.

    Attributes:
        added: the names this object coded; the store learns them once its commit succeeded.
    """

    def __init__(self, conn: sqlite3.Connection, known: Mapping[str, int], scrub: Scrub) -> None:
        super().__init__(known)
        self.conn = conn
        self.scrub = scrub
        self.added: dict[str, int] = {}

    def __missing__(self, name: str) -> int:
        text = self.scrub(name)
        self.conn.execute("INSERT OR IGNORE INTO trace_names (text) VALUES (?)", (text,))
        row = self.conn.execute("SELECT code FROM trace_names WHERE text = ?", (text,)).fetchone()
        code = int(row[0])
        self[name] = code
        self.added[name] = code
        return code


def chunk_rows(
    pk: int,
    events: Sequence[EventRow],
    codes: Mapping[str, int],
    dumps: Callable[[Any], str | None],
) -> list[Chunk]:
    """``trace_chunks`` rows for a run's events written at once (import): up to
    :data:`MAX_CHUNK` events each."""
    rows: list[Chunk] = []
    for start in range(0, len(events), MAX_CHUNK):
        part = events[start : start + MAX_CHUNK]
        rows.append((pk, part[0][0], len(part), *pack(part, codes), attrs_text(part, dumps)))
    return rows


def read_names(conn: sqlite3.Connection) -> dict[int, str]:
    """Every name code of a store, with its text."""
    rows = conn.execute("SELECT code, text FROM trace_names")
    return {int(code): str(text) for code, text in rows}


def unpack(
    data: bytes, metrics: bytes | None, attrs: str | None, names: Mapping[int, str]
) -> list[EventRow]:
    """The events of one chunk, as the engine emitted them (attributes decoded).

    Raises:
        StoreError: the chunk's parts are not whole records or do not match each other.
    """
    if len(data) % EVENT.size or (metrics is not None and len(metrics) % METRICS.size):
        raise StoreError("a trace chunk is not whole events; the store is damaged")
    n = len(data) // EVENT.size
    values: list[Any] = [None] * n
    if attrs is not None:
        values = json.loads(attrs)
        if not isinstance(values, list) or len(values) != n:
            raise StoreError("a trace chunk's attrs do not match its events; the store is damaged")
    measured: dict[int, tuple[float, float, int, int]] = {}
    for i, dur, cost, t_in, t_out in METRICS.iter_unpack(metrics or b""):
        measured[i] = (dur, cost, t_in, t_out)
    out: list[EventRow] = []
    for i, (ts, seq, step_id, name, event, step_type, status) in enumerate(EVENT.iter_unpack(data)):
        dur, cost, t_in, t_out = measured.pop(i, (_NAN, _NAN, NO_TOKENS, NO_TOKENS))
        out.append(
            (
                seq,
                ts,
                event,
                None if step_id == NO_NAME else names[step_id],
                None if step_type == NO_CODE else step_type,
                None if name == NO_NAME else names[name],
                None if status == NO_CODE else status,
                None if math.isnan(dur) else dur,
                None if t_in == NO_TOKENS else t_in,
                None if t_out == NO_TOKENS else t_out,
                None if math.isnan(cost) else cost,
                values[i],
            )
        )
    if measured:
        raise StoreError("a trace chunk's metrics name no event of it; the store is damaged")
    return out


def run_events(conn: sqlite3.Connection, pk: int, names: Mapping[int, str]) -> list[EventRow]:
    """Every event of one run, in ``seq`` order."""
    events: list[EventRow] = []
    for data, metrics, attrs in conn.execute(
        f"SELECT data, metrics, attrs FROM trace_chunks WHERE {RUN_CHUNKS} ORDER BY id",  # noqa: S608  # a constant
        (pk,),
    ):
        events.extend(unpack(data, metrics, attrs, names))
    return events


def used_codes(conn: sqlite3.Connection) -> set[int]:
    """The name codes the store's chunks refer to."""
    used: set[int] = set()
    for (data,) in conn.execute("SELECT data FROM trace_chunks"):
        for record in EVENT.iter_unpack(data):
            used.add(record[2])
            used.add(record[3])
    used.discard(NO_NAME)
    return used
