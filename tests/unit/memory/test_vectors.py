"""The vector store contract (run on the in-memory and the SQLite store) and exact search.

Every store must: create or reopen a collection (refusing another model or size), upsert
by id atomically, replace an earlier attempt's entries of a run step, keep ``max_items``
inside the transaction, delete, and load a consistent snapshot with its version.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from master_sdk.errors import StoreError
from master_sdk.memory.sqlite import SQLiteStore
from master_sdk.memory.sqlite_vectors import SQLiteVectorStore
from master_sdk.memory.vector_index import FilterError, VectorIndex
from master_sdk.memory.vectors import (
    CollectionFull,
    Entry,
    InMemoryVectorStore,
    VectorStore,
    step_prefix,
)

DIMS = 8
NAME = "demo/notes"


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[VectorStore]:
    """Each contract test runs on both implementations."""
    if request.param == "memory":
        yield InMemoryVectorStore()
        return
    runs = SQLiteStore(tmp_path / "store.sqlite3", synchronous="NORMAL")
    yield SQLiteVectorStore(runs)
    runs.close()


def unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(DIMS).astype(np.float32)
    return v / np.linalg.norm(v)


def entry(key: str, seed: int = 0, **kw: object) -> Entry:
    return Entry(
        id=key,
        text=f"text of {key}",
        vector=unit(seed),
        metadata={"tag": "a"},
        added_us=1,
        **kw,  # type: ignore[arg-type]  # run_id / step_id / attempt in tests
    )


def opened(store: VectorStore) -> VectorStore:
    store.open_collection(NAME, model="fake:fake", dimensions=DIMS, fields={"tag": "string"})
    return store


def test_a_new_collection_is_empty_at_version_zero(store: VectorStore) -> None:
    """Opening creates it; nothing is stored yet."""
    info = opened(store).open_collection(
        NAME, model="fake:fake", dimensions=DIMS, fields={"tag": "string"}
    )
    assert (info.count, info.version) == (0, 0)
    assert store.count(NAME) == 0 and store.load(NAME).ids == []


def test_reopening_with_another_model_or_size_is_refused(store: VectorStore) -> None:
    """Stored vectors cannot be searched with another model's queries: a clear error."""
    opened(store)
    with pytest.raises(StoreError, match="cannot be searched with another model"):
        store.open_collection(NAME, model="openai:x", dimensions=DIMS, fields={})
    with pytest.raises(StoreError, match="16 dimensions"):
        store.open_collection(NAME, model="fake:fake", dimensions=16, fields={})


def test_upsert_adds_then_replaces_by_id_and_bumps_the_version(store: VectorStore) -> None:
    """The same id twice is one entry, holding the latest text and vector."""
    opened(store)
    first = store.upsert(NAME, [entry("a", 1), entry("b", 2)], max_items=10)
    assert (first.added, first.replaced, first.version) == (2, 0, 1)
    newer = entry("a", 3)
    newer.text = "replaced"
    second = store.upsert(NAME, [newer], max_items=10)
    assert (second.added, second.replaced, second.version) == (0, 1, 2)
    assert store.count(NAME) == 2 and store.version(NAME) == 2
    snap = store.load(NAME)
    assert snap.version == 2
    got = dict(zip(snap.ids, snap.vectors, strict=True))
    assert np.array_equal(got["a"], unit(3))
    assert [e.text for e in store.entries(NAME, ["a"])] == ["replaced"]


def test_a_retried_step_replaces_its_earlier_attempts_entries(store: VectorStore) -> None:
    """Attempt 2 of a step writing fewer entries leaves exactly its own: none of attempt 1."""
    opened(store)
    prefix = step_prefix("run1", "load")
    first = [entry(f"{prefix}{i}", i, run_id="run1", step_id="load", attempt=1) for i in range(3)]
    store.upsert(NAME, first, max_items=10, origin=("run1", "load", 1))
    other = entry("keep-me", 9)
    store.upsert(NAME, [other], max_items=10)
    retry = [entry(f"{prefix}{i}", i, run_id="run1", step_id="load", attempt=2) for i in range(2)]
    result = store.upsert(NAME, retry, max_items=10, origin=("run1", "load", 2))
    assert result.removed == [f"{prefix}2"]
    assert sorted(store.load(NAME).ids) == sorted([f"{prefix}0", f"{prefix}1", "keep-me"])
    assert {e.attempt for e in store.entries(NAME, [f"{prefix}0", f"{prefix}1"])} == {2}


def test_max_items_is_checked_inside_the_write_and_nothing_is_written(
    store: VectorStore,
) -> None:
    """Going past the limit raises CollectionFull; the collection is as it was."""
    opened(store)
    store.upsert(NAME, [entry("a"), entry("b")], max_items=3)
    with pytest.raises(CollectionFull) as full:
        store.upsert(NAME, [entry("c"), entry("d")], max_items=3)
    assert (full.value.limit, full.value.value) == (3, 4)
    assert store.count(NAME) == 2 and store.version(NAME) == 1
    # replacing existing entries of a full collection is allowed
    store.upsert(NAME, [entry("c")], max_items=3)
    assert store.upsert(NAME, [entry("a", 5)], max_items=3).replaced == 1


def test_delete_removes_known_ids_and_ignores_unknown_ones(store: VectorStore) -> None:
    """Deleting reports what existed; a second delete of the same id removes nothing."""
    opened(store)
    store.upsert(NAME, [entry("a"), entry("b")], max_items=10)
    assert store.delete(NAME, ["a", "zzz"]).removed == ["a"]
    assert store.delete(NAME, ["a"]).removed == []
    assert store.load(NAME).ids == ["b"] and store.count(NAME) == 1


def test_entries_come_back_in_the_order_asked(store: VectorStore) -> None:
    """Texts for search hits are read in hit order; unknown ids are left out."""
    opened(store)
    store.upsert(NAME, [entry(k) for k in "abcd"], max_items=10)
    assert [e.id for e in store.entries(NAME, ["c", "x", "a"])] == ["c", "a"]
    assert [e.id for e in store.entries(NAME)] == list("abcd")


def test_sqlite_vectors_live_in_the_run_store_file_as_float32_blobs(tmp_path: Path) -> None:
    """The store's own file holds them, readable by another connection after commit."""
    runs = SQLiteStore(tmp_path / "store.sqlite3", synchronous="FULL")
    vectors = opened(SQLiteVectorStore(runs))
    vectors.upsert(NAME, [entry("a", 4)], max_items=10)
    runs.close()
    with sqlite3.connect(tmp_path / "store.sqlite3") as conn:
        (blob,) = conn.execute("SELECT vector FROM vectors WHERE id = 'a'").fetchone()
    assert np.array_equal(np.frombuffer(blob, dtype="<f4"), unit(4))


# ---------------------------------------------------------------- the search index


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
