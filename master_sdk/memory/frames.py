"""DataFrames over the store: runs, trace events, steps, approvals.

Column names and dtypes are part of the public contract (documented in the README):
timestamps are tz-aware UTC, durations in milliseconds, token and cost columns numeric,
low-cardinality columns categorical.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from master_sdk.errors import StoreError
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


_TRACE_SELECT = (
    "SELECT run_pk, seq, ts_us, event, step_id, step_type, name, status, duration_ms, "
    "tokens_in, tokens_out, cost_usd, attrs FROM trace"
)
_RUNS_SELECT = "SELECT pk, run_id, product, flow FROM runs WHERE pk BETWEEN ? AND ? ORDER BY pk"
# ADBC's SQLite driver infers each column's Arrow type from the first batch of rows; one
# batch for the whole result means a column that starts with NULLs is still typed right.
_ONE_BATCH = str(2**30)


def _trace_schema() -> pa.Schema:
    return pa.schema(
        [
            ("run_pk", pa.int64()),
            ("seq", pa.int64()),
            ("ts_us", pa.int64()),
            ("event", pa.int64()),
            ("step_id", pa.string()),
            ("step_type", pa.int64()),
            ("name", pa.string()),
            ("status", pa.int64()),
            ("duration_ms", pa.float64()),
            ("tokens_in", pa.int64()),
            ("tokens_out", pa.int64()),
            ("cost_usd", pa.float64()),
            ("attrs", pa.string()),
        ]
    )


def _runs_schema() -> pa.Schema:
    return pa.schema(
        [
            ("pk", pa.int64()),
            ("run_id", pa.string()),
            ("product", pa.string()),
            ("flow", pa.string()),
        ]
    )


def trace_frame(
    conn: sqlite3.Connection,
    path: Path,
    *,
    run_id: str | None,
    product: str | None,
    flow: str | None,
    status: str | None,
    since_us: int | None,
    use_adbc: bool = True,
) -> pd.DataFrame:
    """Trace events ordered by run, then sequence.

    The events are read into Arrow columns (through the ADBC SQLite driver when it is
    installed, else through ``sqlite3``) and typed column by column, without a Python
    object per cell except in ``attrs``.
    """
    where, params = _run_filter(product, flow, status)
    if run_id is not None:
        where = f"{where}{' AND' if where else ' WHERE'} run_id = ?"
        params.append(run_id)
    conditions: list[str] = []
    if where:
        conditions.append(f"run_pk IN (SELECT pk FROM runs{where})")  # noqa: S608  # constant clauses, bound values
    if since_us is not None:
        conditions.append("ts_us >= ?")
        params.append(since_us)
    sql = _TRACE_SELECT
    if conditions:
        sql += " WHERE " + " AND ".join(conditions)
    sql += " ORDER BY run_pk, seq"
    with _reader(conn, path, use_adbc=use_adbc) as read:
        events = read(sql, params, _trace_schema())
        if events.num_rows == 0:
            return _empty_trace()
        pk = events.column("run_pk")
        # Read after the events, so every run they name is there (runs are never deleted).
        runs = read(_RUNS_SELECT, [pk[0].as_py(), pk[-1].as_py()], _runs_schema())
    # The columns leave the table here, so each one is freed once converted.
    columns = {name: events.column(name) for name in events.column_names}
    del events, pk
    return _trace_from_arrow(columns, runs)


Read = Callable[[str, list[Any], pa.Schema], pa.Table]


@contextmanager
def _reader(conn: sqlite3.Connection, path: Path, *, use_adbc: bool) -> Iterator[Read]:
    """A function running a query into an Arrow table of a given schema: over one ADBC
    connection when the driver is installed (and wanted), else over ``conn``."""
    try:
        if not use_adbc:
            raise ImportError("ADBC not wanted")
        from adbc_driver_sqlite import dbapi
    except ImportError:
        yield lambda sql, params, schema: _read_sqlite3(conn, sql, params, schema)
        return
    uri = f"{path.resolve().as_uri()}?mode=ro"
    with dbapi.connect(uri) as adbc:

        def read(sql: str, params: list[Any], schema: pa.Schema) -> pa.Table:
            try:
                with adbc.cursor() as cursor:
                    options = {"adbc.sqlite.query.batch_rows": _ONE_BATCH}
                    cursor.adbc_statement.set_options(**options)
                    cursor.execute(sql, params)
                    table = cursor.fetch_arrow_table()
            # the driver raises its DB-API errors, and OSError from the Arrow stream
            except (dbapi.Error, OSError) as exc:
                raise StoreError(f"{path}: cannot read the trace: {exc}") from None
            # A column NULL in every row comes back as int64: give it its real type.
            return table.cast(schema)

        yield read


def _read_sqlite3(
    conn: sqlite3.Connection, sql: str, params: list[Any], schema: pa.Schema
) -> pa.Table:
    """The query's result through the standard library driver (slower, same table)."""
    rows = conn.execute(sql, params).fetchall()
    cols: list[Sequence[Any]] = list(zip(*rows, strict=True)) if rows else [()] * len(schema)
    return pa.table(
        [pa.array(col, type=f.type) for col, f in zip(cols, schema, strict=True)],
        schema=schema,
    )


def _trace_from_arrow(arrow: dict[str, pa.ChunkedArray], runs: pa.Table) -> pd.DataFrame:
    """The trace frame from the event columns (consumed: each is popped when converted,
    so an Arrow buffer the frame does not share is freed early) and the runs they name."""
    pk = arrow.pop("run_pk").to_numpy()
    n = len(pk)
    # Rows come ordered by run: each run is one contiguous block.
    starts = np.concatenate(([0], np.flatnonzero(pk[1:] != pk[:-1]) + 1))
    present = pk[starts]
    run_codes = np.repeat(np.arange(len(present), dtype="int32"), np.diff(np.append(starts, n)))
    del pk
    at = pa.array(np.searchsorted(runs.column("pk").to_numpy(), present))
    run_ids = runs.column("run_id").take(at)
    products = _categorical_strings(runs.column("product").take(at))
    flows = _categorical_strings(runs.column("flow").take(at))
    columns: dict[str, Any] = {
        "run_id": pd.Categorical.from_codes(
            run_codes, categories=pd.Index(run_ids.to_pylist()), validate=False
        ),
        "product": pd.Categorical.from_codes(
            products.codes[run_codes], products.categories, validate=False
        ),
        "flow": pd.Categorical.from_codes(flows.codes[run_codes], flows.categories, validate=False),
    }
    del run_codes
    columns["seq"] = arrow.pop("seq").to_numpy()
    ts = arrow.pop("ts_us").to_numpy().view("M8[us]")
    columns["ts"] = pd.DatetimeIndex(ts).tz_localize("UTC")
    columns["event"] = _coded_arrow(arrow.pop("event"), EVENTS)
    columns["step_id"] = _categorical_strings(arrow.pop("step_id"))
    columns["step_type"] = _coded_arrow(arrow.pop("step_type"), STEP_TYPES)
    columns["name"] = _categorical_strings(arrow.pop("name"))
    columns["status"] = _coded_arrow(arrow.pop("status"), STATUSES)
    columns["duration_ms"] = arrow.pop("duration_ms").to_numpy()
    columns["tokens_in"] = _nullable_int(arrow.pop("tokens_in"))
    columns["tokens_out"] = _nullable_int(arrow.pop("tokens_out"))
    columns["cost_usd"] = arrow.pop("cost_usd").to_numpy()
    columns["attrs"] = pd.Series(_json_objects(arrow.pop("attrs")), dtype=object, copy=False)
    return pd.DataFrame({name: columns[name] for name in TRACE_COLUMNS}, copy=False)


def _coded_arrow(column: pa.ChunkedArray, categories: Sequence[str]) -> pd.Categorical[str]:
    """A vocabulary code column (NULL: missing) as a categorical of the vocabulary."""
    # A code this version does not know (a newer writer) reads as missing, not as an error.
    known = pc.if_else(pc.less(column, len(categories)), column, None)
    codes = pc.fill_null(known, -1).cast(pa.int8()).to_numpy()
    return pd.Categorical.from_codes(codes, categories=pd.Index(list(categories)), validate=False)


def _categorical_strings(column: pa.ChunkedArray | pa.Array) -> pd.Categorical[Any]:
    """A string column as a categorical with sorted categories (NULL: missing)."""
    encoded = pc.dictionary_encode(column)
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks()
    labels = np.asarray(encoded.dictionary.to_pylist(), dtype=object)
    order = np.argsort(labels)
    rank = np.empty(len(order) + 1, dtype="int32")
    rank[order] = np.arange(len(order), dtype="int32")
    rank[-1] = -1  # where NULL indices land below
    codes = rank[pc.fill_null(encoded.indices, -1).to_numpy()]
    return pd.Categorical.from_codes(codes, categories=pd.Index(labels[order]), validate=False)


def _nullable_int(column: pa.ChunkedArray) -> pd.arrays.IntegerArray:
    values = pc.fill_null(column, 0).to_numpy()
    mask = column.is_null().to_numpy(zero_copy_only=False)
    return pd.arrays.IntegerArray(values.astype("int64", copy=False), mask)


def _json_objects(column: pa.ChunkedArray) -> np.ndarray:
    """JSON texts parsed into an object array, NULL as None.

    Trace attributes repeat a lot (``{"by": "ana"}``): each distinct text is parsed once.
    A flat object is then copied for every row that holds it, anything nested is parsed
    again per row, so that no two rows share a mutable value.
    """
    out = np.full(len(column), None, dtype=object)
    valid = column.drop_null()
    if len(valid) == 0:
        return out
    encoded = pc.dictionary_encode(valid).combine_chunks()
    texts = encoded.dictionary.to_pylist()
    loads = json.loads
    values = [loads(text) for text in texts]
    flat = [
        isinstance(v, dict) and not any(isinstance(x, dict | list) for x in v.values())
        for v in values
    ]
    indices = encoded.indices.to_numpy().tolist()
    if all(flat):
        cells = [values[i].copy() for i in indices]
    else:
        cells = [values[i].copy() if flat[i] else loads(texts[i]) for i in indices]
    # fromiter keeps each parsed list as one cell (assigning a list would broadcast it)
    out[column.is_valid().to_numpy(zero_copy_only=False)] = np.fromiter(
        cells, dtype=object, count=len(cells)
    )
    return out


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
