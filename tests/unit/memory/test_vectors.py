"""Exact search over one collection's index: hits equal a brute-force ranking.

(The vector *store* contract is ``tests/contract/test_vector_store_contract.py``.)
"""

from __future__ import annotations

import numpy as np
import pytest

from master_sdk.memory.vector_index import FilterError, VectorIndex

DIMS = 8


def index_of(n: int, seed: int = 0) -> tuple[VectorIndex, np.ndarray, list[dict[str, object]]]:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, DIMS)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    meta: list[dict[str, object]] = [
        {"tag": f"t{i % 3}", "level": i % 5, "ok": i % 2 == 0} for i in range(n)
    ]
    meta[7] = {}  # an entry without metadata
    index = VectorIndex(DIMS, {"tag": "string", "level": "integer", "ok": "boolean"})
    index.upsert([str(i) for i in range(n)], vectors, meta)
    return index, vectors, meta


def brute(vectors: np.ndarray, q: np.ndarray, keep: list[bool], k: int) -> list[str]:
    scores = vectors @ q
    order = [i for i in np.argsort(-scores, kind="stable") if keep[i]]
    return [str(i) for i in order[:k]]


@pytest.mark.parametrize(
    ("where", "rule"),
    [
        (None, lambda m: True),
        ({"tag": "t1"}, lambda m: m.get("tag") == "t1"),
        ({"level": {"$gte": 3}}, lambda m: m.get("level", -1) >= 3),
        (
            {"tag": {"$in": ["t0", "t2"]}, "ok": True},
            lambda m: m.get("tag") in ("t0", "t2") and m.get("ok") is True,
        ),
        ({"tag": {"$ne": "t0"}}, lambda m: "tag" in m and m["tag"] != "t0"),
        ({"level": {"$lt": 1}}, lambda m: m.get("level", 99) < 1),
        ({"tag": {"$nin": ["t0"]}}, lambda m: "tag" in m and m["tag"] != "t0"),
        ({"tag": "never-stored"}, lambda m: False),
    ],
)
def test_search_returns_exactly_the_brute_force_top_k(where, rule) -> None:  # type: ignore[no-untyped-def]
    """Hits equal a brute-force ranking over the rows the filter keeps, scores included."""
    index, vectors, meta = index_of(500)
    keep = [bool(rule(m)) for m in meta]
    for seed in range(5):
        q = np.random.default_rng(100 + seed).standard_normal(DIMS).astype(np.float32)
        q /= np.linalg.norm(q)
        got = index.search(q, 10, where)
        assert [key for key, _ in got] == brute(vectors, q, keep, 10)
        for key, score in got:
            assert score == pytest.approx(float(vectors[int(key)] @ q), abs=1e-5)


def test_removing_rows_keeps_search_exact() -> None:
    """Holes are filled by the last row; removed ids never come back."""
    index, vectors, _ = index_of(50)
    index.remove([str(i) for i in range(0, 50, 2)] + ["unknown"])
    q = vectors[3]
    got = index.search(q, 50)
    assert sorted(key for key, _ in got) == sorted(str(i) for i in range(1, 50, 2))
    assert got[0] == ("3", pytest.approx(1.0, abs=1e-5))


def test_a_filter_on_an_unknown_field_or_operator_names_it() -> None:
    """Mistyped filters fail with the field, the operator and what is known."""
    index, _, _ = index_of(10)
    q = np.ones(DIMS, dtype=np.float32) / np.sqrt(DIMS)
    with pytest.raises(FilterError, match=r"'color' is not a metadata field.*level, ok, tag"):
        index.search(q, 3, {"color": "red"})
    with pytest.raises(FilterError, match="unknown operator '\\$like'"):
        index.search(q, 3, {"tag": {"$like": "t"}})
    with pytest.raises(FilterError, match="'level' is a integer field"):
        index.search(q, 3, {"level": "high"})
    with pytest.raises(FilterError, match="needs a number field"):
        index.search(q, 3, {"tag": {"$gt": "t1"}})
