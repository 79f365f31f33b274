"""Vector memory persistence: the :class:`VectorStore` seam, its records, an in-memory store.

A collection is named ``"<product>/<collection>"`` and holds entries: an id, the stored
(redacted) text, a unit-length ``float32`` vector, metadata of declared types, and where the
entry came from (run, step, attempt). Every write is one transaction that bumps the
collection's ``version``, so a reader can tell in one cheap query whether what it holds in
memory is current (:mod:`master_sdk.memory.vector_index` keeps the search matrix).

Rules every implementation keeps:

* ``upsert`` is atomic and idempotent by id: an entry whose id exists replaces it. With
  ``origin`` (a run step's ``run_id``, ``step_id`` and ``attempt``), entries with ids under
  the step's prefix that an *earlier* attempt wrote are removed in the same transaction:
  after a retry, a step's entries are those of its last attempt, never both.
* ``max_items`` is checked inside the transaction: nothing is written past the limit.
* Every error that leaves a store is a :class:`master_sdk.errors.MasterError`.

Implementations: :class:`InMemoryVectorStore` here (tests, throwaway notebooks) and
:class:`master_sdk.memory.sqlite_vectors.SQLiteVectorStore`, which keeps collections in the
run store's own SQLite file through the store's own connection.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from master_sdk.errors import MasterError, NotFound, StoreError

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "CollectionFull",
    "CollectionInfo",
    "Entry",
    "InMemoryVectorStore",
    "Snapshot",
    "StoredEntry",
    "VectorStore",
    "WriteResult",
    "step_prefix",
]


class CollectionFull(MasterError):
    """Adding would take a collection past its ``max_items``; nothing was written."""

    def __init__(self, name: str, *, limit: int, value: int) -> None:
        self.limit = limit
        self.value = value
        super().__init__(
            f"collection '{name}' would hold {value} entries, above its max_items {limit}; "
            "delete entries or raise max_items in the product's config/product.yaml"
        )


def step_prefix(run_id: str, step_id: str) -> str:
    """The id prefix of entries a run step adds without ids: ``run_id:step_id:``."""
    return f"{run_id}:{step_id}:"


@dataclass(frozen=True, slots=True)
class CollectionInfo:
    """A collection as the store knows it."""

    name: str
    model: str
    dimensions: int
    fields: dict[str, str]
    count: int
    version: int


@dataclass(slots=True)
class Entry:
    """One entry to write. ``vector`` is unit length, ``float32``, of the collection's size."""

    id: str
    text: str
    vector: np.ndarray
    metadata: dict[str, Any]
    added_us: int
    run_id: str | None = None
    step_id: str | None = None
    attempt: int | None = None


@dataclass(frozen=True, slots=True)
class StoredEntry:
    """An entry as read back, without its vector."""

    id: str
    text: str
    metadata: dict[str, Any]
    added_us: int
    run_id: str | None
    step_id: str | None
    attempt: int | None


@dataclass(slots=True)
class Snapshot:
    """A whole collection for the search index: ``vectors[i]`` belongs to ``ids[i]``."""

    version: int
    ids: list[str]
    vectors: np.ndarray
    metadata: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What one write did. ``version`` is the collection's version after it; ``removed``
    lists ids that disappeared (deleted, or an earlier attempt's entries)."""

    version: int
    added: int
    replaced: int
    removed: list[str] = field(default_factory=list)


class VectorStore(Protocol):
    """Durable storage of vector collections (see the module docstring)."""

    def open_collection(
        self, name: str, *, model: str, dimensions: int, fields: Mapping[str, str]
    ) -> CollectionInfo:
        """Create the collection if it does not exist, or check that the stored one has
        the same model and dimensions; returns what is stored. Raises StoreError when a
        stored collection differs (its vectors could not be searched with the new model)."""
        ...

    def info(self, name: str) -> CollectionInfo | None:
        """What the store holds about a collection (None when it does not exist)."""
        ...

    def version(self, name: str) -> int:
        """The collection's version (0 when it does not exist yet)."""
        ...

    def reembed(
        self,
        name: str,
        *,
        model: str,
        dimensions: int,
        ids: Sequence[str],
        vectors: np.ndarray,
        expect_version: int,
    ) -> WriteResult:
        """Replace the vectors of ``ids`` and the collection's model and size in one
        transaction. Raises StoreError when the collection's version is no longer
        ``expect_version`` (an entry was written while the texts were being embedded)."""
        ...

    def upsert(
        self,
        name: str,
        entries: Sequence[Entry],
        *,
        max_items: int,
        origin: tuple[str, str, int] | None = None,
    ) -> WriteResult:
        """Write entries atomically (see the module docstring); raises CollectionFull."""
        ...

    def delete(self, name: str, ids: Sequence[str]) -> WriteResult:
        """Remove entries by id (unknown ids are ignored)."""
        ...

    def load(self, name: str) -> Snapshot:
        """Every entry's id, vector and metadata, read from one consistent snapshot."""
        ...

    def entries(self, name: str, ids: Sequence[str] | None = None) -> list[StoredEntry]:
        """Stored entries (all, oldest first, or those of ``ids`` that exist, in that order)."""
        ...

    def hits(self, name: str, ids: Sequence[str]) -> tuple[int, list[StoredEntry]]:
        """The collection's version and the entries of ``ids`` that exist (in that order),
        read from one consistent snapshot: a search checks its index and fetches its hits'
        texts in one round trip."""
        ...

    def count(self, name: str) -> int:
        """How many entries the collection holds."""
        ...

    def collections(self) -> list[CollectionInfo]:
        """Every stored collection, by name."""
        ...


@dataclass(slots=True)
class _Collection:
    info: CollectionInfo
    rows: dict[str, Entry] = field(default_factory=dict)
    version: int = 0


class InMemoryVectorStore:
    """A :class:`VectorStore` in process memory (tests; nothing survives the process)."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._collections: dict[str, _Collection] = {}

    def _get(self, name: str) -> _Collection:
        found = self._collections.get(name)
        if found is None:
            raise NotFound(f"no vector collection '{name}'")
        return found

    def open_collection(
        self, name: str, *, model: str, dimensions: int, fields: Mapping[str, str]
    ) -> CollectionInfo:
        """See :meth:`VectorStore.open_collection`."""
        with self._lock:
            found = self._collections.get(name)
            if found is None:
                info = CollectionInfo(name, model, dimensions, dict(fields), 0, 0)
                self._collections[name] = _Collection(info)
                return info
            check_same(found.info, model=model, dimensions=dimensions, where="memory")
            stored = self._info(found)
            # fields are only how metadata is checked and filtered: follow the declaration
            found.info = CollectionInfo(name, model, dimensions, dict(fields), 0, 0)
            return stored

    @staticmethod
    def _info(coll: _Collection) -> CollectionInfo:
        info = coll.info
        return CollectionInfo(
            info.name, info.model, info.dimensions, info.fields, len(coll.rows), coll.version
        )

    def info(self, name: str) -> CollectionInfo | None:
        """See :meth:`VectorStore.info`."""
        with self._lock:
            found = self._collections.get(name)
            return None if found is None else self._info(found)

    def reembed(
        self,
        name: str,
        *,
        model: str,
        dimensions: int,
        ids: Sequence[str],
        vectors: np.ndarray,
        expect_version: int,
    ) -> WriteResult:
        """See :meth:`VectorStore.reembed`."""
        with self._lock:
            coll = self._get(name)
            check_unchanged(name, coll.version, expect_version, where="memory")
            for key, vector in zip(ids, vectors, strict=True):
                row = coll.rows.get(key)
                if row is not None:
                    row.vector = vector
            info = coll.info
            coll.info = CollectionInfo(
                info.name, model, dimensions, info.fields, info.count, info.version
            )
            coll.version += 1
            return WriteResult(coll.version, 0, len(ids))

    def version(self, name: str) -> int:
        """See :meth:`VectorStore.version`."""
        with self._lock:
            found = self._collections.get(name)
            return 0 if found is None else found.version

    def upsert(
        self,
        name: str,
        entries: Sequence[Entry],
        *,
        max_items: int,
        origin: tuple[str, str, int] | None = None,
    ) -> WriteResult:
        """See :meth:`VectorStore.upsert`."""
        with self._lock:
            coll = self._get(name)
            rows = coll.rows
            stale: list[str] = []
            if origin is not None:
                prefix = step_prefix(origin[0], origin[1])
                stale = [
                    key
                    for key, row in rows.items()
                    if key.startswith(prefix) and (row.attempt or 0) < origin[2]
                ]
            incoming = {e.id for e in entries}
            gone = [key for key in stale if key not in incoming]
            existing = sum(1 for key in incoming if key in rows)
            total = len(rows) - len(gone) + len(incoming) - existing
            if total > max_items and total > len(rows):
                raise CollectionFull(name, limit=max_items, value=total)
            for key in gone:
                del rows[key]
            for entry in entries:
                rows[entry.id] = entry
            coll.version += 1
            return WriteResult(coll.version, len(incoming) - existing, existing, gone)

    def delete(self, name: str, ids: Sequence[str]) -> WriteResult:
        """See :meth:`VectorStore.delete`."""
        with self._lock:
            coll = self._get(name)
            removed = [key for key in dict.fromkeys(ids) if coll.rows.pop(key, None) is not None]
            coll.version += 1
            return WriteResult(coll.version, 0, 0, removed)

    def load(self, name: str) -> Snapshot:
        """See :meth:`VectorStore.load`."""
        import numpy as np

        with self._lock:
            coll = self._get(name)
            rows = list(coll.rows.values())
            dims = coll.info.dimensions
            matrix = (
                np.vstack([r.vector for r in rows]).astype(np.float32)
                if rows
                else np.zeros((0, dims), dtype=np.float32)
            )
            return Snapshot(
                coll.version, [r.id for r in rows], matrix, [dict(r.metadata) for r in rows]
            )

    def entries(self, name: str, ids: Sequence[str] | None = None) -> list[StoredEntry]:
        """See :meth:`VectorStore.entries`."""
        with self._lock:
            rows = self._get(name).rows
            chosen = list(rows.values()) if ids is None else [rows[i] for i in ids if i in rows]
            return [
                StoredEntry(
                    r.id, r.text, dict(r.metadata), r.added_us, r.run_id, r.step_id, r.attempt
                )
                for r in chosen
            ]

    def hits(self, name: str, ids: Sequence[str]) -> tuple[int, list[StoredEntry]]:
        """See :meth:`VectorStore.hits`."""
        with self._lock:
            return self.version(name), self.entries(name, ids)

    def count(self, name: str) -> int:
        """See :meth:`VectorStore.count`."""
        with self._lock:
            found = self._collections.get(name)
            return 0 if found is None else len(found.rows)

    def collections(self) -> list[CollectionInfo]:
        """See :meth:`VectorStore.collections`."""
        with self._lock:
            return [self._info(c) for _, c in sorted(self._collections.items())]


def check_same(stored: CollectionInfo, *, model: str, dimensions: int, where: str) -> None:
    """Refuse to reuse a stored collection with another embedding model or vector size."""
    if stored.dimensions != dimensions or stored.model != model:
        raise StoreError(
            f"{where}: vector collection '{stored.name}' holds {stored.dimensions}-dimension "
            f"vectors of model '{stored.model}', but it is declared with model '{model}' and "
            f"{dimensions} dimensions; its vectors cannot be searched with another model. "
            "Declare a new collection name (and re-add the texts), or keep the old model"
        )


def check_unchanged(name: str, version: int, expected: int, *, where: str) -> None:
    """Refuse a re-embedding whose texts were read at another version of the collection."""
    if version != expected:
        raise StoreError(
            f"{where}: vector collection '{name}' changed while it was being re-embedded "
            f"(version {expected} became {version}); nothing was replaced, run reembed again"
        )
