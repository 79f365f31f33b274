"""Exact nearest-neighbour search over one collection, in memory, with numpy.

The index holds the collection's unit-length vectors as one ``float32`` matrix (rows past
``n`` are spare capacity, so adding is amortised O(1)), the ids, and one numpy column per
declared metadata field (strings as integer codes), so a ``where`` filter is a few
vectorised comparisons. A search is one matrix-vector product and an ``argpartition``;
with a filter that keeps few rows, only those rows are multiplied.

A search reads the whole matrix once, so its time grows with rows x dimensions: about
8-10 ms at 100,000 x 384 on the benchmark machine when it is quiet, with a tail that
follows other processes' use of memory bandwidth — see the README's performance section
and ``benchmarks/vectors.py`` (Chroma's approximate index beside it).

``where`` syntax (every key must hold; keys are declared metadata fields)::

    {"category": "billing"}                         # equals
    {"priority": {"$gte": 2}, "resolved": True}    # $eq $ne $gt $gte $lt $lte
    {"category": {"$in": ["billing", "refunds"]}}  # $in $nin
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from master_sdk.errors import CollectionError

if TYPE_CHECKING:
    import numpy as np

__all__ = ["FilterError", "VectorIndex"]

_OPERATORS = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin")
# below this share of rows kept by a filter, gather them and multiply only those
_GATHER_BELOW = 0.25


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
    the caller holds the collection's lock."""

    def __init__(self, dimensions: int, fields: Mapping[str, str], version: int = 0) -> None:
        import numpy as np

        self.dimensions = dimensions
        self.version = version
        self.n = 0
        self.ids: list[str] = []
        self.position: dict[str, int] = {}
        self.matrix = np.zeros((0, dimensions), dtype=np.float32)
        self.fields = dict(fields)
        self.columns = {name: _Column(kind, 0) for name, kind in fields.items()}

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

    def upsert(
        self, ids: Sequence[str], vectors: np.ndarray, metadata: Sequence[Mapping[str, Any]]
    ) -> None:
        """Add or replace rows (``vectors`` unit length, one row per id)."""
        import numpy as np

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
        self.matrix[rows] = vectors
        for name, column in self.columns.items():
            encode = column.encode
            column.values[rows] = [encode(meta.get(name)) for meta in metadata]

    def remove(self, ids: Sequence[str]) -> None:
        """Remove rows by id (the last row moves into each hole; unknown ids are ignored)."""
        for key in ids:
            row = self.position.pop(key, None)
            if row is None:
                continue
            last = self.n - 1
            if row != last:
                moved = self.ids[last]
                self.matrix[row] = self.matrix[last]
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
        matrix = self.matrix[:n]
        if where:
            mask = self.mask(where)
            kept = np.flatnonzero(mask)
            if len(kept) == 0:
                return []
            k = min(k, len(kept))
            if len(kept) < _GATHER_BELOW * n:
                scores = _dot(matrix[kept], query)
                rows = kept
            else:
                scores = _dot(matrix, query)
                scores[~mask] = -np.inf
                rows = None
        else:
            scores = _dot(matrix, query)
            rows = None
        k = min(k, len(scores))
        everything = k >= len(scores)
        top = np.arange(len(scores)) if everything else np.argpartition(-scores, k - 1)[:k]
        # equal scores come out in row order, so a search is deterministic
        top = top[np.lexsort((top, -scores[top]))]
        found = rows[top] if rows is not None else top
        ids = self.ids
        return [(ids[int(r)], float(scores[int(t)])) for r, t in zip(found, top, strict=True)]

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


def _dot(matrix: np.ndarray, query: np.ndarray) -> np.ndarray:
    """``matrix @ query`` with numpy's own SIMD loop: on the benchmark machine it is about
    twice as fast as the BLAS matrix-vector product numpy would call (14 ms against 30-40
    ms for 100,000 x 384 under load), and it uses one core."""
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
