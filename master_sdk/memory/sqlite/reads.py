"""The SQLite store's bulk reads for frames: runs as columns, step attempts, approvals.

Each function runs its queries on the connection it is given and returns the typed records
of ``memory/store.py``; the frames are built above the store (``memory/frames.py``).
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from master_sdk.memory.chunks import run_range
from master_sdk.memory.store import ApprovalRecord, RunTable, StepAttempt, StoredApproval

_RUN_TABLE_COLUMNS = (
    "run_id, product, flow, status, created_us, updated_us, created_by, "
    "json_extract(state, '$.pending.step'), steps_used, tool_calls, model_calls, tokens_in, "
    "tokens_out, cost_usd, flow_hash, product_version, error, parent_run_id, forked_at"
)
_APPROVALS_SELECT = (
    "SELECT r.run_id, r.product, r.flow, a.step_id, a.decision, a.decided_by, a.comment, "
    "a.at_us FROM approvals a JOIN runs r ON r.pk = a.run_pk{where} ORDER BY a.at_us"
)


def run_filter(
    product: str | None,
    flow: str | None,
    status: str | None,
    *,
    run_id: str | None = None,
    alias: str = "",
) -> tuple[str, list[Any]]:
    """A ``WHERE`` clause over ``runs`` (empty when nothing is asked) and its parameters."""
    clauses: list[str] = []
    params: list[Any] = []
    for column, value in (("product", product), ("flow", flow), ("status", status)):
        if value is not None:
            clauses.append(f"{alias}{column} = ?")
            params.append(value)
    if run_id is not None:
        clauses.append(f"{alias}run_id = ?")
        params.append(run_id)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def read_run_table(
    conn: sqlite3.Connection, product: str | None, flow: str | None, status: str | None
) -> RunTable:
    """Runs, newest first, as columns."""
    where, params = run_filter(product, flow, status)
    sql = f"SELECT {_RUN_TABLE_COLUMNS} FROM runs{where} ORDER BY pk DESC"  # noqa: S608  # constant clauses, bound values
    rows = conn.execute(sql, params).fetchall()
    cols: list[Any] = list(zip(*rows, strict=True)) if rows else [()] * 19
    return RunTable(*cols)


_STEP_COLUMNS = "idx, step_id, type, status, attempt, started_us, ended_us, output, error"
_STEPS_COLUMNS = ", ".join(f"steps.{c}" for c in _STEP_COLUMNS.split(", "))
# a run's steps are a range of row ids, in idx order (schema version 8)
_LATEST = (
    f"SELECT {_STEPS_COLUMNS} FROM runs JOIN steps ON {run_range('runs.pk', 'steps')} "  # noqa: S608  # constants
    "WHERE runs.run_id = ? ORDER BY steps.id"
)
# every attempt: the superseded ones (step_attempts) and the latest (steps); a copy of a
# latest attempt in step_attempts (a step a flow change dropped, then brought back) counts once
_EVERY = (
    f"WITH r AS (SELECT pk FROM runs WHERE run_id = ?) "  # noqa: S608  # constants
    f"SELECT {_STEP_COLUMNS} FROM r JOIN steps ON {run_range('r.pk', 'steps')} "
    f"UNION ALL SELECT {_STEP_COLUMNS} FROM step_attempts a WHERE a.run_pk = (SELECT pk FROM r) "
    f"AND NOT EXISTS (SELECT 1 FROM steps s WHERE {run_range('a.run_pk', 's')} "
    "AND s.step_id = a.step_id AND s.attempt = a.attempt) ORDER BY idx, attempt, step_id"
)


def read_steps(
    conn: sqlite3.Connection, run_id: str, *, attempts: bool = False
) -> list[StepAttempt]:
    """The latest attempt of each step of a run by ``idx`` (``attempts``: every attempt,
    by ``idx`` then ``attempt``); none for an unknown run."""
    rows = conn.execute(_EVERY if attempts else _LATEST, (run_id,)).fetchall()
    return [StepAttempt(r[0], r[1], r[2], r[3], r[4], r[5], r[6], _loads(r[7]), r[8]) for r in rows]


def read_approvals(
    conn: sqlite3.Connection, product: str | None, flow: str | None
) -> list[StoredApproval]:
    """The approval audit, oldest first."""
    where, params = run_filter(product, flow, None, alias="r.")
    sql = _APPROVALS_SELECT.format(where=where)
    return [
        StoredApproval(r[0], r[1], r[2], ApprovalRecord(r[3], r[4], r[5], r[6], r[7]))
        for r in conn.execute(sql, params)
    ]


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)
