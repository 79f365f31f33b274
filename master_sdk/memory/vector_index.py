"""Exact nearest-neighbour search over one collection, in memory, with numpy.

The index holds the collection's unit-length vectors as one ``float32`` matrix (rows past
``n`` are spare capacity, so adding is amortised O(1) and nothing is rebuilt), the ids, and
one numpy column per declared metadata field (strings as integer codes), so a ``where``
filter is a few vectorised comparisons; the rows a filter keeps are remembered until the
collection changes.

Search is exact. A plain scan reads the whole ``float32`` matrix once per query (about
10 ms at 100,000 x 384 on a quiet benchmark machine: memory bandwidth, not arithmetic).
With the ``vectors`` extra (``simsimd``), large collections are scanned in two passes that
give the same answer with a quarter of the memory traffic:

1. every row is also kept as ``int8`` codes with its scale and the norm of its rounding
   error ``e``; the query is rounded the same way. For each row the SIMD int8 dot product
   gives an approximate score ``a`` whose distance from the true score is at most
   ``|e_x| (|q| + |e_q|) + |e_q| |x|`` (Cauchy-Schwarz on the two rounding errors), a
   per-row bound ``b``;
2. the ``k``-th largest lower bound ``a - b`` is a score the true ``k``-th best reaches,
   so only rows whose upper bound ``a + b`` reaches it can be among the ``k`` best: those
   few candidates are scored exactly in ``float32`` and ranked.

No row that belongs in the top ``k`` can be dropped, whatever the data; how many
candidates the second pass scores depends on how crowded the scores are near the ``k``-th
(tens on the benchmark's data, all rows in the worst case, which is then a plain scan).

``where`` syntax (every key must hold; keys are declared metadata fields)::

    {"category": "billing"}                         # equals
    {"priority": {"$gte": 2}, "resolved": True}    # $eq $ne $gt $gte $lt $lte
    {"category": {"$in": ["billing", "refunds"]}}  # $in $nin
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from master_sdk.errors import CollectionError

if TYPE_CHECKING:
    import numpy as np

__all__ = ["QUANTISED_FROM", "FilterError", "VectorIndex", "int8_kernel"]

_OPERATORS = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin")
# below this share of rows kept by a filter, gather them and multiply only those
_GATHER_BELOW = 0.25
_GATHER_QUANTISED_BELOW = 0.5
# below this many rows a float32 scan is as fast as two passes
QUANTISED_FROM = 4096
# the bound is widened by 0.1 % plus 1e-4 so float32 rounding of the scores (about
# d * 2**-24 of 1 for unit vectors) can never push a true top-k row out
_BOUND_MARGIN = 1.001
_SLACK = 1e-4
# filters whose rows are remembered per index version
_KEPT_FILTERS = 32
_QUANTISE_BLOCK = 8192


class FilterError(CollectionError):
    """A ``where`` filter names an unknown field or operator, or compares the wrong type."""


class _Column:
    """One metadata field as a numpy column (strings as codes into ``categories``)."""

    __slots__ = ("categories", "codes", "kind", "values")

    def __init__(self, kind: str, capacity: int) -> None:
        import numpy as np

        self.kind = kind
        self.categories: dict[str, int] = {}
        if kind == "string":
            self.values = np.full(capacity, -1, dtype=np.int32)
        elif kind == "boolean":
            self.values = np.full(capacity, -1, dtype=np.int8)
        else:
            self.values = np.full(capacity, np.nan, dtype=np.float64)

    def encode(self, value: Any) -> float:
        if value is None:
            return -1 if self.kind in ("string", "boolean") else math.nan
        if self.kind == "string":
            return self.categories.setdefault(str(value), len(self.categories))
        if self.kind == "boolean":
            return 1 if value else 0
        return float(value)

    def grow(self, capacity: int) -> None:
        import numpy as np

        fill = np.nan if self.values.dtype == np.float64 else -1
        bigger = np.full(capacity, fill, dtype=self.values.dtype)
        bigger[: len(self.values)] = self.values
        self.values = bigger


class VectorIndex:
    """The search matrix of one collection (see the module docstring). Not thread-safe:
    the caller holds the collection's lock.

    Args:
        dimensions: the vectors' size.
        fields: declared metadata fields and their kinds.
        version: the store's version of the collection this index reflects.
        kernel: ``"auto"`` uses the int8 two-pass scan when ``simsimd`` is installed and
            the collection holds at least ``QUANTISED_FROM`` rows; ``"numpy"`` always scans
            the ``float32`` matrix.
    """

    def __init__(
        self,
        dimensions: int,
        fields: Mapping[str, str],
        version: int = 0,
        *,
        kernel: Literal["auto", "numpy"] = "auto",
        quantised_from: int = QUANTISED_FROM,
    ) -> None:
        import numpy as np

        self.dimensions = dimensions
        self.quantised_from = quantised_from
        # rows the last search scored in float32 (all of them without the first pass)
        self.scored = 0
        self.version = version
        self.n = 0
        self.ids: list[str] = []
        self.position: dict[str, int] = {}
        self.matrix = np.zeros((0, dimensions), dtype=np.float32)
        self.fields = dict(fields)
        self.columns = {name: _Column(kind, 0) for name, kind in fields.items()}
        self._dot8 = int8_kernel() if kernel == "auto" else None
        self._quant = _Quantised(dimensions, 0) if self._dot8 is not None else None
        self._kept: dict[str, np.ndarray] = {}

    @property
    def kernel(self) -> str:
        """``"int8"`` when the two-pass scan is available, else ``"numpy"``."""
        return "numpy" if self._quant is None else "int8"

    # ------------------------------------------------------------------ changes

    def _reserve(self, needed: int) -> None:
        import numpy as np

        capacity = len(self.matrix)
        if needed <= capacity:
            return
        capacity = max(needed, capacity * 2, 1024)
        bigger = np.zeros((capacity, self.dimensions), dtype=np.float32)
        bigger[: self.n] = self.matrix[: self.n]
        self.matrix = bigger
        for column in self.columns.values():
            column.grow(capacity)
        if self._quant is not None:
            self._quant.grow(capacity, self.n)

    def upsert(
        self, ids: Sequence[str], vectors: np.ndarray, metadata: Sequence[Mapping[str, Any]]
    ) -> None:
        """Add or replace rows (``vectors`` unit length, one row per id)."""
        import numpy as np

        self._kept.clear()
        self._reserve(self.n + len(ids))
        position = self.position
        rows = np.empty(len(ids), dtype=np.int64)
        for i, key in enumerate(ids):
            row = position.get(key)
            if row is None:
                row = self.n
                self.n += 1
                position[key] = row
                self.ids.append(key)
            rows[i] = row
        vectors = np.asarray(vectors, dtype=np.float32)
        self.matrix[rows] = vectors
        if self._quant is not None:
            self._quant.set(rows, vectors)
        for name, column in self.columns.items():
            encode = column.encode
            column.values[rows] = [encode(meta.get(name)) for meta in metadata]

    def remove(self, ids: Sequence[str]) -> None:
        """Remove rows by id (the last row moves into each hole; unknown ids are ignored)."""
        self._kept.clear()
        quant = self._quant
        for key in ids:
            row = self.position.pop(key, None)
            if row is None:
                continue
            last = self.n - 1
            if row != last:
                moved = self.ids[last]
                self.matrix[row] = self.matrix[last]
                if quant is not None:
                    quant.move(last, row)
                for column in self.columns.values():
                    column.values[row] = column.values[last]
                self.ids[row] = moved
                self.position[moved] = row
            self.ids.pop()
            self.n = last

    # ------------------------------------------------------------------ search

    def search(
        self, query: np.ndarray, k: int, where: Mapping[str, Any] | None = None
    ) -> list[tuple[str, float]]:
        """The ``k`` ids most similar to ``query`` (unit length) with their cosine scores,
        best first (equal scores in row order)."""
        import numpy as np

        n = self.n
        if n == 0 or k <= 0:
            return []
        query = np.ascontiguousarray(query, dtype=np.float32)
        kept: np.ndarray | None = None
        if where:
            kept = self.kept(where)
            if len(kept) == 0:
                return []
            if len(kept) == n:
                kept = None
        count = n if kept is None else len(kept)
        k = min(k, count)
        rows: np.ndarray | None  # the rows scored exactly, ascending; None: all
        if self._quant is not None and count >= self.quantised_from and k < count:
            rows = self._candidates(query, k, kept)
        else:
            rows = kept
        if rows is None:
            scores = _dot(self.matrix[:n], query)
        elif kept is not None and rows is kept and len(kept) >= _GATHER_BELOW * n:
            # most rows pass the filter: scan everything, then drop the others
            scores = _dot(self.matrix[:n], query)
            mask = np.zeros(n, dtype=bool)
            mask[kept] = True
            scores[~mask] = -np.inf
            rows = None
        else:
            scores = _dot(self.matrix[rows], query)
        self.scored = len(scores) if rows is None else len(rows)
        top = _top(scores, k)
        found = top if rows is None else rows[top]
        ids = self.ids
        return [(ids[int(r)], float(scores[int(t)])) for r, t in zip(found, top, strict=True)]

    def _candidates(self, query: np.ndarray, k: int, kept: np.ndarray | None) -> np.ndarray:
        """Rows that may be among the ``k`` best (first pass, see the module docstring),
        ascending; every row of ``kept`` (or all rows) when the query cannot be rounded."""
        import numpy as np

        quant = self._quant
        dot8 = self._dot8
        n = self.n
        assert quant is not None and dot8 is not None  # noqa: S101  # checked by search()
        q8, q_scale, q_err = _round(query)
        if q8 is None:
            return np.arange(n) if kept is None else kept
        gather = kept is not None and len(kept) < _GATHER_QUANTISED_BELOW * n
        codes = quant.codes[kept] if gather and kept is not None else quant.codes[:n]
        approx = np.empty((1, len(codes)), dtype=np.float32)
        dot8(q8[None], codes, metric="dot", out=approx)
        score = approx[0]
        if gather and kept is not None:
            scales, errors, norms = quant.scales[kept], quant.errors[kept], quant.norms[kept]
        else:
            scales, errors, norms = quant.scales[:n], quant.errors[:n], quant.norms[:n]
        score *= scales
        score *= q_scale
        q_norm = float(np.linalg.norm(query))
        bound = errors * ((q_norm + q_err) * _BOUND_MARGIN)
        bound += norms * (q_err * _BOUND_MARGIN)
        bound += _SLACK
        lower = score - bound
        upper = score
        upper += bound
        if kept is not None and not gather:
            outside = np.ones(n, dtype=bool)
            outside[kept] = False
            lower[outside] = -np.inf
            upper[outside] = -np.inf
        kth = np.partition(lower, len(lower) - k)[len(lower) - k]
        chosen = np.flatnonzero(upper >= kth)
        return kept[chosen] if gather and kept is not None else chosen

    def kept(self, where: Mapping[str, Any]) -> np.ndarray:
        """Rows matching a ``where`` filter, ascending; remembered until the next change."""
        import numpy as np

        key = _filter_key(where)
        found = self._kept.get(key) if key is not None else None
        if found is None:
            found = np.flatnonzero(self.mask(where))
            if key is not None:
                if len(self._kept) >= _KEPT_FILTERS:
                    self._kept.pop(next(iter(self._kept)))
                self._kept[key] = found
        return found

    def mask(self, where: Mapping[str, Any]) -> np.ndarray:
        """Rows matching a ``where`` filter, as a boolean array of length ``n``."""
        import numpy as np

        n = self.n
        mask = np.ones(n, dtype=bool)
        for name, condition in where.items():
            column = self.columns.get(name)
            if column is None:
                known = ", ".join(sorted(self.columns)) or "(none declared)"
                raise FilterError(
                    f"where: '{name}' is not a metadata field of this collection; fields: {known}"
                )
            ops = condition if isinstance(condition, Mapping) else {"$eq": condition}
            values = column.values[:n]
            for op, operand in ops.items():
                mask &= _compare(column, values, name, op, operand)
        return mask


class _Quantised:
    """The int8 copy of an index's rows: codes, per-row scale, rounding-error norm and
    vector norm (the first pass of the two-pass scan)."""

    __slots__ = ("codes", "errors", "norms", "scales")

    def __init__(self, dimensions: int, capacity: int) -> None:
        import numpy as np

        self.codes = np.zeros((capacity, dimensions), dtype=np.int8)
        self.scales = np.zeros(capacity, dtype=np.float32)
        self.errors = np.zeros(capacity, dtype=np.float32)
        self.norms = np.zeros(capacity, dtype=np.float32)

    def grow(self, capacity: int, n: int) -> None:
        import numpy as np

        codes = np.zeros((capacity, self.codes.shape[1]), dtype=np.int8)
        codes[:n] = self.codes[:n]
        self.codes = codes
        for name in ("scales", "errors", "norms"):
            bigger = np.zeros(capacity, dtype=np.float32)
            bigger[:n] = getattr(self, name)[:n]
            setattr(self, name, bigger)

    def set(self, rows: np.ndarray, vectors: np.ndarray) -> None:
        # in blocks, so loading a large collection needs no full-size temporaries
        for start in range(0, len(rows), _QUANTISE_BLOCK):
            stop = start + _QUANTISE_BLOCK
            self._set(rows[start:stop], vectors[start:stop])

    def _set(self, rows: np.ndarray, vectors: np.ndarray) -> None:
        import numpy as np

        peak = np.abs(vectors).max(axis=1) if vectors.shape[1] else np.zeros(len(vectors))
        scale = (peak / 127).astype(np.float32)
        divide = np.where(scale > 0, scale, 1).astype(np.float32)
        codes = np.rint(vectors / divide[:, None]).clip(-127, 127).astype(np.int8)
        error = vectors - codes.astype(np.float32) * scale[:, None]
        self.codes[rows] = codes
        self.scales[rows] = scale
        self.errors[rows] = np.linalg.norm(error, axis=1)
        self.norms[rows] = np.linalg.norm(vectors, axis=1)

    def move(self, source: int, target: int) -> None:
        self.codes[target] = self.codes[source]
        for array in (self.scales, self.errors, self.norms):
            array[target] = array[source]


@functools.lru_cache(maxsize=1)
def int8_kernel() -> Any:
    """``simsimd.cdist`` when the ``vectors`` extra is installed, else None."""
    try:
        import simsimd
    except ImportError:
        return None
    return simsimd.cdist


def _round(query: np.ndarray) -> tuple[np.ndarray | None, float, float]:
    """The query as int8 codes, their scale and the norm of the rounding error (codes None
    when the query is zero or not finite: the caller scans exactly)."""
    import numpy as np

    peak = float(np.abs(query).max()) if len(query) else 0.0
    if not math.isfinite(peak) or peak == 0.0:
        return None, 0.0, 0.0
    scale = peak / 127
    codes = np.rint(query / scale).clip(-127, 127).astype(np.int8)
    error = float(np.linalg.norm(query - codes.astype(np.float32) * np.float32(scale)))
    return codes, scale, error


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` largest scores, best first, equal scores by position."""
    import numpy as np

    if k >= len(scores):
        top = np.arange(len(scores))
    else:
        kth = scores[np.argpartition(-scores, k - 1)[k - 1]]
        # argpartition picks any of the rows tied at the k-th score: take the first ones,
        # so a search is deterministic and equal scores come out in row order
        better = np.flatnonzero(scores > kth)
        top = np.concatenate([better, np.flatnonzero(scores == kth)[: k - len(better)]])
    ordered: np.ndarray = top[np.lexsort((top, -scores[top]))]
    return ordered


def _filter_key(where: Mapping[str, Any]) -> str | None:
    try:
        return json.dumps(where, sort_keys=True)
    except (TypeError, ValueError):
        return None


def _dot(matrix: np.ndarray, query: np.ndarray) -> np.ndarray:
    """``matrix @ query`` with numpy's own SIMD loop: on the benchmark machine it is about
    as fast as the BLAS matrix-vector product when quiet and much steadier under load
    (OpenBLAS spreads one product over threads that then wait for busy cores)."""
    import numpy as np

    scores: np.ndarray = np.einsum("ij,j->i", matrix, query)
    return scores


def _compare(column: _Column, values: np.ndarray, name: str, op: str, operand: Any) -> np.ndarray:
    import numpy as np

    if op not in _OPERATORS:
        raise FilterError(
            f"where: unknown operator '{op}' on '{name}'; use {', '.join(_OPERATORS)}"
        )
    if op in ("$in", "$nin"):
        if not isinstance(operand, list | tuple | set | frozenset):
            raise FilterError(f"where: '{name}' {op} needs a list")
        codes = [_operand(column, name, op, item) for item in operand]
        hit = np.isin(values, np.asarray(codes, dtype=values.dtype))
        return hit if op == "$in" else ~hit & _present(column, values)
    code = _operand(column, name, op, operand)
    if op == "$eq":
        same: np.ndarray = values == code
        return same
    if op == "$ne":
        differs: np.ndarray = (values != code) & _present(column, values)
        return differs
    if column.kind in ("string", "boolean"):
        raise FilterError(f"where: '{name}' is a {column.kind}; {op} needs a number field")
    with np.errstate(invalid="ignore"):
        if op == "$gt":
            return values > code
        if op == "$gte":
            return values >= code
        if op == "$lt":
            return values < code
        return values <= code


def _present(column: _Column, values: np.ndarray) -> np.ndarray:
    import numpy as np

    present: np.ndarray = values >= 0 if column.kind in ("string", "boolean") else ~np.isnan(values)
    return present


def _operand(column: _Column, name: str, op: str, value: Any) -> float:
    kind = column.kind
    if kind == "string":
        if not isinstance(value, str):
            raise FilterError(f"where: '{name}' is a string field; {op} got {value!r}")
        # a value never stored matches nothing: a code no row has
        return column.categories.get(value, -2)
    if kind == "boolean":
        if not isinstance(value, bool):
            raise FilterError(f"where: '{name}' is a boolean field; {op} got {value!r}")
        return 1 if value else 0
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FilterError(f"where: '{name}' is a {kind} field; {op} got {value!r}")
    return float(value)
