"""Exact search with the int8 first pass: the same hits as a float32 brute force, always.

The first pass only decides which rows are scored exactly; these tests feed it data where
rounding to int8 matters (clusters, duplicates, outlier components) and check the hits
against a brute force over every row, and that the pass really leaves most rows out.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from master_sdk.memory.vector_index import VectorIndex, int8_kernel

DIMS = 48
N = 3000
FIELDS = {"tag": "string", "level": "integer"}

Data = Callable[[np.random.Generator], np.ndarray]


def spread(rng: np.random.Generator) -> np.ndarray:
    return rng.standard_normal((N, DIMS))


def clustered(rng: np.random.Generator) -> np.ndarray:
    centres = rng.standard_normal((12, DIMS))
    return centres[rng.integers(0, 12, N)] + 0.03 * rng.standard_normal((N, DIMS))


def duplicated(rng: np.random.Generator) -> np.ndarray:
    return rng.standard_normal((40, DIMS))[rng.integers(0, 40, N)]


def outliers(rng: np.random.Generator) -> np.ndarray:
    """One large component per row makes the int8 step coarse for the others."""
    data = 0.05 * rng.standard_normal((N, DIMS))
    data[np.arange(N), rng.integers(0, DIMS, N)] = 3.0
    return data


def unit_rows(data: np.ndarray) -> np.ndarray:
    vectors = data.astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def build(vectors: np.ndarray, kernel: str = "auto") -> VectorIndex:
    index = VectorIndex(DIMS, FIELDS, kernel=kernel, quantised_from=1)  # type: ignore[arg-type]  # literal from a parameter
    meta = [{"tag": f"t{i % 7}", "level": i % 5} for i in range(len(vectors))]
    index.upsert([str(i) for i in range(len(vectors))], vectors, meta)
    return index


def brute(vectors: np.ndarray, q: np.ndarray, keep: np.ndarray, k: int) -> list[str]:
    scores = np.einsum("ij,j->i", vectors, q)
    order = [i for i in np.argsort(-scores, kind="stable") if keep[i]]
    return [str(i) for i in order[:k]]


def test_the_int8_kernel_is_installed_for_the_tests() -> None:
    """The dev extra installs simsimd, so the two-pass scan is what these tests exercise."""
    assert int8_kernel() is not None
    assert build(unit_rows(spread(np.random.default_rng(0)))).kernel == "int8"


@pytest.mark.parametrize("data", [spread, clustered, duplicated, outliers])
@pytest.mark.parametrize(
    ("where", "rule"),
    [
        (None, lambda i: True),
        ({"tag": "t3"}, lambda i: i % 7 == 3),
        ({"level": {"$gte": 1}}, lambda i: i % 5 >= 1),
    ],
)
def test_two_passes_return_exactly_the_brute_force_top_k(data: Data, where, rule) -> None:  # type: ignore[no-untyped-def]
    """Ids, order (ties in row order) and scores equal a float32 brute force."""
    rng = np.random.default_rng(11)
    vectors = unit_rows(data(rng))
    index = build(vectors)
    keep = np.array([rule(i) for i in range(N)])
    for _ in range(25):
        q = vectors[rng.integers(0, N)] + 0.05 * rng.standard_normal(DIMS).astype(np.float32)
        q /= np.linalg.norm(q)
        for k in (1, 10, 50):
            got = index.search(q, k, where)
            assert [key for key, _ in got] == brute(vectors, q, keep, k)
            for key, score in got:
                assert score == pytest.approx(float(vectors[int(key)] @ q), abs=1e-5)


def test_the_first_pass_leaves_most_rows_out_on_spread_data() -> None:
    """On spread data only a few rows near the k-th score are scored in float32."""
    rng = np.random.default_rng(5)
    index = build(unit_rows(spread(rng)))
    q = unit_rows(rng.standard_normal((1, DIMS)))[0]
    index.search(q, 10)
    assert 10 <= index.scored < N // 10
    index.search(q, 10, {"tag": "t1"})
    assert 10 <= index.scored < N // 7


def test_both_kernels_agree_after_replacements_and_removals() -> None:
    """Rows moved into holes and replaced vectors keep the int8 copy in step."""
    rng = np.random.default_rng(9)
    vectors = unit_rows(clustered(rng))
    fast, plain = build(vectors), build(vectors, kernel="numpy")
    gone = [str(i) for i in range(0, N, 3)]
    fresh = unit_rows(rng.standard_normal((200, DIMS)))
    changed = [str(i) for i in range(1, 400, 2)]
    for index in (fast, plain):
        index.remove(gone)
        index.upsert(changed, fresh, [{"tag": "t0", "level": 0}] * len(changed))
    assert fast.kernel == "int8" and plain.kernel == "numpy"
    for i in range(30):
        q = fresh[i] if i % 2 else vectors[i * 7]
        for where in (None, {"tag": "t0"}):
            assert fast.search(q, 20, where) == plain.search(q, 20, where)


def test_a_zero_query_scores_every_row_and_keeps_row_order() -> None:
    """A query that cannot be rounded falls back to the float32 scan."""
    index = build(unit_rows(spread(np.random.default_rng(2))))
    got = index.search(np.zeros(DIMS, dtype=np.float32), 3)
    assert got == [("0", 0.0), ("1", 0.0), ("2", 0.0)]
    assert index.scored == N


def test_remembered_filters_are_forgotten_when_rows_change() -> None:
    """A filter's rows are reused until an add or remove, then computed again."""
    rng = np.random.default_rng(4)
    index = build(unit_rows(spread(rng)))
    q = unit_rows(rng.standard_normal((1, DIMS)))[0]
    before = {key for key, _ in index.search(q, N, {"tag": "t2"})}
    index.upsert(["new"], q[None], [{"tag": "t2", "level": 1}])
    after = index.search(q, N, {"tag": "t2"})
    assert after[0][0] == "new"
    assert {key for key, _ in after} == before | {"new"}
