"""Trace events in PostgreSQL: the SQLite store's chunk records, read in bulk.

A commit's events are one ``trace_blocks`` row holding the fixed-width records of
``memory/chunks.py`` (``data``: 23 bytes an event, ``metrics``: 36 bytes an event that
measured something, ``attrs``: one JSON array, NULL when no event has attributes); step ids
and tool, agent and model names are integer codes into ``trace_names``, given by one
statement of their own before the commit that first uses them (``INSERT ... ON CONFLICT DO
NOTHING`` and read back), so every process and host agrees on them and a commit never
waits for them twice.

A frame reads the blocks of the runs asked for with one binary-format query (``bytea``
comes back as ``bytes``, no text decoding), joins them once and decodes them with numpy,
as the SQLite store does (``memory/trace_decoding.py``), so a million events are a
few hundred thousand values, never a million Python objects.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from master_sdk.memory.chunks import MAX_CHUNK, attrs_text, coded, named, pack, unpack
from master_sdk.memory.store import TraceEvent, TraceTable
from master_sdk.memory.trace_decoding import Chunks, decode, empty_trace_table

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


def read_trace_table(
    conn: Conn, where: str, params: Sequence[Any], *, since_us: int | None
) -> TraceTable:
    """The trace events of the runs ``SELECT pk FROM runs r{where}`` selects, ordered by
    run then ``seq`` (call inside one repeatable-read transaction)."""
    block_where = f" WHERE b.run_pk IN (SELECT r.pk FROM runs r{where})" if where else ""
    with conn.cursor(binary=True) as cur:
        rows = cur.execute(
            "SELECT b.run_pk, b.data, b.metrics, b.attrs FROM trace_blocks b"
            f"{block_where} ORDER BY b.run_pk, b.block",
            list(params),
        ).fetchall()
    if not rows:
        return empty_trace_table()
    pks, data, metrics, attrs = zip(*rows, strict=True)
    chunks = Chunks(
        pk=np.fromiter(pks, dtype="int64", count=len(pks)),
        data=b"".join(data),
        data_sizes=np.fromiter(map(len, data), dtype="int64", count=len(data)),
        metrics=b"".join(m for m in metrics if m is not None),
        metric_sizes=np.fromiter(
            (0 if m is None else len(m) for m in metrics), dtype="int64", count=len(metrics)
        ),
        attrs=[a or "" for a in attrs],
    )
    chunks.check()
    first, last = int(chunks.pk[0]), int(chunks.pk[-1])
    run_rows = conn.execute(
        "SELECT pk, run_id, product, flow FROM runs WHERE pk BETWEEN %s AND %s ORDER BY pk",
        (first, last),
    ).fetchall()
    runs = (
        np.fromiter((r[0] for r in run_rows), dtype="int64", count=len(run_rows)),
        [str(r[1]) for r in run_rows],
        [str(r[2]) for r in run_rows],
        [str(r[3]) for r in run_rows],
    )
    names = {int(c): str(t) for c, t in conn.execute("SELECT code, text FROM trace_names")}
    return decode(chunks, runs, names, since_us)


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
