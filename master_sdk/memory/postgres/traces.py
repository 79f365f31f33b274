"""Trace events in PostgreSQL: the SQLite store's chunk records, read in bulk.

A commit's events are one ``trace_blocks`` row holding the fixed-width records of
``memory/chunks.py`` (``data``: 23 bytes an event, ``metrics``: 36 bytes an event that
measured something, ``attrs``: one JSON array, NULL when no event has attributes); step ids
and tool, agent and model names are integer codes into ``trace_names``, given by one
statement of their own before the commit that first uses them (``INSERT ... ON CONFLICT DO
NOTHING`` and read back), so every process and host agrees on them and a commit never
waits for them twice.

A frame reads the blocks of the runs asked for in bulk, with one ``COPY (SELECT ...) TO
STDOUT (FORMAT binary)``: the server joins the blocks of each range of 1,024 runs into a
handful of values — a 16-byte head a block (run key, part sizes), the events' records,
their metrics, the attribute texts — so the stream holds a few rows, not one a block
(psycopg hands a COPY over row by row). The client reads each row's fields with a few
``struct`` calls, the heads as one numpy array, puts the blocks in run and commit order
with numpy if the server read them in another, and decodes the records with numpy as the
SQLite store does (``memory/trace_decoding.py``): no Python code runs once per block or
per event. (:func:`fetch_blocks`, the same blocks by an ordinary ``SELECT``, a row a
block, is the peer of ``benchmarks/postgres_frames.py``.)
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from master_sdk.errors import StoreError
from master_sdk.memory.chunks import MAX_CHUNK, attrs_text, coded, named, pack, unpack
from master_sdk.memory.store import TraceEvent, TraceTable
from master_sdk.memory.trace_decoding import (
    EVENT_DTYPE,
    METRICS_DTYPE,
    Chunks,
    decode,
    empty_trace_table,
)

if TYPE_CHECKING:
    import psycopg

    Conn = psycopg.Connection[tuple[Any, ...]]

Block = tuple[bytes, bytes | None, str | None, int]  # data, metrics, attrs, n


_NAME_CODES = (
    "WITH given AS (INSERT INTO trace_names (text) SELECT unnest(%s::text[]) "
    "ON CONFLICT (text) DO NOTHING RETURNING code, text) "
    "SELECT code, text FROM given UNION ALL "
    "SELECT code, text FROM trace_names WHERE text = ANY(%s)"
)


def name_codes(conn: Conn, missing: Sequence[str]) -> dict[str, int]:
    """Codes of the names ``missing``, given to new names in their own (autocommitted)
    statement: a name's code is durable before any commit uses it, and never changes.

    One statement adds the new names and reads the known ones; a name another process
    added while it ran (its insert waited on that one and found it, but the statement's
    snapshot predates it) is read again.
    """
    codes: dict[str, int] = {}
    wanted = list(missing)
    for _ in range(3):
        for code, text in conn.execute(_NAME_CODES, (wanted, wanted)):
            codes[str(text)] = int(code)
        wanted = [n for n in wanted if n not in codes]
        if not wanted:
            return codes
    raise AssertionError(f"trace names without a code after three reads: {wanted}")


def encode(
    events: Sequence[TraceEvent],
    scrub: Callable[[Any], Any],
    dumps: Callable[[Any], str | None],
    codes_of: Callable[[set[str]], Mapping[str, int]],
) -> list[Block]:
    """The blocks of ``events`` (at most ``MAX_CHUNK`` events each), names redacted and
    coded by ``codes_of`` (a mapping holding at least the names it is given).

    Raises:
        StoreError: an event, step type or status outside the trace vocabulary.
    """
    rows = coded(
        [
            replace(
                e,
                step_id=None if e.step_id is None else scrub(e.step_id),
                name=None if e.name is None else scrub(e.name),
            )
            for e in events
        ]
    )
    wanted = {r[3] for r in rows if r[3] is not None} | {r[5] for r in rows if r[5] is not None}
    codes = codes_of(wanted)
    blocks: list[Block] = []
    for at in range(0, len(rows), MAX_CHUNK):
        part = rows[at : at + MAX_CHUNK]
        data, metrics = pack(part, codes)
        blocks.append((data, metrics, attrs_text(part, dumps), len(part)))
    return blocks


def insert_blocks(conn: Conn, pk: int, blocks: Sequence[Block]) -> None:
    """Write ``blocks`` of run ``pk`` in order."""
    if blocks:
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO trace_blocks (run_pk, n, data, metrics, attrs) "
                "VALUES (%s, %s, %s, %s, %s)",
                [(pk, n, data, metrics, attrs) for data, metrics, attrs, n in blocks],
            )


# attribute texts of one group's blocks, joined: a JSON text never holds a raw control
# character (JSON escapes them), so U+001E cannot occur inside one
_ATTRS_SEPARATOR = "\x1e"
# runs per COPY row: each joined value stays far below PostgreSQL's 1 GB for one value
# unless 1,024 consecutive runs hold some 40 million events (then the blocks are read by
# :func:`fetch_blocks` instead, in the same snapshot)
RUNS_PER_ROW = 1024
# One row per range of runs: each block's run key and part sizes (16 bytes a block), the
# blocks' records, their metrics and their attribute texts, joined. The aggregates of one
# row read the same blocks in the same order, so the parts line up; the order itself is
# the scan's (no ORDER BY: PostgreSQL 15 would sort once per aggregate, and grouping would
# sort or hash every block), so the client puts the blocks in order (:func:`in_order`).
_RANGE = (
    "SELECT string_agg(int8send(b.run_pk) || int4send(length(b.data)) "
    "|| int4send(coalesce(length(b.metrics), 0)), ''::bytea), "
    "string_agg(b.data, ''::bytea), "
    "coalesce(string_agg(b.metrics, ''::bytea), ''::bytea), "
    "string_agg(coalesce(b.attrs, ''), E'\\x1e') "
    "FROM trace_blocks b WHERE b.run_pk BETWEEN {low} AND {high}{where} HAVING count(*) > 0"
)
_HEAD = np.dtype([("pk", ">i8"), ("data", ">i4"), ("metrics", ">i4")])
_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
_INT2 = struct.Struct(">h")
_INT4 = struct.Struct(">i")


def _fields(buffer: bytes, count: int) -> list[list[memoryview]]:
    """The rows of a binary COPY stream of ``count`` non-NULL fields each."""
    view = memoryview(buffer)
    if bytes(view[:11]) != _SIGNATURE:
        raise StoreError("PostgreSQL sent a COPY stream without its signature")
    at = 15 + 4 + _INT4.unpack_from(view, 15)[0]  # flags, then the header extension
    rows: list[list[memoryview]] = []
    while True:
        (n,) = _INT2.unpack_from(view, at)
        at += 2
        if n == -1:
            return rows
        if n != count:
            raise StoreError(f"PostgreSQL sent a COPY row of {n} fields, not {count}")
        row = []
        for _ in range(n):
            (size,) = _INT4.unpack_from(view, at)
            at += 4
            if size < 0:
                raise StoreError("PostgreSQL sent a NULL where the trace has a value")
            row.append(view[at : at + size])
            at += size
        rows.append(row)


def copy_blocks(conn: Conn, runs: str, params: Sequence[Any], pks: np.ndarray) -> Chunks | None:
    """The blocks of the runs ``SELECT r.pk FROM runs r{runs}`` selects (their keys
    ``pks``, sorted), by one binary COPY (see the module docstring), in run then commit
    order; None when there are none."""
    ranges = [
        (int(pks[at]), int(pks[min(at + RUNS_PER_ROW, len(pks)) - 1]))
        for at in range(0, len(pks), RUNS_PER_ROW)
    ]
    parts, values = [], []
    for low, high in ranges:
        where = ""
        if runs:  # the runs asked for, within the range (the index on runs.pk finds them)
            where = (
                f" AND b.run_pk IN (SELECT r.pk FROM runs r{runs} "
                f"AND r.pk BETWEEN {low} AND {high})"
            )
            values += list(params)
        parts.append(_RANGE.format(low=low, high=high, where=where))
    query = " UNION ALL ".join(parts)
    # compiling dozens of like branches (JIT) would cost more than running them; SET LOCAL
    # ends with the transaction, so a pooler's next client never sees it
    conn.execute("SET LOCAL jit = off")
    with (
        conn.cursor() as cur,
        cur.copy(f"COPY ({query}) TO STDOUT (FORMAT binary)", values) as copy,
    ):
        buffer = b"".join(copy)
    rows = _fields(buffer, 4)
    if not rows:
        return None
    head = np.frombuffer(b"".join(r[0] for r in rows), dtype=_HEAD)
    texts = [bytes(r[3]).decode() for r in rows]
    return in_order(
        Chunks(
            pk=head["pk"].astype("int64"),
            data=b"".join(r[1] for r in rows),
            data_sizes=head["data"].astype("int64"),
            metrics=b"".join(r[2] for r in rows),
            metric_sizes=head["metrics"].astype("int64"),
            attrs=_ATTRS_SEPARATOR.join(texts).split(_ATTRS_SEPARATOR),
        )
    )


def in_order(chunks: Chunks) -> Chunks:
    """``chunks`` in run then first ``seq`` order (as they are, when they already are).

    Reordered with numpy, a block's events and metrics records moved together, never a
    Python step per block or event except for the attribute texts.
    """
    chunks.check()
    records = np.frombuffer(chunks.data, dtype=EVENT_DTYPE)
    lengths = chunks.lengths
    starts = np.zeros(len(lengths), dtype="int64")
    np.cumsum(lengths[:-1], out=starts[1:])
    first_seq = records["seq"][starts].astype("int64")
    pk = chunks.pk
    same = pk[1:] == pk[:-1]
    if ((pk[1:] > pk[:-1]) | (same & (first_seq[1:] > first_seq[:-1]))).all():
        return chunks
    order = np.lexsort((first_seq, pk))
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    blocks = np.arange(len(order))
    events = np.argsort(rank[np.repeat(blocks, lengths)], kind="stable")
    metric_counts = chunks.metric_sizes // METRICS_DTYPE.itemsize
    metrics = np.frombuffer(chunks.metrics, dtype=METRICS_DTYPE)
    measured = np.argsort(rank[np.repeat(blocks, metric_counts)], kind="stable")
    return Chunks(
        pk=pk[order],
        data=records[events].tobytes(),
        data_sizes=chunks.data_sizes[order],
        metrics=metrics[measured].tobytes(),
        metric_sizes=chunks.metric_sizes[order],
        attrs=[chunks.attrs[i] for i in order.tolist()],
    )


def fetch_blocks(conn: Conn, runs: str, params: Sequence[Any], pks: np.ndarray) -> Chunks | None:
    """:func:`copy_blocks` by an ordinary binary-format ``SELECT``: a row a block."""
    where = f" WHERE b.run_pk IN (SELECT r.pk FROM runs r{runs})" if runs else ""
    with conn.cursor(binary=True) as cur:
        rows = cur.execute(
            f"SELECT b.run_pk, b.data, b.metrics, b.attrs FROM trace_blocks b{where} "
            "ORDER BY b.run_pk, b.block",
            list(params),
        ).fetchall()
    if not rows:
        return None
    keys, data, metrics, attrs = zip(*rows, strict=True)
    return Chunks(
        pk=np.fromiter(keys, dtype="int64", count=len(keys)),
        data=b"".join(data),
        data_sizes=np.fromiter(map(len, data), dtype="int64", count=len(data)),
        metrics=b"".join(m for m in metrics if m is not None),
        metric_sizes=np.fromiter(
            (0 if m is None else len(m) for m in metrics), dtype="int64", count=len(metrics)
        ),
        attrs=[a or "" for a in attrs],
    )


read_blocks = copy_blocks


def _blocks(conn: Conn, where: str, params: Sequence[Any], pks: np.ndarray) -> Chunks | None:
    """:data:`read_blocks`, or :func:`fetch_blocks` if the server cannot build a COPY row
    (a value past 1 GB): the COPY runs under a savepoint, so the same snapshot is read."""
    import psycopg

    if read_blocks is not copy_blocks:
        return read_blocks(conn, where, params, pks)
    conn.execute("SAVEPOINT frame")
    try:
        got = copy_blocks(conn, where, params, pks)
    except (psycopg.errors.ProgramLimitExceeded, psycopg.errors.OutOfMemory):
        conn.execute("ROLLBACK TO SAVEPOINT frame")
        return fetch_blocks(conn, where, params, pks)
    conn.execute("RELEASE SAVEPOINT frame")
    return got


def read_trace_table(
    conn: Conn, where: str, params: Sequence[Any], *, since_us: int | None
) -> TraceTable:
    """The trace events of the runs ``SELECT ... FROM runs r{where}`` selects, ordered by
    run then ``seq`` (call inside one repeatable-read transaction, outside pipeline mode:
    COPY cannot be pipelined)."""
    with conn.cursor(binary=True) as cur:
        rows = cur.execute(
            f"SELECT r.pk, r.run_id, r.product, r.flow FROM runs r{where} ORDER BY r.pk",
            list(params),
        ).fetchall()
    if not rows:
        return empty_trace_table()
    keys, run_ids, products, flows = zip(*rows, strict=True)
    pks = np.fromiter(keys, dtype="int64", count=len(keys))
    chunks = _blocks(conn, where, params, pks)
    if chunks is None:
        return empty_trace_table()
    chunks.check()
    names = {int(c): str(t) for c, t in conn.execute("SELECT code, text FROM trace_names")}
    return decode(chunks, (pks, list(run_ids), list(products), list(flows)), names, since_us)


def read_run_events(conn: Conn, pk: int) -> list[TraceEvent]:
    """Every event of run ``pk``, with names, in ``seq`` order."""
    with conn.cursor(binary=True) as cur:
        rows = cur.execute(
            "SELECT data, metrics, attrs FROM trace_blocks WHERE run_pk = %s ORDER BY block",
            (pk,),
        ).fetchall()
    if not rows:
        return []
    names = {int(c): str(t) for c, t in conn.execute("SELECT code, text FROM trace_names")}
    out: list[TraceEvent] = []
    for data, metrics, attrs in rows:
        out.extend(named(unpack(bytes(data), metrics, attrs, names)))
    return out
