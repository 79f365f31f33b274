"""DataFrames over the store: runs, trace events, steps, approvals.

Column names and dtypes are part of the public contract (documented in the README):
timestamps are tz-aware UTC, durations in milliseconds, token and cost columns numeric,
low-cardinality columns categorical.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from itertools import repeat
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from master_sdk.errors import StoreError
from master_sdk.memory.chunks import NO_NAME, NO_TOKENS
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


_CHUNKS_SELECT = "SELECT run_pk, data, metrics, attrs FROM trace_chunks"
_NAMES_SELECT = "SELECT code, text FROM trace_names"
_RUNS_SELECT = "SELECT pk, run_id, product, flow FROM runs WHERE pk BETWEEN ? AND ? ORDER BY pk"
# ADBC's SQLite driver infers each column's Arrow type from the first batch of rows; one
# batch for the whole result means a column that starts with NULLs is still typed right,
# and each BLOB column arrives as one Arrow buffer that numpy views without a copy.
_ONE_BATCH = str(2**30)

# The numpy twins of chunks.EVENT and chunks.METRICS (packed, little-endian, same fields).
EVENT_DTYPE = np.dtype(
    [
        ("ts_us", "<i8"),
        ("seq", "<i4"),
        ("step_id", "<u4"),
        ("name", "<u4"),
        ("event", "u1"),
        ("step_type", "u1"),
        ("status", "u1"),
    ]
)
METRICS_DTYPE = np.dtype(
    [
        ("index", "<u4"),
        ("duration_ms", "<f8"),
        ("cost_usd", "<f8"),
        ("tokens_in", "<i8"),
        ("tokens_out", "<i8"),
    ]
)

Redact = Callable[[Any], Any]


def _chunks_schema() -> pa.Schema:
    return pa.schema(
        [
            ("run_pk", pa.int64()),
            ("data", pa.binary()),
            ("metrics", pa.binary()),
            ("attrs", pa.string()),
        ]
    )


def _names_schema() -> pa.Schema:
    return pa.schema([("code", pa.int64()), ("text", pa.string())])


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
    redact: Redact | None = None,
) -> pd.DataFrame:
    """Trace events ordered by run, then sequence.

    The chunks of the runs asked for are read into Arrow (through the ADBC SQLite driver
    when it is installed, else through ``sqlite3``), their records viewed as one numpy
    array and typed column by column; only ``attrs`` holds a Python object per cell.

    Args:
        redact: applied to the attribute values of each distinct chunk ``attrs`` text once,
            before they are copied into the rows that hold them (the store's redaction:
            data written before a secret was known leaves redacted too).
    """
    where, params = _run_filter(product, flow, status)
    if run_id is not None:
        where = f"{where}{' AND' if where else ' WHERE'} run_id = ?"
        params.append(run_id)
    sql = _CHUNKS_SELECT
    if where:
        sql += f" WHERE run_pk IN (SELECT pk FROM runs{where})"  # noqa: S608  # constant clauses, bound values
    sql += " ORDER BY run_pk, first_seq"
    with _reader(conn, path, use_adbc=use_adbc) as read:
        chunks = read(sql, params, _chunks_schema())
        if chunks.num_rows == 0:
            return _empty_trace()
        pk = chunks.column("run_pk")
        # Read after the chunks, so every run and name they refer to is there (neither is
        # ever deleted from a store).
        runs = read(_RUNS_SELECT, [pk[0].as_py(), pk[-1].as_py()], _runs_schema())
        names = read(_NAMES_SELECT, [], _names_schema())
    return _trace_from_chunks(chunks, runs, names, since_us=since_us, redact=redact)


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
            return _typed(table, schema)

        yield read


def _typed(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """An ADBC result with the types of ``schema``: the driver types a column NULL in every
    row (or a result without rows) as int64, which no cast turns into binary."""
    columns = [
        pa.nulls(len(column), field.type)
        if column.null_count == len(column) and column.type != field.type
        else column
        for column, field in zip(table.columns, schema, strict=True)
    ]
    return pa.table(columns, names=schema.names).cast(schema)


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


def _trace_from_chunks(
    chunks: pa.Table,
    runs: pa.Table,
    names: pa.Table,
    *,
    since_us: int | None,
    redact: Redact | None,
) -> pd.DataFrame:
    """The trace frame from the chunks read (ordered by run, then ``first_seq``), the runs
    and the names they refer to."""
    records, lengths = _records(chunks.column("data"), EVENT_DTYPE)
    if (lengths == 0).any():
        raise StoreError("a trace chunk holds no event; the store is damaged")
    starts = np.zeros(len(lengths), dtype="int64")
    np.cumsum(lengths[:-1], out=starts[1:])
    pk = np.repeat(chunks.column("run_pk").to_numpy(), lengths)
    keep: np.ndarray | None = None
    if since_us is not None:
        keep = records["ts_us"] >= since_us
        if not keep.any():
            return _empty_trace()
        if keep.all():
            keep = None
    measured = _metrics(chunks.column("metrics"), lengths, starts)
    attrs = _attrs(chunks.column("attrs"), lengths, starts, keep, redact)
    del chunks
    if keep is not None:
        records = records[keep]
        pk = pk[keep]
        measured = {name: values[keep] for name, values in measured.items()}
    columns = _run_columns(pk, runs)
    del pk
    columns["seq"] = records["seq"].astype("int64")
    ts = np.ascontiguousarray(records["ts_us"]).view("M8[us]")
    columns["ts"] = pd.DatetimeIndex(ts).tz_localize("UTC")
    columns["event"] = _coded(records["event"], EVENTS)
    text = dict(
        zip(names.column("code").to_pylist(), names.column("text").to_pylist(), strict=True)
    )
    columns["step_id"] = _named(records["step_id"], text)
    columns["step_type"] = _coded(records["step_type"], STEP_TYPES)
    columns["name"] = _named(records["name"], text)
    columns["status"] = _coded(records["status"], STATUSES)
    del records
    columns["duration_ms"] = measured["duration_ms"]
    for name in ("tokens_in", "tokens_out"):
        columns[name] = pd.arrays.IntegerArray(measured[name], measured[f"{name}_missing"])
    columns["cost_usd"] = measured["cost_usd"]
    columns["attrs"] = pd.Series(attrs, dtype=object, copy=False)
    return pd.DataFrame({name: columns[name] for name in TRACE_COLUMNS}, copy=False)


def _records(column: pa.ChunkedArray, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """The records of every value of a BLOB column as one structured array (a view of the
    Arrow buffer when the result came as one batch), and how many each value holds (0 for
    NULL)."""
    parts: list[np.ndarray] = []
    counts: list[np.ndarray] = []
    for array in column.chunks:
        if len(array) == 0:
            continue
        if array.null_count:
            # a NULL may still own bytes in the values buffer (ADBC gives it one): drop them
            array = pc.fill_null(array, b"")
        width = "<i8" if pa.types.is_large_binary(array.type) else "<i4"
        _, offsets_buffer, values = array.buffers()
        offsets = np.frombuffer(offsets_buffer, dtype=width)[
            array.offset : array.offset + len(array) + 1
        ]
        sizes = np.diff(offsets)
        if (sizes % dtype.itemsize).any():
            raise StoreError("a trace chunk is not whole events; the store is damaged")
        total = int(offsets[-1] - offsets[0])
        if total:
            parts.append(
                np.frombuffer(
                    values, dtype=dtype, count=total // dtype.itemsize, offset=int(offsets[0])
                )
            )
        counts.append(sizes // dtype.itemsize)
    lengths = np.concatenate(counts).astype("int64", copy=False) if counts else np.empty(0, "int64")
    if len(parts) == 1:
        return parts[0], lengths
    return (np.concatenate(parts) if parts else np.empty(0, dtype=dtype)), lengths


def _metrics(
    column: pa.ChunkedArray, lengths: np.ndarray, starts: np.ndarray
) -> dict[str, np.ndarray]:
    """``duration_ms`` and ``cost_usd`` (NaN where missing), ``tokens_in`` and
    ``tokens_out`` (0 where missing) and their ``*_missing`` masks, for every event."""
    n = int(lengths.sum())
    out = {
        "duration_ms": np.full(n, np.nan),
        "cost_usd": np.full(n, np.nan),
        "tokens_in": np.zeros(n, dtype="int64"),
        "tokens_out": np.zeros(n, dtype="int64"),
        "tokens_in_missing": np.ones(n, dtype=bool),
        "tokens_out_missing": np.ones(n, dtype=bool),
    }
    measured, counts = _records(column, METRICS_DTYPE)
    if len(measured) == 0:
        return out
    index = measured["index"].astype("int64")
    if (index >= np.repeat(lengths, counts)).any():
        raise StoreError("a trace chunk's metrics name no event of it; the store is damaged")
    at = np.repeat(starts, counts) + index
    for name in ("duration_ms", "cost_usd"):
        out[name][at] = measured[name]
    for name in ("tokens_in", "tokens_out"):
        tokens = measured[name]
        missing = tokens == NO_TOKENS
        out[name][at] = np.where(missing, 0, tokens)
        out[f"{name}_missing"][at] = missing
    return out


def _run_columns(pk: np.ndarray, runs: pa.Table) -> dict[str, Any]:
    """``run_id``, ``product`` and ``flow`` of events ordered by run (``pk`` per event)."""
    n = len(pk)
    # Rows come ordered by run: each run is one contiguous block.
    starts = np.concatenate(([0], np.flatnonzero(pk[1:] != pk[:-1]) + 1))
    present = pk[starts]
    run_codes = np.repeat(np.arange(len(present), dtype="int32"), np.diff(np.append(starts, n)))
    pks = runs.column("pk").to_numpy()
    found = np.searchsorted(pks, present)
    if (found >= len(pks)).any() or (pks[np.minimum(found, len(pks) - 1)] != present).any():
        raise StoreError("trace chunks name a run the store does not hold; it is damaged")
    at = pa.array(found)
    run_ids = runs.column("run_id").take(at)
    products = _categorical_strings(runs.column("product").take(at))
    flows = _categorical_strings(runs.column("flow").take(at))
    return {
        "run_id": pd.Categorical.from_codes(
            run_codes, categories=pd.Index(run_ids.to_pylist()), validate=False
        ),
        "product": pd.Categorical.from_codes(
            products.codes[run_codes], products.categories, validate=False
        ),
        "flow": pd.Categorical.from_codes(flows.codes[run_codes], flows.categories, validate=False),
    }


def _coded(codes: np.ndarray, categories: Sequence[str]) -> pd.Categorical[str]:
    """A vocabulary code field (``NO_CODE``: missing) as a categorical of the vocabulary."""
    # A code this version does not know (a newer writer) reads as missing, not as an error.
    lookup = np.full(256, -1, dtype="int16")
    lookup[: len(categories)] = np.arange(len(categories), dtype="int16")
    return pd.Categorical.from_codes(
        lookup[codes], categories=pd.Index(list(categories)), validate=False
    )


def _named(codes: np.ndarray, text: dict[int, str]) -> pd.Categorical[Any]:
    """A name code field (``NO_NAME``: missing) as a categorical of the names present,
    sorted."""
    codes = np.ascontiguousarray(codes)
    if len(codes) and int(codes.max()) > max(text, default=NO_NAME):
        raise StoreError(
            f"trace name code {int(codes.max())} is not in trace_names; the store is damaged"
        )
    present = np.flatnonzero(np.bincount(codes))
    present = present[present != NO_NAME]
    try:
        labels = np.asarray([text[int(c)] for c in present], dtype=object)
    except KeyError as exc:
        raise StoreError(
            f"trace name code {exc} is not in trace_names; the store is damaged"
        ) from None
    order = np.argsort(labels)
    lookup = np.full(int(present[-1]) + 1 if len(present) else 1, -1, dtype="int32")
    lookup[present[order]] = np.arange(len(present), dtype="int32")
    return pd.Categorical.from_codes(
        lookup[codes], categories=pd.Index(labels[order]), validate=False
    )


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


def _attrs(
    column: pa.ChunkedArray,
    lengths: np.ndarray,
    starts: np.ndarray,
    keep: np.ndarray | None,
    redact: Redact | None,
) -> np.ndarray:
    """The ``attrs`` cell of every event (``keep``: only those), each its own object.

    A chunk's attributes are one JSON array, and the same array text repeats across runs
    (``[{"by":"ana"},null]``): each distinct text is parsed and redacted once, then its
    values are copied into every row that holds them, so no two rows share a mutable value.
    """
    out = np.full(int(lengths.sum()), None, dtype=object)
    encoded = pc.dictionary_encode(column).combine_chunks()
    texts = encoded.dictionary.to_pylist()
    indices = pc.fill_null(encoded.indices, -1).to_numpy()
    if keep is not None:  # chunks without an event kept are not looked at
        indices = np.where(np.logical_or.reduceat(keep, starts), indices, -1)
    chosen = np.flatnonzero(indices >= 0)
    if len(chosen) == 0:
        return out if keep is None else out[keep]
    indices = indices[chosen]
    if len(texts) <= np.iinfo(np.int16).max:
        indices = indices.astype("int16")  # a stable sort of 16-bit integers is a radix sort
    order = np.argsort(indices, kind="stable")
    bounds = np.searchsorted(indices[order], np.arange(len(texts) + 1))
    positions: list[np.ndarray] = []
    cells: list[Any] = []
    for d, text in enumerate(texts):
        group = chosen[order[bounds[d] : bounds[d + 1]]]
        if len(group) == 0:
            continue
        values = json.loads(text)
        if not isinstance(values, list) or (lengths[group] != len(values)).any():
            raise StoreError("a trace chunk's attrs do not match its events; the store is damaged")
        first = starts[group]
        for j, value in enumerate(values):
            if value is None:
                continue
            positions.append(first + j)
            cells.extend(_copies(value if redact is None else redact(value), len(group)))
    if positions:
        out[np.concatenate(positions)] = np.fromiter(cells, dtype=object, count=len(cells))
    return out if keep is None else out[keep]


def _copies(value: Any, count: int) -> Iterable[Any]:
    """``count`` copies of a JSON value that share nothing mutable."""
    if isinstance(value, dict):
        if not any(isinstance(x, dict | list) for x in value.values()):
            return map(dict.copy, repeat(value, count))
    elif not isinstance(value, list):
        return repeat(value, count)  # a string or number: immutable
    text = json.dumps(value)
    return (json.loads(text) for _ in range(count))


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
