"""DataFrames over the store: runs, trace events, steps, approvals.

Column names and dtypes are part of the public contract (documented in the README):
timestamps are tz-aware UTC, durations in milliseconds, token and cost columns numeric,
low-cardinality columns categorical.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from master_sdk.tracing.events import EVENTS, RUN_STATUSES, STATUSES, STEP_TYPES

RUN_COLUMNS = [
    "run_id",
    "product",
    "flow",
    "status",
    "created_at",
    "updated_at",
    "created_by",
    "waiting_step",
    "steps",
    "tool_calls",
    "model_calls",
    "tokens_in",
    "tokens_out",
    "total_tokens",
    "cost_usd",
    "flow_hash",
    "product_version",
    "error",
]
TRACE_COLUMNS = [
    "run_id",
    "seq",
    "ts",
    "event",
    "step_id",
    "step_type",
    "product",
    "flow",
    "name",
    "status",
    "duration_ms",
    "tokens_in",
    "tokens_out",
    "cost_usd",
    "attrs",
]
STEP_COLUMNS = [
    "run_id",
    "idx",
    "step_id",
    "step_type",
    "status",
    "attempt",
    "started_at",
    "ended_at",
    "duration_ms",
    "output",
    "error",
]
APPROVAL_COLUMNS = [
    "run_id",
    "product",
    "flow",
    "step_id",
    "decision",
    "by",
    "comment",
    "at",
]


def _utc(values: Sequence[Any] | np.ndarray) -> pd.DatetimeIndex:
    return pd.to_datetime(pd.array(values, dtype="Int64"), unit="us", utc=True)


def _run_filter(
    product: str | None, flow: str | None, status: str | None, alias: str = ""
) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    for column, value in (("product", product), ("flow", flow), ("status", status)):
        if value is not None:
            clauses.append(f"{alias}{column} = ?")
            params.append(value)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def runs_frame(
    conn: sqlite3.Connection, *, product: str | None, flow: str | None, status: str | None
) -> pd.DataFrame:
    """One row per run, newest first."""
    where, params = _run_filter(product, flow, status)
    columns = (
        "run_id, product, flow, status, created_us, updated_us, created_by, state, steps_used, "
        "tool_calls, model_calls, tokens_in, tokens_out, cost_usd, flow_hash, product_version, "
        "error"
    )
    sql = f"SELECT {columns} FROM runs{where} ORDER BY pk DESC"  # noqa: S608  # constant clauses, bound values
    rows = conn.execute(sql, params).fetchall()
    cols = list(zip(*rows, strict=True)) if rows else [()] * 17
    waiting = [(json.loads(s).get("pending") or {}).get("step") if s else None for s in cols[7]]
    tokens_in = np.asarray(cols[11], dtype="int64")
    tokens_out = np.asarray(cols[12], dtype="int64")
    frame = pd.DataFrame(
        {
            "run_id": pd.array(cols[0], dtype="string"),
            "product": pd.Categorical(cols[1]),
            "flow": pd.Categorical(cols[2]),
            "status": pd.Categorical(cols[3], categories=list(RUN_STATUSES)),
            "created_at": _utc(cols[4]),
            "updated_at": _utc(cols[5]),
            "created_by": pd.array(cols[6], dtype="string"),
            "waiting_step": pd.array(waiting, dtype="string"),
            "steps": np.asarray(cols[8], dtype="int64"),
            "tool_calls": np.asarray(cols[9], dtype="int64"),
            "model_calls": np.asarray(cols[10], dtype="int64"),
            "tokens_in": tokens_in,
            "tokens_out": tokens_out,
            "total_tokens": tokens_in + tokens_out,
            "cost_usd": np.asarray(cols[13], dtype="float64"),
            "flow_hash": pd.array(cols[14], dtype="string"),
            "product_version": pd.array(cols[15], dtype="string"),
            "error": pd.array(cols[16], dtype="string"),
        },
        columns=RUN_COLUMNS,
    )
    return frame


def trace_frame(
    conn: sqlite3.Connection,
    path: Path,
    *,
    run_id: str | None,
    product: str | None,
    flow: str | None,
    status: str | None,
    since_us: int | None,
) -> pd.DataFrame:
    """Trace events ordered by run, then sequence."""
    where, params = _run_filter(product, flow, status)
    if run_id is not None:
        where = f"{where}{' AND' if where else ' WHERE'} run_id = ?"
        params.append(run_id)
    sql_runs = f"SELECT pk, run_id, product, flow FROM runs{where} ORDER BY pk"  # noqa: S608  # constant clauses, bound values
    runs = conn.execute(sql_runs, params)
    run_rows = runs.fetchall()
    position = {row[0]: i for i, row in enumerate(run_rows)}
    filtered = bool(where)
    sql = (
        "SELECT run_pk, seq, ts_us, event, step_id, step_type, name, status, duration_ms, "
        "tokens_in, tokens_out, cost_usd, attrs FROM trace"
    )
    trace_params: list[Any] = []
    conditions: list[str] = []
    if filtered:
        if not run_rows:
            return _empty_trace()
        conditions.append(f"run_pk IN (SELECT pk FROM runs{where})")  # noqa: S608  # constant clauses
        trace_params.extend(params)
    if since_us is not None:
        conditions.append("ts_us >= ?")
        trace_params.append(since_us)
    if conditions:
        sql += " WHERE " + " AND ".join(conditions)
    sql += " ORDER BY run_pk, seq"
    rows = conn.execute(sql, trace_params).fetchall()
    if not rows:
        return _empty_trace()
    cols = list(zip(*rows, strict=True))
    run_codes = np.fromiter((position[pk] for pk in cols[0]), dtype="int64", count=len(rows))
    run_ids = [r[1] for r in run_rows]
    products = pd.Categorical([r[2] for r in run_rows])
    flows = pd.Categorical([r[3] for r in run_rows])
    return pd.DataFrame(
        {
            "run_id": pd.Categorical.from_codes(run_codes, categories=pd.Index(run_ids).unique())
            if len(set(run_ids)) == len(run_ids)
            else pd.Categorical([run_ids[c] for c in run_codes]),
            "seq": np.asarray(cols[1], dtype="int64"),
            "ts": _utc(cols[2]),
            "event": pd.Categorical.from_codes(
                np.asarray(cols[3], dtype="int64"), categories=pd.Index(EVENTS)
            ),
            "step_id": pd.Categorical(cols[4]),
            "step_type": _coded(cols[5], STEP_TYPES),
            "product": pd.Categorical.from_codes(products.codes[run_codes], products.categories),
            "flow": pd.Categorical.from_codes(flows.codes[run_codes], flows.categories),
            "name": pd.Categorical(cols[6]),
            "status": _coded(cols[7], STATUSES),
            "duration_ms": pd.array(cols[8], dtype="Float64").astype("float64"),
            "tokens_in": pd.array(cols[9], dtype="Int64"),
            "tokens_out": pd.array(cols[10], dtype="Int64"),
            "cost_usd": pd.array(cols[11], dtype="Float64").astype("float64"),
            "attrs": pd.Series(
                [json.loads(a) if a is not None else None for a in cols[12]], dtype=object
            ),
        },
        columns=TRACE_COLUMNS,
    )


def _coded(values: Sequence[int | None], categories: Sequence[str]) -> pd.Categorical[str]:
    codes = np.fromiter((-1 if v is None else v for v in values), dtype="int64", count=len(values))
    return pd.Categorical.from_codes(codes, categories=pd.Index(list(categories)))


def _empty_trace() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "run_id": pd.Categorical([]),
            "seq": np.array([], dtype="int64"),
            "ts": _utc([]),
            "event": pd.Categorical([], categories=EVENTS),
            "step_id": pd.Categorical([]),
            "step_type": pd.Categorical([], categories=STEP_TYPES),
            "product": pd.Categorical([]),
            "flow": pd.Categorical([]),
            "name": pd.Categorical([]),
            "status": pd.Categorical([], categories=STATUSES),
            "duration_ms": np.array([], dtype="float64"),
            "tokens_in": pd.array([], dtype="Int64"),
            "tokens_out": pd.array([], dtype="Int64"),
            "cost_usd": np.array([], dtype="float64"),
            "attrs": pd.Series([], dtype=object),
        },
        columns=TRACE_COLUMNS,
    )


def steps_frame(conn: sqlite3.Connection, run_id: str) -> pd.DataFrame:
    """One row per step of one run, in flow order."""
    rows = conn.execute(
        "SELECT s.idx, s.step_id, s.type, s.status, s.attempt, s.started_us, s.ended_us, "
        "s.output, s.error FROM steps s JOIN runs r ON r.pk = s.run_pk WHERE r.run_id = ? "
        "ORDER BY s.idx",
        (run_id,),
    ).fetchall()
    cols = list(zip(*rows, strict=True)) if rows else [()] * 9
    started = _utc(cols[5])
    ended = _utc(cols[6])
    duration = (ended - started) / pd.Timedelta(milliseconds=1)
    return pd.DataFrame(
        {
            "run_id": pd.array([run_id] * len(rows), dtype="string"),
            "idx": np.asarray(cols[0], dtype="int64"),
            "step_id": pd.array(cols[1], dtype="string"),
            "step_type": pd.Categorical(cols[2], categories=list(STEP_TYPES)),
            "status": pd.Categorical(cols[3], categories=list(STATUSES)),
            "attempt": np.asarray(cols[4], dtype="int64"),
            "started_at": started,
            "ended_at": ended,
            "duration_ms": np.asarray(duration, dtype="float64"),
            "output": pd.Series([json.loads(o) if o else None for o in cols[7]], dtype=object),
            "error": pd.array(cols[8], dtype="string"),
        },
        columns=STEP_COLUMNS,
    )


def approvals_frame(
    conn: sqlite3.Connection, *, product: str | None, flow: str | None
) -> pd.DataFrame:
    """The approval audit, oldest first."""
    where, params = _run_filter(product, flow, None, alias="r.")
    sql = (
        "SELECT r.run_id, r.product, r.flow, a.step_id, a.decision, a.decided_by, a.comment, "
        "a.at_us FROM approvals a JOIN runs r ON r.pk = a.run_pk"
    )
    sql = f"{sql}{where} ORDER BY a.at_us"
    rows = conn.execute(sql, params).fetchall()
    cols = list(zip(*rows, strict=True)) if rows else [()] * 8
    return pd.DataFrame(
        {
            "run_id": pd.array(cols[0], dtype="string"),
            "product": pd.Categorical(cols[1]),
            "flow": pd.Categorical(cols[2]),
            "step_id": pd.array(cols[3], dtype="string"),
            "decision": pd.Categorical(cols[4], categories=["approved", "rejected"]),
            "by": pd.array(cols[5], dtype="string"),
            "comment": pd.array(cols[6], dtype="string"),
            "at": _utc(cols[7]),
        },
        columns=APPROVAL_COLUMNS,
    )
