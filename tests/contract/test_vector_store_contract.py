"""The vector store contract: every run store keeps collections the same way.

A vector store is reached from a run store by :func:`vector_store_for` (the workbench's
own path), so the suite runs on every entry of the run store contract's ``STORES``
(SQLite, in-memory, PostgreSQL on a real server). Every store must: create or reopen a
collection (refusing another model or size), upsert by id atomically, replace an earlier
attempt's entries of a run step, keep ``max_items`` inside the transaction, delete, load a
consistent snapshot with its version, and show one store's writes to another store on
the same database.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from master_sdk.errors import StoreError
from master_sdk.memory.postgres import PostgresStore
from master_sdk.memory.sqlite import SQLiteStore
from master_sdk.memory.sqlite_vectors import SQLiteVectorStore
from master_sdk.memory.vectors import (
    CollectionFull,
    Entry,
    VectorStore,
    step_prefix,
)
from master_sdk.orchestrator.services import vector_store_for
from tests.contract.test_store_contract import STORES
from tests.support import postgres

DIMS = 8
NAME = "demo/notes"


@pytest.fixture(params=sorted(STORES))
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def pair(kind: str, tmp_path: Path) -> Iterator[Callable[[], VectorStore]]:
    """Vector stores over one database: the first call opens it, later calls open it
    again (another connection; for the in-memory store, the same object)."""
    if kind == "postgresql":
        url = postgres.fresh_url()
        make: Callable[[], Any] = lambda: PostgresStore(url)  # noqa: E731  # a one-liner factory
    elif kind == "sqlite":
        make = lambda: SQLiteStore(tmp_path / "store.sqlite3", synchronous="NORMAL")  # noqa: E731
    else:
        made = STORES[kind](tmp_path)
        make = lambda: made  # noqa: E731
    runs: list[Any] = []
    vectors: list[VectorStore] = []

    def new() -> VectorStore:
        if kind == "memory" and vectors:
            return vectors[0]
        run_store = make()
        runs.append(run_store)
        vectors.append(vector_store_for(run_store))
        return vectors[-1]

    yield new
    for run_store in runs:
        run_store.close()


@pytest.fixture
def store(pair: Callable[[], VectorStore]) -> VectorStore:
    return pair()


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


def test_many_ids_are_written_read_and_deleted_whatever_a_statement_holds(
    store: VectorStore,
) -> None:
    """1,200 ids (more than one SQLite statement's list): replaced ones are counted as
    replaced, entries come back in the order asked (a repeated id, repeated), and a
    delete removes them all."""
    opened(store)
    keys = [f"k{i:04d}" for i in range(1200)]
    assert store.upsert(NAME, [entry(k) for k in keys[:700]], max_items=2000).added == 700
    again = store.upsert(NAME, [entry(k, 1) for k in keys], max_items=2000)
    assert (again.added, again.replaced, again.version) == (500, 700, 2)
    asked = [*keys[::-1], "zzz", keys[0]]
    assert [e.id for e in store.entries(NAME, asked)] == [*keys[::-1], keys[0]]
    assert [e.id for e in store.entries(NAME)] == keys
    gone = store.delete(NAME, [*keys[1:], "zzz"])
    assert gone.removed == keys[1:] and store.count(NAME) == 1
    assert store.load(NAME).ids == [keys[0]]


def test_reopening_with_other_fields_follows_the_declaration(store: VectorStore) -> None:
    """Fields only say how metadata is checked: a new declaration replaces them."""
    opened(store)
    store.upsert(NAME, [entry("a")], max_items=10)
    first = store.open_collection(NAME, model="fake:fake", dimensions=DIMS, fields={"n": "int"})
    assert (first.count, first.version) == (1, 1)
    info = store.info(NAME)
    assert info is not None and info.fields == {"n": "int"}
    assert store.collections() == [info]


def test_reembed_replaces_vectors_and_model_unless_the_version_moved(store: VectorStore) -> None:
    """A re-embedding is checked against the version its texts were read at."""
    opened(store)
    store.upsert(NAME, [entry("a", 1), entry("b", 2)], max_items=10)
    vectors = np.stack([unit(7), unit(8)])
    with pytest.raises(StoreError, match="changed while it was being re-embedded"):
        store.reembed(
            NAME, model="fake:new", dimensions=DIMS, ids=["a", "b"], vectors=vectors,
            expect_version=0,
        )  # fmt: skip
    done = store.reembed(
        NAME, model="fake:new", dimensions=DIMS, ids=["b", "a"], vectors=vectors,
        expect_version=1,
    )  # fmt: skip
    assert (done.version, done.replaced) == (2, 2)
    snap = store.load(NAME)
    got = dict(zip(snap.ids, snap.vectors, strict=True))
    assert np.allclose(got["b"], unit(7)) and np.allclose(got["a"], unit(8))
    info = store.info(NAME)
    assert info is not None and (info.model, info.version) == ("fake:new", 2)


def test_hits_read_the_version_and_the_entries_together(store: VectorStore) -> None:
    """A search's one round trip: the version, and the entries asked for in that order."""
    opened(store)
    store.upsert(NAME, [entry(k) for k in "abc"], max_items=10)
    version, found = store.hits(NAME, ["c", "zzz", "a"])
    assert version == 1 and [e.id for e in found] == ["c", "a"]
    assert found[0].text == "text of c" and found[0].metadata == {"tag": "a"}
    assert store.hits(NAME, []) == (1, [])


def test_hits_return_every_entry_of_the_largest_search(store: VectorStore) -> None:
    """A search may ask for up to 1,000 hits: all of them come back, in order."""
    opened(store)
    keys = [f"k{i:04d}" for i in range(1000)]
    store.upsert(NAME, [entry(k) for k in keys], max_items=1000)
    _, found = store.hits(NAME, keys[::-1])
    assert [e.id for e in found] == keys[::-1]


def test_collections_list_every_collection_with_count_and_version(store: VectorStore) -> None:
    """What ``wb.collections()`` shows comes from here."""
    opened(store)
    store.open_collection("demo/other", model="fake:fake", dimensions=4, fields={})
    store.upsert(NAME, [entry("a"), entry("b")], max_items=10)
    listed = {c.name: (c.model, c.dimensions, c.count, c.version) for c in store.collections()}
    assert listed == {NAME: ("fake:fake", DIMS, 2, 1), "demo/other": ("fake:fake", 4, 0, 0)}


def test_another_connection_sees_each_write_and_its_version(
    pair: Callable[[], VectorStore],
) -> None:
    """A write committed through one store is read by another on the same database."""
    first = opened(pair())
    second = pair()
    first.upsert(NAME, [entry("a", 1)], max_items=10)
    assert second.version(NAME) == 1
    assert second.load(NAME).ids == ["a"]
    second.delete(NAME, ["a"])
    assert first.version(NAME) == 2 and first.count(NAME) == 0


def test_concurrent_writers_never_pass_max_items_or_repeat_a_version(
    pair: Callable[[], VectorStore],
) -> None:
    """Writers on separate connections are serialised per collection."""
    stores = [opened(pair()) for _ in range(2)]
    versions: list[int] = []
    refused: list[int] = []
    lock = threading.Lock()

    def write(which: int) -> None:
        for i in range(10):
            try:
                result = stores[which].upsert(NAME, [entry(f"w{which}-{i}", i)], max_items=15)
            except CollectionFull:
                with lock:
                    refused.append(which)
                continue
            with lock:
                versions.append(result.version)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert stores[0].count(NAME) == 15 == len(versions) and len(refused) == 5
    assert sorted(versions) == list(range(1, 16))


def test_sqlite_vectors_live_in_the_run_store_file_as_float32_blobs(tmp_path: Path) -> None:
    """The store's own file holds them, readable by another connection after commit."""
    runs = SQLiteStore(tmp_path / "store.sqlite3", synchronous="FULL")
    vectors = opened(SQLiteVectorStore(runs))
    vectors.upsert(NAME, [entry("a", 4)], max_items=10)
    runs.close()
    with sqlite3.connect(tmp_path / "store.sqlite3") as conn:
        (blob,) = conn.execute("SELECT vector FROM vectors WHERE id = 'a'").fetchone()
    assert np.array_equal(np.frombuffer(blob, dtype="<f4"), unit(4))


def test_postgresql_vectors_are_float32_bytes_in_the_database() -> None:
    """The server holds each vector as little-endian float32 bytes (no extension)."""
    import psycopg

    url = postgres.fresh_url()
    runs = PostgresStore(url)
    try:
        vectors = opened(vector_store_for(runs))
        vectors.upsert(NAME, [entry("a", 4)], max_items=10)
    finally:
        runs.close()
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT vector FROM vectors WHERE id = 'a'").fetchone()
    assert row is not None and np.array_equal(np.frombuffer(row[0], dtype="<f4"), unit(4))
