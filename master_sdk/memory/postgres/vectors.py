"""Vector collections in a PostgreSQL store's database, through the store's own pool.

Two tables beside the runs, as in the SQLite store: ``vector_collections`` (one row per
collection, with the ``version`` every write bumps and the entry ``count``) and
``vectors`` (one row per entry; the vector as a little-endian ``float32`` ``bytea``, so
the server needs no extension and search stays the exact numpy scan of
:mod:`master_sdk.memory.vector_index`). ``seq`` keeps the order entries were first added.

Every write locks its collection's row (``SELECT ... FOR UPDATE``) before anything else,
so writers of one collection from many processes or hosts are serialised: ``max_items``
is checked against the true count and versions never skip or repeat. Reads run in one
repeatable-read snapshot, so a loaded collection and its version always agree.

The tables are created when the first :class:`PostgresVectorStore` opens a database, under
the schema's advisory lock, and recorded as ``vectors_schema_version`` in ``master_meta``
(apart from the run tables' version).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from master_sdk.errors import NotFound, StoreError
from master_sdk.memory.postgres.schema import LOCK_KEY
from master_sdk.memory.vectors import (
    CollectionFull,
    CollectionInfo,
    Entry,
    Snapshot,
    StoredEntry,
    WriteResult,
    check_same,
    check_unchanged,
    step_prefix,
)

if TYPE_CHECKING:
    import numpy as np

    from master_sdk.memory.postgres.store import Conn, PostgresStore

__all__ = ["VECTORS_SCHEMA_VERSION", "PostgresVectorStore"]

VECTORS_SCHEMA_VERSION = 1

# ids compare byte-wise (COLLATE "C") so a run step's prefix is one index range scan
_DDL = """
CREATE TABLE IF NOT EXISTS vector_collections (
    cid bigserial PRIMARY KEY,
    name text NOT NULL UNIQUE,
    model text NOT NULL,
    dimensions integer NOT NULL,
    fields text NOT NULL,
    version bigint NOT NULL DEFAULT 0,
    count bigint NOT NULL DEFAULT 0,
    created_us bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS vectors (
    cid bigint NOT NULL REFERENCES vector_collections (cid) ON DELETE CASCADE,
    id text COLLATE "C" NOT NULL,
    seq bigserial NOT NULL,
    metadata text,
    run_id text,
    step_id text,
    attempt integer,
    added_us bigint NOT NULL,
    vector bytea NOT NULL,
    text text NOT NULL,
    PRIMARY KEY (cid, id)
);
"""
_UPSERT = (
    "INSERT INTO vectors (cid, id, metadata, run_id, step_id, attempt, added_us, vector, text) "
    "SELECT %s, * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::integer[], "
    "%s::bigint[], %s::bytea[], %s::text[]) "
    "ON CONFLICT (cid, id) DO UPDATE SET metadata = EXCLUDED.metadata, "
    "run_id = EXCLUDED.run_id, step_id = EXCLUDED.step_id, attempt = EXCLUDED.attempt, "
    "added_us = EXCLUDED.added_us, vector = EXCLUDED.vector, text = EXCLUDED.text"
)
_ENTRY_COLS = "id, text, metadata, added_us, run_id, step_id, attempt"
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, sort_keys=True).encode


def ensure_vector_tables(conn: Conn) -> None:
    """Create the vector tables if missing (serialised with the run tables' migration)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
        row = conn.execute(
            "SELECT value FROM master_meta WHERE key = 'vectors_schema_version'"
        ).fetchone()
        if row is not None and int(str(row[0])) >= VECTORS_SCHEMA_VERSION:
            return  # made already: a role without CREATE on the schema may open it too
        conn.execute(_DDL)
        conn.execute(
            "INSERT INTO master_meta (key, value) VALUES ('vectors_schema_version', %s) "
            "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            (str(VECTORS_SCHEMA_VERSION),),
        )


class PostgresVectorStore:
    """A :class:`~master_sdk.memory.vectors.VectorStore` in a :class:`PostgresStore`'s
    database (see the module docstring).

    Args:
        store: the run store whose database and pool hold the collections.
        before_commit: called with ``"vectors"`` inside each write transaction, just
            before ``COMMIT`` (crash tests stop the process there).
    """

    def __init__(
        self, store: PostgresStore, *, before_commit: Callable[[str], None] | None = None
    ) -> None:
        self.store = store
        self.location = store.location
        self._before_commit = before_commit
        store.transaction(ensure_vector_tables, doing="while preparing the vector tables")

    # ------------------------------------------------------------------ collections

    def open_collection(
        self, name: str, *, model: str, dimensions: int, fields: Mapping[str, str]
    ) -> CollectionInfo:
        """See :meth:`~master_sdk.memory.vectors.VectorStore.open_collection`."""
        from master_sdk.tracing.events import now_us

        encoded = _encode(dict(fields))

        def write(conn: Conn) -> CollectionInfo:
            conn.execute(
                "INSERT INTO vector_collections (name, model, dimensions, fields, created_us) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (name) DO NOTHING",
                (name, model, dimensions, encoded, now_us()),
            )
            found = _info(conn, name)
            if found is None:  # pragma: no cover - the insert above just made it
                raise StoreError(f"{self.location}: could not create collection '{name}'")
            check_same(found, model=model, dimensions=dimensions, where=self.location)
            if found.fields != dict(fields):
                # fields are only how metadata is checked and filtered: follow the declaration
                conn.execute(
                    "UPDATE vector_collections SET fields = %s WHERE name = %s", (encoded, name)
                )
            return found

        return self.store.transaction(write, doing=f"while opening collection '{name}'")

    def collections(self) -> list[CollectionInfo]:
        """See :meth:`~master_sdk.memory.vectors.VectorStore.collections`."""
        rows = self.store.read(
            lambda conn: conn.execute(
                "SELECT name, model, dimensions, fields, count, version FROM vector_collections "
                "ORDER BY name"
            ).fetchall()
        )
        return [_record(row) for row in rows]

    def info(self, name: str) -> CollectionInfo | None:
        """See :meth:`~master_sdk.memory.vectors.VectorStore.info`."""
        return self.store.read(lambda conn: _info(conn, name))

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
        """See :meth:`~master_sdk.memory.vectors.VectorStore.reembed`."""
        keys = list(ids)
        blobs = [v.astype("<f4", copy=False).tobytes() for v in vectors]

        def write(conn: Conn) -> WriteResult:
            row = conn.execute(
                "SELECT cid, version FROM vector_collections WHERE name = %s FOR UPDATE",
                (name,),
            ).fetchone()
            if row is None:
                raise NotFound(f"{self.location}: no vector collection '{name}'")
            check_unchanged(name, int(row[1]), expect_version, where=self.location)
            conn.execute(
                "UPDATE vectors v SET vector = n.vector FROM unnest(%s::text[], %s::bytea[]) "
                "AS n (id, vector) WHERE v.cid = %s AND v.id = n.id",
                (keys, blobs, row[0]),
            )
            done = conn.execute(
                "UPDATE vector_collections SET model = %s, dimensions = %s, "
                "version = version + 1 WHERE cid = %s RETURNING version",
                (model, dimensions, row[0]),
            ).fetchone()
            if self._before_commit is not None:
                self._before_commit("vectors")
            return WriteResult(int(done[0]) if done is not None else 0, 0, len(keys))

        return self.store.transaction(write, doing=f"while re-embedding collection '{name}'")

    def version(self, name: str) -> int:
        """See :meth:`~master_sdk.memory.vectors.VectorStore.version`."""
        row = self.store.read(
            lambda conn: conn.execute(
                "SELECT version FROM vector_collections WHERE name = %s", (name,)
            ).fetchone()
        )
        return 0 if row is None else int(row[0])

    def count(self, name: str) -> int:
        """See :meth:`~master_sdk.memory.vectors.VectorStore.count`."""
        row = self.store.read(
            lambda conn: conn.execute(
                "SELECT count FROM vector_collections WHERE name = %s", (name,)
            ).fetchone()
        )
        return 0 if row is None else int(row[0])

    # ------------------------------------------------------------------ writes

    def _lock(self, conn: Conn, name: str) -> tuple[int, int]:
        """Lock the collection's row for this transaction; its ``cid`` and ``count``."""
        row = conn.execute(
            "SELECT cid, count FROM vector_collections WHERE name = %s FOR UPDATE", (name,)
        ).fetchone()
        if row is None:
            raise NotFound(f"{self.location}: no vector collection '{name}'")
        return int(row[0]), int(row[1])

    def _finish(self, conn: Conn, cid: int, count: int) -> int:
        row = conn.execute(
            "UPDATE vector_collections SET version = version + 1, count = %s WHERE cid = %s "
            "RETURNING version",
            (count, cid),
        ).fetchone()
        if self._before_commit is not None:
            self._before_commit("vectors")
        return int(row[0]) if row is not None else 0

    def upsert(
        self,
        name: str,
        entries: Sequence[Entry],
        *,
        max_items: int,
        origin: tuple[str, str, int] | None = None,
    ) -> WriteResult:
        """See :meth:`~master_sdk.memory.vectors.VectorStore.upsert`."""
        latest = {e.id: e for e in entries}  # a repeated id: the last one wins, as in SQLite
        ids = list(latest)
        rows = list(latest.values())
        columns = (
            ids,
            [_encode(e.metadata) if e.metadata else None for e in rows],
            [e.run_id for e in rows],
            [e.step_id for e in rows],
            [e.attempt for e in rows],
            [e.added_us for e in rows],
            [e.vector.astype("<f4", copy=False).tobytes() for e in rows],
            [e.text for e in rows],
        )

        def write(conn: Conn) -> WriteResult:
            cid, count = self._lock(conn, name)
            gone: list[str] = []
            if origin is not None:
                run_id, step_id, attempt = origin
                prefix = step_prefix(run_id, step_id)
                gone = [
                    str(r[0])
                    for r in conn.execute(
                        "DELETE FROM vectors WHERE cid = %s AND id >= %s AND id < %s "
                        "AND attempt < %s AND NOT (id = ANY(%s)) RETURNING id",
                        (cid, prefix, prefix[:-1] + ";", attempt, ids),
                    )
                ]
            existing = _existing(conn, cid, ids)
            added = len(ids) - len(existing)
            total = count - len(gone) + added
            if total > max_items and total > count:
                raise CollectionFull(name, limit=max_items, value=total)
            if ids:
                conn.execute(_UPSERT, (cid, *columns))
            return WriteResult(self._finish(conn, cid, total), added, len(existing), gone)

        return self.store.transaction(write, doing=f"while adding to collection '{name}'")

    def delete(self, name: str, ids: Sequence[str]) -> WriteResult:
        """See :meth:`~master_sdk.memory.vectors.VectorStore.delete`."""
        wanted = list(dict.fromkeys(ids))

        def write(conn: Conn) -> WriteResult:
            cid, count = self._lock(conn, name)
            removed = {
                str(r[0])
                for r in conn.execute(
                    "DELETE FROM vectors WHERE cid = %s AND id = ANY(%s) RETURNING id",
                    (cid, wanted),
                )
            }
            gone = [key for key in wanted if key in removed]
            return WriteResult(self._finish(conn, cid, count - len(gone)), 0, 0, gone)

        return self.store.transaction(write, doing=f"while deleting from collection '{name}'")

    # ------------------------------------------------------------------ reads

    def load(self, name: str) -> Snapshot:
        """See :meth:`~master_sdk.memory.vectors.VectorStore.load`: one snapshot, the
        vectors read in binary (no hex text for the ``bytea``)."""
        import numpy as np

        def read(conn: Conn) -> tuple[list[tuple[Any, ...]], int, int]:
            head = conn.execute(
                "SELECT cid, dimensions, version FROM vector_collections WHERE name = %s",
                (name,),
            ).fetchone()
            if head is None:
                raise NotFound(f"{self.location}: no vector collection '{name}'")
            with conn.cursor(binary=True) as cur:
                cur.execute(
                    "SELECT id, metadata, vector FROM vectors WHERE cid = %s ORDER BY seq",
                    (head[0],),
                )
                rows = cur.fetchall()
            return rows, int(head[1]), int(head[2])

        rows, dims, version = self.store.read(read, doing=f"while loading collection '{name}'")
        if rows:
            blob = b"".join(bytes(r[2]) for r in rows)
            vectors = np.frombuffer(blob, dtype="<f4").reshape(len(rows), dims)
        else:
            vectors = np.zeros((0, dims), dtype=np.float32)
        loads = json.loads
        return Snapshot(
            version=version,
            ids=[str(r[0]) for r in rows],
            vectors=vectors.astype(np.float32, copy=False),
            metadata=[loads(r[1]) if r[1] else {} for r in rows],
        )

    def hits(self, name: str, ids: Sequence[str]) -> tuple[int, list[StoredEntry]]:
        """See :meth:`~master_sdk.memory.vectors.VectorStore.hits`."""
        wanted = list(dict.fromkeys(ids))

        def read(conn: Conn) -> tuple[int, list[StoredEntry]]:
            head = conn.execute(
                "SELECT cid, version FROM vector_collections WHERE name = %s", (name,)
            ).fetchone()
            if head is None:
                raise NotFound(f"{self.location}: no vector collection '{name}'")
            return int(head[1]), _entries(conn, int(head[0]), wanted)

        return self.store.read(read)

    def entries(self, name: str, ids: Sequence[str] | None = None) -> list[StoredEntry]:
        """See :meth:`~master_sdk.memory.vectors.VectorStore.entries`."""

        def read(conn: Conn) -> list[StoredEntry]:
            row = conn.execute(
                "SELECT cid FROM vector_collections WHERE name = %s", (name,)
            ).fetchone()
            if row is None:
                raise NotFound(f"{self.location}: no vector collection '{name}'")
            return _entries(conn, int(row[0]), None if ids is None else list(ids))

        return self.store.read(read, doing=f"while reading collection '{name}'")


def _info(conn: Conn, name: str) -> CollectionInfo | None:
    row = conn.execute(
        "SELECT name, model, dimensions, fields, count, version FROM vector_collections "
        "WHERE name = %s",
        (name,),
    ).fetchone()
    return None if row is None else _record(row)


def _record(row: Sequence[Any]) -> CollectionInfo:
    return CollectionInfo(
        name=str(row[0]),
        model=str(row[1]),
        dimensions=int(row[2]),
        fields=json.loads(row[3]),
        count=int(row[4]),
        version=int(row[5]),
    )


def _existing(conn: Conn, cid: int, ids: list[str]) -> set[str]:
    if not ids:
        return set()
    rows = conn.execute(
        "SELECT id FROM vectors WHERE cid = %s AND id = ANY(%s)", (cid, ids)
    ).fetchall()
    return {str(r[0]) for r in rows}


def _entries(conn: Conn, cid: int, ids: list[str] | None) -> list[StoredEntry]:
    # the f-strings below only insert the constant column list
    if ids is None:
        rows = conn.execute(
            f"SELECT {_ENTRY_COLS} FROM vectors WHERE cid = %s ORDER BY seq",
            (cid,),
        ).fetchall()
    else:
        found = conn.execute(
            f"SELECT {_ENTRY_COLS} FROM vectors WHERE cid = %s AND id = ANY(%s)",
            (cid, ids),
        ).fetchall()
        by_id = {r[0]: r for r in found}
        rows = [by_id[key] for key in ids if key in by_id]
    return [
        StoredEntry(
            str(r[0]), str(r[1]), json.loads(r[2]) if r[2] else {}, int(r[3]), r[4], r[5], r[6]
        )
        for r in rows
    ]
