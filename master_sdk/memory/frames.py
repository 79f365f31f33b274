"""DataFrames over any :class:`~master_sdk.memory.store.Store`: runs, trace events, steps,
approvals.

Written once above the store: each store hands over typed, columnar records
(:class:`RunTable`, :class:`TraceTable`, step attempts, approvals) and this module types
them. Column names and dtypes are part of the public contract (``docs/dataframes.md``):
timestamps are tz-aware UTC, durations in milliseconds, token and cost columns numeric,
low-cardinality columns categorical. Redaction on read (``redact``) is applied here, to
each distinct ``attrs`` value once.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from itertools import repeat
from typing import Any, Protocol

import numpy as np
import pandas as pd

from master_sdk.errors import StoreError
from master_sdk.memory.store import Coded, RunTable, StepAttempt, StoredApproval, TraceTable
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
    "parent_run_id",
    "forked_at",
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

Redact = Callable[[Any], Any]


class Readable(Protocol):
    """The reads of :class:`~master_sdk.memory.store.Store` that frames are built from."""

    def run_table(
        self, *, product: str | None = None, flow: str | None = None, status: str | None = None
    ) -> RunTable: ...

    def trace_table(
        self,
        *,
        run_id: str | None = None,
        product: str | None = None,
        flow: str | None = None,
        status: str | None = None,
        since_us: int | None = None,
    ) -> TraceTable: ...

    def step_attempts(self, run_id: str, *, attempts: bool = False) -> list[StepAttempt]: ...

    def approvals(
        self, *, product: str | None = None, flow: str | None = None
    ) -> list[StoredApproval]: ...


# --------------------------------------------------------------------------- from a store


def runs(
    store: Readable,
    *,
    product: str | None = None,
    flow: str | None = None,
    status: str | None = None,
) -> pd.DataFrame:
    """One row per run, newest first."""
    return runs_frame(store.run_table(product=product, flow=flow, status=status))


def traces(
    store: Readable,
    *,
    run_id: str | None = None,
    product: str | None = None,
    flow: str | None = None,
    status: str | None = None,
    since_us: int | None = None,
    redact: Redact | None = None,
) -> pd.DataFrame:
    """Trace events ordered by run, then sequence (``redact``: applied to each distinct
    ``attrs`` value once, as the frame is built)."""
    table = store.trace_table(
        run_id=run_id, product=product, flow=flow, status=status, since_us=since_us
    )
    return trace_frame(table, redact=redact)


def steps(store: Readable, run_id: str, *, attempts: bool = False) -> pd.DataFrame:
    """One row per step of a run in flow order (``attempts=True``: one per attempt)."""
    return steps_frame(run_id, store.step_attempts(run_id, attempts=attempts))


def approvals(
    store: Readable, *, product: str | None = None, flow: str | None = None
) -> pd.DataFrame:
    """The approval audit, oldest first."""
    return approvals_frame(store.approvals(product=product, flow=flow))


# --------------------------------------------------------------------------- typing


def _utc(values: Sequence[Any] | np.ndarray) -> pd.DatetimeIndex:
    return pd.to_datetime(pd.array(values, dtype="Int64"), unit="us", utc=True)


def _column(values: Sequence[str | None], n: int) -> Sequence[str | None]:
    """A column a store may leave empty (one written before it existed): NA for each row."""
    return values if len(values) == n else [None] * n


def runs_frame(table: RunTable) -> pd.DataFrame:
    """The run list from a store's :class:`RunTable`."""
    n = len(table.run_id)
    tokens_in = np.asarray(table.tokens_in, dtype="int64")
    tokens_out = np.asarray(table.tokens_out, dtype="int64")
    return pd.DataFrame(
        {
            "run_id": pd.array(table.run_id, dtype="string"),
            "product": pd.Categorical(list(table.product)),
            "flow": pd.Categorical(list(table.flow)),
            "status": pd.Categorical(list(table.status), categories=list(RUN_STATUSES)),
            "created_at": _utc(table.created_us),
            "updated_at": _utc(table.updated_us),
            "created_by": pd.array(table.created_by, dtype="string"),
            "waiting_step": pd.array(table.waiting_step, dtype="string"),
            "steps": np.asarray(table.steps_used, dtype="int64"),
            "tool_calls": np.asarray(table.tool_calls, dtype="int64"),
            "model_calls": np.asarray(table.model_calls, dtype="int64"),
            # Int64 as on trace events, where tokens may be absent: one dtype per column name
            "tokens_in": pd.array(tokens_in, dtype="Int64"),
            "tokens_out": pd.array(tokens_out, dtype="Int64"),
            "total_tokens": pd.array(tokens_in + tokens_out, dtype="Int64"),
            "cost_usd": np.asarray(table.cost_usd, dtype="float64"),
            "flow_hash": pd.array(table.flow_hash, dtype="string"),
            "product_version": pd.array(table.product_version, dtype="string"),
            "error": pd.array(table.error, dtype="string"),
            "parent_run_id": pd.array(_column(table.parent_run_id, n), dtype="string"),
            "forked_at": pd.array(_column(table.forked_at, n), dtype="string"),
        },
        columns=RUN_COLUMNS,
    )


def trace_frame(table: TraceTable, *, redact: Redact | None = None) -> pd.DataFrame:
    """The trace frame from a store's :class:`TraceTable` (see :func:`traces`)."""
    n = len(table)
    if n == 0:
        return _empty_trace()
    run = table.run
    products = _sorted_categorical(table.products)
    flows = _sorted_categorical(table.flows)
    columns: dict[str, Any] = {
        "run_id": _strings(run, table.run_ids),
        "product": pd.Categorical.from_codes(
            products.codes[run], products.categories, validate=False
        ),
        "flow": pd.Categorical.from_codes(flows.codes[run], flows.categories, validate=False),
        "seq": table.seq,
        "ts": pd.DatetimeIndex(table.ts_us.view("M8[us]")).tz_localize("UTC"),
        "event": _categorical(table.event),
        "step_id": _strings(table.step_id.codes, table.step_id.categories),
        "step_type": _categorical(table.step_type),
        "name": _categorical(table.name),
        "status": _categorical(table.status),
        "duration_ms": _with_waits(table),
        "tokens_in": pd.arrays.IntegerArray(table.tokens_in, table.tokens_in_missing),
        "tokens_out": pd.arrays.IntegerArray(table.tokens_out, table.tokens_out_missing),
        "cost_usd": table.cost_usd,
        "attrs": pd.Series(_attrs(table, redact), dtype=object, copy=False),
    }
    return pd.DataFrame({name: columns[name] for name in TRACE_COLUMNS}, copy=False)


def _strings(codes: np.ndarray, values: Sequence[str]) -> Any:
    """Coded identifiers (``-1``: missing) as pandas ``string``: ids are ``string`` in every
    frame, so merges on ``run_id``/``step_id`` keep their dtype (categoricals with
    different categories merge to ``object``). Taken through Arrow: 0.08 s per million
    values, where ``pd.array(objects, dtype="string")`` takes 0.27 s."""
    import pyarrow as pa

    dictionary = pa.array(list(values), type=pa.large_string())
    picked = dictionary.take(pa.array(codes, mask=codes < 0))
    return pd.array(picked, dtype="string")  # the same storage as every other "string"


# a person's wait: the event that ends it, and the event of the same step that began it
_WAITS = {
    "approval_decided": "approval_requested",
    "input_received": "input_requested",
    "step_completed": "step_started",
}
_HUMAN_STEPS = frozenset({"hitl", "user_input"})


def _with_waits(table: TraceTable) -> np.ndarray:
    """``duration_ms`` with the time a run waited for a person filled in: on
    ``approval_decided`` / ``input_received`` (since the request) and on the
    ``step_completed`` of ``hitl`` and ``user_input`` steps (since the step started)."""
    duration = np.array(table.duration_ms, dtype="float64", copy=True)
    event_names = list(table.event.categories)
    type_names = list(table.step_type.categories)
    human = [i for i, name in enumerate(type_names) if name in _HUMAN_STEPS]
    wanted = {
        name: event_names.index(name) for name in {*_WAITS, *_WAITS.values()} if name in event_names
    }
    if not human:
        return duration
    codes = table.event.codes
    mask = np.isin(table.step_type.codes, human) & np.isin(codes, list(wanted.values()))
    rows = np.flatnonzero(mask)
    if len(rows) == 0:
        return duration
    # Each end event (a decision, an input, a completed human step) takes the latest start
    # of its pair (request, request, step start) before it in the same run and step. Rows
    # come ordered by run and sequence; grouped by (run, step, pair), the latest start so
    # far is a running maximum of start positions, restarted per group by an offset.
    pair_of = np.full(256, -1, dtype="int64")
    is_start = np.zeros(256, dtype=bool)
    for number, (end_name, start_name) in enumerate(_WAITS.items()):
        for name in (end_name, start_name):
            if name in wanted:
                pair_of[wanted[name]] = number
        if start_name in wanted:
            is_start[wanted[start_name]] = True
    event = np.asarray(codes)[rows].astype("int64")
    pair = pair_of[event]
    keep = pair >= 0
    rows, event, pair = rows[keep], event[keep], pair[keep]
    run = np.asarray(table.run)[rows].astype("int64")
    step = np.asarray(table.step_id.codes)[rows].astype("int64")
    order = np.lexsort((rows, pair, step, run))  # by group, then by position
    rows, event, pair, run, step = rows[order], event[order], pair[order], run[order], step[order]
    new_group = np.ones(len(rows), dtype=bool)
    new_group[1:] = (run[1:] != run[:-1]) | (step[1:] != step[:-1]) | (pair[1:] != pair[:-1])
    group = np.cumsum(new_group) - 1
    span = np.int64(len(duration) + 2)
    started = np.where(is_start[event], rows + 1, 0)  # 0: not a start
    latest = np.maximum.accumulate(group * span + started) - group * span - 1
    ends = ~is_start[event] & (latest >= 0)
    at, since = rows[ends], latest[ends]
    ts = np.asarray(table.ts_us, dtype="int64")
    fill = np.isnan(duration[at])
    duration[at[fill]] = (ts[at[fill]] - ts[since[fill]]) / 1000.0
    return duration


def _categorical(coded: Coded) -> pd.Categorical[Any]:
    return pd.Categorical.from_codes(
        coded.codes, categories=pd.Index(list(coded.categories)), validate=False
    )


def _sorted_categorical(values: Sequence[str]) -> pd.Categorical[Any]:
    """Strings as a categorical with sorted categories."""
    codes, uniques = pd.factorize(np.asarray(values, dtype=object), sort=True)
    return pd.Categorical.from_codes(codes, categories=pd.Index(uniques), validate=False)


def _attrs(table: TraceTable, redact: Redact | None) -> np.ndarray:
    """The ``attrs`` cell of every event, each its own object.

    The same block text repeats across runs (``[{"by":"ana"},null]``): each distinct text
    is parsed and redacted once, then its values are copied into every row that holds
    them, so no two rows share a mutable value.
    """
    n = len(table)
    out = np.full(n, None, dtype=object)
    starts = table.attrs_starts
    lengths = np.diff(np.append(starts, n))
    chosen = np.flatnonzero(table.attrs_codes >= 0)
    if len(chosen) == 0:
        return out
    codes = table.attrs_codes[chosen]
    texts = table.attrs_texts
    if len(texts) <= np.iinfo(np.int16).max:
        codes = codes.astype("int16")  # a stable sort of 16-bit integers is a radix sort
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(texts) + 1))
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
    return out


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
            "run_id": pd.array([], dtype="string"),
            "seq": np.array([], dtype="int64"),
            "ts": _utc([]),
            "event": pd.Categorical([], categories=EVENTS),
            "step_id": pd.array([], dtype="string"),
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


def steps_frame(run_id: str, attempts: Sequence[StepAttempt]) -> pd.DataFrame:
    """One row per step attempt given (a store gives them by ``idx``, then ``attempt``)."""
    return steps_of_runs([(run_id, a) for a in attempts])


def steps_across(
    store: Readable,
    *,
    product: str | None = None,
    flow: str | None = None,
    status: str | None = None,
    since_us: int | None = None,
    attempts: bool = False,
) -> pd.DataFrame:
    """The steps of every run kept by the filters, by run (oldest first), then flow order.

    ``status`` filters on the run's status (as in :func:`traces`); ``since_us`` keeps steps
    that started (or, for a step its guard skipped, ended) at or after it.
    """
    table = store.run_table(product=product, flow=flow, status=status)
    rows: list[tuple[str, StepAttempt]] = []
    for run_id in reversed(list(table.run_id)):  # the run table is newest first
        for attempt in store.step_attempts(run_id, attempts=attempts):
            moment = attempt.started_us if attempt.started_us is not None else attempt.ended_us
            if since_us is None or (moment is not None and moment >= since_us):
                rows.append((run_id, attempt))
    return steps_of_runs(rows)


def steps_of_runs(rows: Sequence[tuple[str, StepAttempt]]) -> pd.DataFrame:
    """One row per ``(run id, step attempt)`` given, in that order."""
    attempts = [a for _, a in rows]
    started = _utc([a.started_us for a in attempts])
    ended = _utc([a.ended_us for a in attempts])
    duration = (ended - started) / pd.Timedelta(milliseconds=1)
    return pd.DataFrame(
        {
            "run_id": pd.array([r for r, _ in rows], dtype="string"),
            "idx": np.asarray([a.idx for a in attempts], dtype="int64"),
            "step_id": pd.array([a.step_id for a in attempts], dtype="string"),
            "step_type": pd.Categorical([a.type for a in attempts], categories=list(STEP_TYPES)),
            "status": pd.Categorical([a.status for a in attempts], categories=list(STATUSES)),
            "attempt": np.asarray([a.attempt for a in attempts], dtype="int64"),
            "started_at": started,
            "ended_at": ended,
            "duration_ms": np.asarray(duration, dtype="float64"),
            "output": pd.Series([a.output for a in attempts], dtype=object),
            "error": pd.array([a.error for a in attempts], dtype="string"),
        },
        columns=STEP_COLUMNS,
    )


def approvals_frame(rows: Sequence[StoredApproval]) -> pd.DataFrame:
    """The approval audit from a store's approvals (oldest first)."""
    return pd.DataFrame(
        {
            "run_id": pd.array([r.run_id for r in rows], dtype="string"),
            "product": pd.Categorical([r.product for r in rows]),
            "flow": pd.Categorical([r.flow for r in rows]),
            "step_id": pd.array([r.approval.step_id for r in rows], dtype="string"),
            "decision": pd.Categorical(
                [r.approval.decision for r in rows], categories=["approved", "rejected"]
            ),
            "by": pd.array([r.approval.by for r in rows], dtype="string"),
            "comment": pd.array([r.approval.comment for r in rows], dtype="string"),
            "at": _utc([r.approval.at_us for r in rows]),
        },
        columns=APPROVAL_COLUMNS,
    )
