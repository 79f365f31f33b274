"""What a commit of the SQLite store writes, serialised before the write lock is taken.

:func:`prepare` turns a run and its :class:`~master_sdk.memory.store.Changes` into the
rows SQLite will take (JSON encoded, every value passed through the store's ``scrub``),
so other processes wait only while SQL runs and the WAL is synced; :func:`write` runs the
statements inside the caller's transaction. :func:`write_stored_run` does the same for a
whole run (import).
"""

from __future__ import annotations

import json
import sqlite3
import struct
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from master_sdk.errors import StoreError
from master_sdk.memory.chunks import (
    INSERT_CHUNK,
    RUN_BITS,
    NewNames,
    attrs_text,
    chunk_rows,
    coded,
    pack,
    run_range,
)
from master_sdk.memory.encoding import Encoder
from master_sdk.memory.store import (
    Changes,
    FlowSource,
    RunRecord,
    StepAttempt,
    StoredRun,
    VersionConflict,
)
from master_sdk.tracing.events import EventRow

Scrub = Callable[[Any], Any]

RUN_FIELDS = (
    "run_id, product, flow, status, version, cursor, created_us, updated_us, flow_hash, "
    "product_version, created_by, owner, steps_used, tool_calls, model_calls, tokens_in, "
    "tokens_out, cost_usd, inputs, output, state, error, parent_run_id, forked_at"
)
_INSERT_RUN = f"INSERT INTO runs ({RUN_FIELDS}) VALUES ({', '.join('?' * 24)})"  # noqa: S608  # constants
_UPDATE_RUN = (
    "UPDATE runs SET status=?, version=?, cursor=?, updated_us=?, owner=?, steps_used=?, "
    "tool_calls=?, model_calls=?, tokens_in=?, tokens_out=?, cost_usd=?, output=?, state=?, "
    "error=?, flow_hash=?, product_version=? WHERE pk=? AND version=?"
)
# a step's row id is run_pk << 32 | idx (schema version 8, memory/schema.py STEPS_DDL)
_UPSERT_STEP = (
    "INSERT INTO steps (id, run_pk, idx, step_id, type, status, attempt, started_us, "  # noqa: S608  # constants
    f"ended_us, output, error) VALUES ((?1 << {RUN_BITS}) | ?2, ?1, ?2, ?3, ?4, ?5, ?6, ?7, "
    "?8, ?9, ?10) ON CONFLICT (id) DO UPDATE SET "
    "step_id=excluded.step_id, type=excluded.type, status=excluded.status, "
    "attempt=excluded.attempt, started_us=excluded.started_us, ended_us=excluded.ended_us, "
    "output=excluded.output, error=excluded.error"
)
# The latest attempt of each step lives in ``steps``; an attempt superseded by a later one
# (a retry, a recovery, a skip by hand) is copied to ``step_attempts`` first, so the
# common commit (attempt 1) writes one row, and the history costs only when there is one.
_ARCHIVE_ATTEMPT = (
    "INSERT OR IGNORE INTO step_attempts (run_pk, step_id, attempt, idx, type, status, "  # noqa: S608  # constants
    "started_us, ended_us, output, error) SELECT run_pk, step_id, attempt, idx, type, status, "
    f"started_us, ended_us, output, error FROM steps WHERE id = (?1 << {RUN_BITS}) | ?2 "
    "AND attempt < ?3"
)
# a flow change replacing the steps: the steps it drops keep their latest attempt too
_ARCHIVE_DROPPED = (
    "INSERT OR IGNORE INTO step_attempts (run_pk, step_id, attempt, idx, type, status, "  # noqa: S608  # constants
    "started_us, ended_us, output, error) SELECT run_pk, step_id, attempt, idx, type, status, "
    f"started_us, ended_us, output, error FROM steps WHERE {run_range('?1')} AND step_id "
    "NOT IN (SELECT value FROM json_each(?2))"
)
_DELETE_STEPS = f"DELETE FROM steps WHERE {run_range('?1')}"  # noqa: S608  # a constant
_INSERT_ATTEMPT = (
    "INSERT OR IGNORE INTO step_attempts (run_pk, idx, step_id, type, status, attempt, "
    "started_us, ended_us, output, error) VALUES (?,?,?,?,?,?,?,?,?,?)"
)
_INSERT_APPROVAL = "INSERT INTO approvals VALUES (?,?,?,?,?,?)"
_INSERT_INPUT = "INSERT INTO user_inputs VALUES (?,?,?,?,?)"
_INSERT_FLOW = "INSERT OR IGNORE INTO flow_versions VALUES (?,?,?,?,?)"


def step_row(step: StepAttempt, enc: Encoder) -> tuple[Any, ...]:
    """The ``steps`` / ``step_attempts`` columns after ``run_pk``."""
    return (
        step.idx,
        step.step_id,
        step.type,
        step.status,
        step.attempt,
        step.started_us,
        step.ended_us,
        enc.dumps(step.output),
        enc.text(step.error),
    )


def run_values(run: RunRecord, enc: Encoder) -> tuple[Any, ...]:
    """The ``runs`` columns of :data:`RUN_FIELDS`, in order."""
    return (
        run.run_id,
        run.product,
        run.flow,
        str(run.status),
        run.version,
        run.cursor,
        run.created_us,
        run.updated_us,
        run.flow_hash,
        run.product_version,
        run.created_by,
        run.owner,
        run.steps_used,
        run.tool_calls,
        run.model_calls,
        run.tokens_in,
        run.tokens_out,
        run.cost_usd,
        enc.dumps(run.inputs),
        enc.dumps(run.output),
        enc.dumps(run.state),
        enc.text(run.error),
        run.parent_run_id,
        run.forked_at,
    )


def flow_row(flow: FlowSource, enc: Encoder) -> tuple[str, str, str, str, str]:
    # the flow's text holds its template constants: redacted like everything else
    return (
        flow.flow_hash,
        flow.product,
        flow.flow,
        flow.product_version,
        enc.scrub(flow.source),
    )


@dataclass(slots=True)
class Prepared:
    """A commit's rows, ready for SQL."""

    run: RunRecord
    insert: tuple[Any, ...] | None
    update: tuple[Any, ...] | None
    steps: list[tuple[Any, ...]]
    replace_steps: bool
    events: list[EventRow]
    packed: tuple[bytes, bytes | None] | None
    attrs: str | None
    approvals: list[tuple[Any, ...]]
    inputs: list[tuple[Any, ...]]
    flow: tuple[str, str, str, str, str] | None


def prepare(
    run: RunRecord,
    changes: Changes,
    *,
    expect_version: int | None,
    enc: Encoder,
    names: Mapping[str, int],
    known_flows: set[str],
) -> Prepared:
    """Serialise (and redact) a commit. Raises StoreError for an event outside the trace
    vocabulary or a value that does not fit its field: nothing is written then."""
    state = enc.dumps(run.state)
    output = enc.dumps(run.output)
    error = enc.text(run.error)
    events = coded(changes.events)
    packed: tuple[bytes, bytes | None] | None = None
    attrs = None
    if events:
        # encoded before the write lock unless a name needs a new code (read back inside
        # the transaction)
        attrs = attrs_text(events, enc.dumps)
        with suppress(KeyError):
            packed = _pack(events, names)
    insert = update = None
    if expect_version is None:
        insert = run_values(run, enc)
    else:
        update = (
            str(run.status),  # a plain str: a StrEnum would go through sqlite3's adapters
            run.version,
            run.cursor,
            run.updated_us,
            run.owner,
            run.steps_used,
            run.tool_calls,
            run.model_calls,
            run.tokens_in,
            run.tokens_out,
            run.cost_usd,
            output,
            state,
            error,
            run.flow_hash,
            run.product_version,
            run.pk,
            expect_version,
        )
    flow = changes.flow_source
    return Prepared(
        run=run,
        insert=insert,
        update=update,
        steps=[step_row(s, enc) for s in changes.steps.values()],
        replace_steps=changes.replace_steps,
        events=events,
        packed=packed,
        attrs=attrs,
        approvals=[
            (a.step_id, a.decision, a.by, enc.text(a.comment), a.at_us) for a in changes.approvals
        ],
        inputs=[(i.step_id, enc.dumps(i.data), i.by, i.at_us) for i in changes.inputs],
        flow=None if flow is None or flow.flow_hash in known_flows else flow_row(flow, enc),
    )


def _pack(events: Sequence[EventRow], codes: Mapping[str, int]) -> tuple[bytes, bytes | None]:
    try:
        return pack(events, codes)
    except struct.error as exc:
        raise StoreError(
            f"a trace event has a value that does not fit its field ({exc}); nothing was written"
        ) from None


def write(conn: sqlite3.Connection, p: Prepared, names: NewNames | None) -> None:
    """Run a prepared commit's statements inside the caller's transaction; raises
    :class:`VersionConflict` when the stored run moved on (the caller rolls back)."""
    run = p.run
    if p.insert is not None:
        cur = conn.execute(_INSERT_RUN, p.insert)
        run.pk = cur.lastrowid
    else:
        cur = conn.execute(_UPDATE_RUN, p.update or ())
        if cur.rowcount != 1:
            row = conn.execute(
                "SELECT status, version FROM runs WHERE pk = ?", (run.pk,)
            ).fetchone()
            raise VersionConflict(run.run_id, *(row or (None, None)))
    pk = run.pk
    if p.replace_steps:
        kept = json.dumps([row[1] for row in p.steps])
        conn.execute(_ARCHIVE_DROPPED, (pk, kept))
        conn.execute(_DELETE_STEPS, (pk,))
    if p.steps:
        later = [(pk, row[0], row[4]) for row in p.steps if row[4] > 1]
        if later:
            conn.executemany(_ARCHIVE_ATTEMPT, later)
        conn.executemany(_UPSERT_STEP, [(pk, *row) for row in p.steps])
    if p.events:
        packed = p.packed
        if packed is None:
            if names is None:
                raise StoreError("a trace name has no code and none may be added here")
            packed = p.packed = _pack(p.events, names)
        conn.execute(INSERT_CHUNK, (pk, p.events[0][0], len(p.events), *packed, p.attrs))
    if p.approvals:
        conn.executemany(_INSERT_APPROVAL, [(pk, *row) for row in p.approvals])
    if p.inputs:
        conn.executemany(_INSERT_INPUT, [(pk, *row) for row in p.inputs])
    if p.flow is not None:
        conn.execute(_INSERT_FLOW, p.flow)


def write_stored_run(
    conn: sqlite3.Connection, stored: StoredRun, enc: Encoder, names: NewNames
) -> None:
    """Insert a whole run (import) inside the caller's transaction: its latest attempt of
    each step becomes its step row, every attempt is kept."""
    run = stored.run
    cur = conn.execute(_INSERT_RUN, run_values(run, enc))
    pk = cur.lastrowid
    if pk is None:
        raise StoreError(f"SQLite gave no row id to imported run {run.run_id}")
    latest: dict[int, StepAttempt] = {}
    for attempt in stored.attempts:
        seen = latest.get(attempt.idx)
        if seen is None or attempt.attempt >= seen.attempt:
            latest[attempt.idx] = attempt
    conn.executemany(_UPSERT_STEP, [(pk, *step_row(s, enc)) for s in latest.values()])
    current = {id(s) for s in latest.values()}
    conn.executemany(
        _INSERT_ATTEMPT,
        [(pk, *step_row(s, enc)) for s in stored.attempts if id(s) not in current],
    )
    events = coded(stored.events)
    try:
        chunks = chunk_rows(pk, events, names, enc.dumps)
    except (struct.error, TypeError) as exc:
        raise StoreError(
            f"run {run.run_id}: a trace event has a value of the wrong type or size ({exc}); "
            "nothing was written"
        ) from None
    conn.executemany(INSERT_CHUNK, chunks)
    conn.executemany(
        _INSERT_APPROVAL,
        [(pk, a.step_id, a.decision, a.by, enc.text(a.comment), a.at_us) for a in stored.approvals],
    )
    conn.executemany(
        _INSERT_INPUT, [(pk, i.step_id, enc.dumps(i.data), i.by, i.at_us) for i in stored.inputs]
    )


def insert_flows(conn: sqlite3.Connection, flows: Sequence[FlowSource], enc: Encoder) -> None:
    """Store flow texts not stored yet."""
    conn.executemany(_INSERT_FLOW, [flow_row(f, enc) for f in flows])
