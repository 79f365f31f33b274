"""Trace chunks decoded by numpy into a :class:`~master_sdk.memory.store.TraceTable`, for
every store that keeps the chunk records of ``memory/chunks.py`` (SQLite's ``trace_chunks``,
PostgreSQL's ``trace_blocks``).

A store reads the chunks it was asked for as concatenated parts and per-chunk sizes
(:class:`Chunks`), the runs they belong to (:data:`Runs`) and the name codes, and
:func:`decode` turns them into columns: a million events are a few hundred thousand values,
never a million Python objects.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np

from master_sdk.errors import StoreError
from master_sdk.memory.chunks import NO_NAME, NO_TOKENS
from master_sdk.memory.store import Coded, TraceTable
from master_sdk.tracing.events import EVENTS, STATUSES, STEP_TYPES

__all__ = ["EVENT_DTYPE", "METRICS_DTYPE", "Chunks", "Runs", "decode", "empty_trace_table"]

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

# ``pk`` (sorted), ``run_id``, ``product`` and ``flow`` of the runs the chunks refer to
Runs = tuple[np.ndarray, list[str], list[str], list[str]]


class Chunks:
    """The chunks read, as concatenated parts and per-chunk sizes."""

    __slots__ = ("attrs", "data", "data_sizes", "metric_sizes", "metrics", "pk")

    def __init__(
        self,
        *,
        pk: np.ndarray,
        data: bytes,
        data_sizes: np.ndarray,
        metrics: bytes,
        metric_sizes: np.ndarray,
        attrs: list[str],
    ) -> None:
        self.pk = pk
        self.data = data
        self.data_sizes = data_sizes
        self.metrics = metrics
        self.metric_sizes = metric_sizes
        self.attrs = attrs

    def check(self) -> None:
        n = len(self.pk)
        if not len(self.data_sizes) == len(self.metric_sizes) == len(self.attrs) == n:
            raise StoreError("trace chunk parts do not line up; the store is damaged")
        if (self.data_sizes == 0).any():
            raise StoreError("a trace chunk holds no event; the store is damaged")
        if (self.data_sizes % EVENT_DTYPE.itemsize).any():
            raise StoreError("a trace chunk is not whole events; the store is damaged")
        if (self.metric_sizes % METRICS_DTYPE.itemsize).any():
            raise StoreError("a trace chunk's metrics are not whole records; the store is damaged")

    @property
    def lengths(self) -> np.ndarray:
        """Events per chunk."""
        return self.data_sizes // EVENT_DTYPE.itemsize

    def sort(self) -> None:
        """Put the chunks in (run, first seq) order, if SQLite did not keep it."""
        records = np.frombuffer(self.data, dtype=EVENT_DTYPE)
        starts = _starts(self.lengths)
        first_seq = records["seq"][starts].astype("int64")
        pk = self.pk
        same = pk[1:] == pk[:-1]
        if ((pk[1:] > pk[:-1]) | (same & (first_seq[1:] > first_seq[:-1]))).all():
            return
        order = np.lexsort((first_seq, pk))
        self.pk = pk[order]
        self.data = b"".join(_slices(self.data, self.data_sizes, order))
        self.data_sizes = self.data_sizes[order]
        self.metrics = b"".join(_slices(self.metrics, self.metric_sizes, order))
        self.metric_sizes = self.metric_sizes[order]
        self.attrs = [self.attrs[i] for i in order.tolist()]


def _starts(lengths: np.ndarray) -> np.ndarray:
    starts = np.zeros(len(lengths), dtype="int64")
    np.cumsum(lengths[:-1], out=starts[1:])
    return starts


def _slices(blob: bytes, sizes: np.ndarray, order: np.ndarray) -> list[bytes]:
    """The parts of ``blob`` (consecutive, of ``sizes``) in ``order``."""
    ends = np.cumsum(sizes).tolist()
    begins = [0, *ends[:-1]]
    return [blob[begins[i] : ends[i]] for i in order.tolist()]


def decode(chunks: Chunks, runs: Runs, names: dict[int, str], since_us: int | None) -> TraceTable:
    lengths = chunks.lengths
    starts = _starts(lengths)
    records = np.frombuffer(chunks.data, dtype=EVENT_DTYPE)
    measured = _metrics(
        chunks.metrics, chunks.metric_sizes // METRICS_DTYPE.itemsize, lengths, starts
    )
    texts, codes = _distinct(chunks.attrs)
    run = np.repeat(_run_of_chunk(chunks.pk, runs[0]), lengths)
    attrs_starts = starts
    if since_us is not None:
        keep = records["ts_us"] >= since_us
        if not keep.any():
            return empty_trace_table()
        if not keep.all():
            records = records[keep]
            run = run[keep]
            measured = {k: v[keep] for k, v in measured.items()}
            codes, attrs_starts = _kept_blocks(texts, codes, keep, starts, lengths)
    # only the runs present, in order (``run`` never decreases): codes renumbered densely
    change = np.ones(len(run), dtype=bool)
    change[1:] = run[1:] != run[:-1]
    chosen = run[change].tolist()
    run = np.cumsum(change) - 1
    step_id, name = _named(records["step_id"], records["name"], names)
    return TraceTable(
        run=run.astype("int32"),
        run_ids=[runs[1][i] for i in chosen],
        products=[runs[2][i] for i in chosen],
        flows=[runs[3][i] for i in chosen],
        seq=records["seq"].astype("int64"),
        ts_us=np.ascontiguousarray(records["ts_us"]),
        event=_coded(records["event"], EVENTS),
        step_id=step_id,
        step_type=_coded(records["step_type"], STEP_TYPES),
        name=name,
        status=_coded(records["status"], STATUSES),
        duration_ms=measured["duration_ms"],
        cost_usd=measured["cost_usd"],
        tokens_in=measured["tokens_in"],
        tokens_out=measured["tokens_out"],
        tokens_in_missing=measured["tokens_in_missing"],
        tokens_out_missing=measured["tokens_out_missing"],
        attrs_texts=texts,
        attrs_codes=codes,
        attrs_starts=attrs_starts,
    )


def _metrics(
    blob: bytes, counts: np.ndarray, lengths: np.ndarray, starts: np.ndarray
) -> dict[str, np.ndarray]:
    """``duration_ms`` and ``cost_usd`` (NaN where missing), ``tokens_in`` and
    ``tokens_out`` (0 where missing) and their ``*_missing`` masks, for every event;
    ``counts``: how many metrics records each chunk holds."""
    n = int(lengths.sum())
    out = {
        "duration_ms": np.full(n, np.nan),
        "cost_usd": np.full(n, np.nan),
        "tokens_in": np.zeros(n, dtype="int64"),
        "tokens_out": np.zeros(n, dtype="int64"),
        "tokens_in_missing": np.ones(n, dtype=bool),
        "tokens_out_missing": np.ones(n, dtype=bool),
    }
    measured = np.frombuffer(blob, dtype=METRICS_DTYPE)
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


def _distinct(texts: list[str]) -> tuple[list[str], np.ndarray]:
    """The distinct non-empty texts, and each one's index into them (-1 for '')."""
    import pandas as pd

    codes, uniques = pd.factorize(np.asarray(texts, dtype=object))
    distinct: list[str] = uniques.tolist()
    if "" in distinct:
        empty = distinct.index("")
        codes = np.where(codes == empty, -1, codes - (codes > empty))
        del distinct[empty]
    return distinct, codes.astype("int32")


def _kept_blocks(
    texts: list[str],
    codes: np.ndarray,
    keep: np.ndarray,
    starts: np.ndarray,
    lengths: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The attrs codes and block starts once only the events of ``keep`` remain: a chunk
    without an event kept is dropped, one with some kept gets a text of their values
    (appended to ``texts``)."""
    kept = np.add.reduceat(keep.astype("int64"), starts)
    for c in np.flatnonzero((kept != lengths) & (kept > 0) & (codes >= 0)).tolist():
        values = json.loads(texts[codes[c]])
        if not isinstance(values, list) or len(values) != int(lengths[c]):
            raise StoreError("a trace chunk's attrs do not match its events; the store is damaged")
        mask = keep[int(starts[c]) : int(starts[c] + lengths[c])].tolist()
        texts.append(json.dumps([v for v, k in zip(values, mask, strict=True) if k]))
        codes[c] = len(texts) - 1
    nonempty = kept > 0
    return codes[nonempty], _starts(kept[nonempty])


def _run_of_chunk(chunk_pk: np.ndarray, pks: np.ndarray) -> np.ndarray:
    """For each chunk, the index of its run in ``pks`` (sorted)."""
    found = np.searchsorted(pks, chunk_pk)
    if (found >= len(pks)).any() or (pks[np.minimum(found, len(pks) - 1)] != chunk_pk).any():
        raise StoreError("trace chunks name a run the store does not hold; it is damaged")
    return found


def _coded(codes: np.ndarray, categories: Sequence[str]) -> Coded:
    """A vocabulary code field (255: missing) as codes into the whole vocabulary."""
    # A code this version does not know (a newer writer) reads as missing, not as an error.
    lookup = np.full(256, -1, dtype="int16")
    lookup[: len(categories)] = np.arange(len(categories), dtype="int16")
    return Coded(lookup[codes], tuple(categories))


def _named(step_ids: np.ndarray, names: np.ndarray, text: dict[int, str]) -> tuple[Coded, Coded]:
    """The step id and name code fields (``NO_NAME``: missing) as codes into the names
    present in each, sorted."""
    top = max(text, default=NO_NAME)
    out = []
    for codes in (step_ids, names):
        codes = np.ascontiguousarray(codes)
        if len(codes) and int(codes.max()) > top:
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
        out.append(Coded(lookup[codes], tuple(labels[order].tolist())))
    return out[0], out[1]


def empty_trace_table() -> TraceTable:
    """A table of no events."""
    none = np.empty(0, dtype="int64")
    return TraceTable(
        run=np.empty(0, dtype="int32"),
        run_ids=[],
        products=[],
        flows=[],
        seq=none,
        ts_us=none,
        event=Coded(np.empty(0, dtype="int16"), EVENTS),
        step_id=Coded(np.empty(0, dtype="int32"), ()),
        step_type=Coded(np.empty(0, dtype="int16"), STEP_TYPES),
        name=Coded(np.empty(0, dtype="int32"), ()),
        status=Coded(np.empty(0, dtype="int16"), STATUSES),
        duration_ms=np.empty(0),
        cost_usd=np.empty(0),
        tokens_in=none,
        tokens_out=none,
        tokens_in_missing=np.empty(0, dtype=bool),
        tokens_out_missing=np.empty(0, dtype=bool),
        attrs_texts=[],
        attrs_codes=np.empty(0, dtype="int32"),
        attrs_starts=none,
    )
