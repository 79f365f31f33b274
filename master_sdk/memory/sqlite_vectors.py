"""Vector collections in the run store's SQLite file, through the store's own connection.

Two tables beside the runs, created by schema migration 4: ``vector_collections`` (one row
per collection, with the ``version`` every write bumps and the entry ``count``) and
``vectors`` (one row per entry; the vector as a little-endian ``float32`` BLOB). Small
columns come first and the text last, so loading ids, metadata and vectors for the search
index never reads the texts.

Why the store's connection, not a connection of our own: a second SQLite connection in
the same process is harmless, but a second SQLite *library* is not (its close drops the
first one's POSIX locks); and one connection means one write lock, taken the store's way
(short jittered waits, ``commit:vectors`` as the crash point before ``COMMIT``). Every
write is synced like a step result: an entry a tool added survives a power cut.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from master_sdk.errors import NotFound, StoreError
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
    import sqlite3

    import numpy as np

    from master_sdk.memory.sqlite import SQLiteStore

__all__ = ["VECTORS_DDL", "SQLiteVectorStore", "create_vector_tables"]

VECTORS_DDL = (
    """CREATE TABLE IF NOT EXISTS vector_collections (
    cid INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    model TEXT NOT NULL,
    dimensions INTEGER NOT NULL,
    fields TEXT NOT NULL,
    version INTEGER NOT NULL DEFAULT 0,
    count INTEGER NOT NULL DEFAULT 0,
    created_us INTEGER NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS vectors (
    cid INTEGER NOT NULL,
    id TEXT NOT NULL,
    metadata TEXT,
    run_id TEXT,
    step_id TEXT,
    attempt INTEGER,
    added_us INTEGER NOT NULL,
    vector BLOB NOT NULL,
    text TEXT NOT NULL,
    UNIQUE (cid, id)
)""",
)


def create_vector_tables(conn: sqlite3.Connection) -> None:
    """Create the vector tables (a schema migration step: ``execute`` only, no commit)."""
    for statement in VECTORS_DDL:
        conn.execute(statement)


_INSERT = (
    "INSERT INTO vectors (cid, id, metadata, run_id, step_id, attempt, added_us, vector, text) "
    "VALUES (?,?,?,?,?,?,?,?,?)"
)
_UPDATE = (
    "UPDATE vectors SET metadata=?, run_id=?, step_id=?, attempt=?, added_us=?, vector=?, "
    "text=? WHERE cid=? AND id=?"
)
# ids per IN (...) query: well under SQLite's default limit of 32766 variables
_CHUNK = 500
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, sort_keys=True).encode


class SQLiteVectorStore:
    """A :class:`~master_sdk.memory.vectors.VectorStore` in a :class:`SQLiteStore`'s file.

    Args:
        store: the run store whose file and connection hold the collections.
        before_commit: called with ``"vectors"`` inside each write transaction, just
            before ``COMMIT`` (crash tests stop the process there).
    """

    def __init__(
        self, store: SQLiteStore, *, before_commit: Callable[[str], None] | None = None
    ) -> None:
        self.store = store
        self._before_commit = before_commit
        self._cids: dict[str, int] = {}

    def _cid(self, conn: sqlite3.Connection, name: str) -> int:
        cid = self._cids.get(name)
        if cid is not None:
            return cid
        row = conn.execute("SELECT cid FROM vector_collections WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise NotFound(f"{self.store.path}: no vector collection '{name}'")
        self._cids[name] = int(row[0])
        return int(row[0])

    # ------------------------------------------------------------------ collections

    def open_collection(
        self, name: str, *, model: str, dimensions: int, fields: Mapping[str, str]
    ) -> CollectionInfo:
        """See :meth:`~master_sdk.memory.vectors.VectorStore.open_collection`."""
        from master_sdk.tracing.events import now_us

        found = self._info(name)
        if found is None:
            self.store.transaction(
                lambda conn: conn.execute(
                    "INSERT OR IGNORE INTO vector_collections "
                    "(name, model, dimensions, fields, created_us) VALUES (?,?,?,?,?)",
                    (name, model, dimensions, _encode(dict(fields)), now_us()),
                )
            )
            found = self._info(name)
            if found is None:  # pragma: no cover - the insert above just made it
                raise StoreError(f"{self.store.path}: could not create collection '{name}'")
        check_same(found, model=model, dimensions=dimensions, where=str(self.store.path))
        if found.fields != dict(fields):
            # fields are only how metadata is checked and filtered: follow the declaration
            self.store.transaction(
                lambda conn: conn.execute(
                    "UPDATE vector_collections SET fields = ? WHERE name = ?",
                    (_encode(dict(fields)), name),
                )
            )
        return found

    def _info(self, name: str) -> CollectionInfo | None:
        row = self.store.read(
            lambda conn: conn.execute(
                "SELECT name, model, dimensions, fields, count, version FROM vector_collections "
                "WHERE name = ?",
                (name,),
            ).fetchone()
        )
        return None if row is None else _info(row)

    def collections(self) -> list[CollectionInfo]:
        """See :meth:`~master_sdk.memory.vectors.VectorStore.collections`."""
        rows = self.store.read(
            lambda conn: conn.execute(
                "SELECT name, model, dimensions, fields, count, version FROM vector_collections "
                "ORDER BY name"
            ).fetchall()
        )
        return [_info(row) for row in rows]

    def info(self, name: str) -> CollectionInfo | None:
        """See :meth:`~master_sdk.memory.vectors.VectorStore.info`."""
        return self._info(name)

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
        blobs = [v.astype("<f4", copy=False).tobytes() for v in vectors]

        def write(conn: sqlite3.Connection) -> WriteResult:
            cid = self._cid(conn, name)
            (version,) = conn.execute(
                "SELECT version FROM vector_collections WHERE cid = ?", (cid,)
            ).fetchone()
            check_unchanged(name, int(version), expect_version, where=str(self.store.path))
            conn.executemany(
                "UPDATE vectors SET vector = ? WHERE cid = ? AND id = ?",
                [(blob, cid, key) for key, blob in zip(ids, blobs, strict=True)],
            )
            row = conn.execute(
                "UPDATE vector_collections SET model = ?, dimensions = ?, version = version + 1 "
                "WHERE cid = ? RETURNING version",
                (model, dimensions, cid),
            ).fetchone()
            if self._before_commit is not None:
                self._before_commit("vectors")
            return WriteResult(int(row[0]), 0, len(ids))

        return self.store.transaction(write)

    def version(self, name: str) -> int:
        """See :meth:`~master_sdk.memory.vectors.VectorStore.version`."""
        row = self.store.read(
            lambda conn: conn.execute(
                "SELECT version FROM vector_collections WHERE name = ?", (name,)
            ).fetchone()
        )
        return 0 if row is None else int(row[0])

    def count(self, name: str) -> int:
        """See :meth:`~master_sdk.memory.vectors.VectorStore.count`."""
        row = self.store.read(
            lambda conn: conn.execute(
                "SELECT count FROM vector_collections WHERE name = ?", (name,)
            ).fetchone()
        )
        return 0 if row is None else int(row[0])

    # ------------------------------------------------------------------ writes

    def upsert(
        self,
        name: str,
        entries: Sequence[Entry],
        *,
        max_items: int,
        origin: tuple[str, str, int] | None = None,
    ) -> WriteResult:
        """See :meth:`~master_sdk.memory.vectors.VectorStore.upsert`."""
        # everything is encoded before the write lock is taken
        rows = {
            e.id: (
                _encode(e.metadata) if e.metadata else None,
                e.run_id,
                e.step_id,
                e.attempt,
                e.added_us,
                e.vector.astype("<f4", copy=False).tobytes(),
                e.text,
            )
            for e in entries
        }

        def write(conn: sqlite3.Connection) -> WriteResult:
            cid = self._cid(conn, name)
            count = int(
                conn.execute(
                    "SELECT count FROM vector_collections WHERE cid = ?", (cid,)
                ).fetchone()[0]
            )
            gone: list[str] = []
            if origin is not None:
                gone = self._earlier_attempts(conn, cid, origin, rows)
            existing = _existing(conn, cid, list(rows))
            added = len(rows) - len(existing)
            total = count - len(gone) + added
            if total > max_items and total > count:
                raise CollectionFull(name, limit=max_items, value=total)
            conn.executemany(
                _INSERT, [(cid, key, *row) for key, row in rows.items() if key not in existing]
            )
            if existing:
                conn.executemany(_UPDATE, [(*rows[key], cid, key) for key in existing])
            version = self._bump(conn, cid, total)
            if self._before_commit is not None:
                self._before_commit("vectors")
            return WriteResult(version, added, len(existing), gone)

        return self.store.transaction(write)

    @staticmethod
    def _earlier_attempts(
        conn: sqlite3.Connection, cid: int, origin: tuple[str, str, int], rows: Mapping[str, Any]
    ) -> list[str]:
        run_id, step_id, attempt = origin
        prefix = step_prefix(run_id, step_id)
        stale = [
            str(r[0])
            for r in conn.execute(
                "SELECT id FROM vectors WHERE cid = ? AND id >= ? AND id < ? AND attempt < ?",
                (cid, prefix, prefix[:-1] + ";", attempt),
            )
        ]
        gone = [key for key in stale if key not in rows]
        conn.executemany("DELETE FROM vectors WHERE cid = ? AND id = ?", [(cid, k) for k in gone])
        return gone

    @staticmethod
    def _bump(conn: sqlite3.Connection, cid: int, count: int) -> int:
        row = conn.execute(
            "UPDATE vector_collections SET version = version + 1, count = ? WHERE cid = ? "
            "RETURNING version",
            (count, cid),
        ).fetchone()
        return int(row[0])

    def delete(self, name: str, ids: Sequence[str]) -> WriteResult:
        """See :meth:`~master_sdk.memory.vectors.VectorStore.delete`."""
        wanted = list(dict.fromkeys(ids))

        def write(conn: sqlite3.Connection) -> WriteResult:
            cid = self._cid(conn, name)
            present = _existing(conn, cid, wanted)
            gone = [key for key in wanted if key in present]
            conn.executemany(
                "DELETE FROM vectors WHERE cid = ? AND id = ?", [(cid, k) for k in gone]
            )
            count = conn.execute("SELECT count FROM vector_collections WHERE cid = ?", (cid,))
            version = self._bump(conn, cid, int(count.fetchone()[0]) - len(gone))
            if self._before_commit is not None:
                self._before_commit("vectors")
            return WriteResult(version, 0, 0, gone)

        return self.store.transaction(write)

    # ------------------------------------------------------------------ reads

    def load(self, name: str) -> Snapshot:
        """See :meth:`~master_sdk.memory.vectors.VectorStore.load`: one statement, so the
        rows and the version come from one snapshot of the file."""
        import numpy as np

        def query(conn: sqlite3.Connection) -> tuple[list[tuple[Any, ...]], int, int]:
            head = conn.execute(
                "SELECT cid, dimensions, version FROM vector_collections WHERE name = ?", (name,)
            ).fetchone()
            if head is None:
                raise NotFound(f"{self.store.path}: no vector collection '{name}'")
            rows = conn.execute(
                "SELECT v.id, v.metadata, v.vector, c.version FROM vectors v "
                "JOIN vector_collections c ON c.cid = v.cid WHERE v.cid = ?",
                (head[0],),
            ).fetchall()
            return rows, int(head[1]), int(rows[0][3]) if rows else int(head[2])

        rows, dims, version = self.store.read(query)
        if rows:
            blob = b"".join(r[2] for r in rows)
            vectors = np.frombuffer(blob, dtype="<f4").reshape(len(rows), dims)
        else:
            vectors = np.zeros((0, dims), dtype=np.float32)
        loads = json.loads
        return Snapshot(
            version=version,
            ids=[r[0] for r in rows],
            vectors=vectors.astype(np.float32, copy=False),
            metadata=[loads(r[1]) if r[1] else {} for r in rows],
        )

    def hits(self, name: str, ids: Sequence[str]) -> tuple[int, list[StoredEntry]]:
        """See :meth:`~master_sdk.memory.vectors.VectorStore.hits`: one statement, so the
        version and the entries come from one snapshot of the file."""
        # a search asks for at most MAX_K (1,000) ids: well within SQLite's 32,766 variables
        wanted = list(dict.fromkeys(ids))
        marks = ",".join("?" * len(wanted))
        # the collection's row always comes back (LEFT JOIN), with the entries asked for
        sql = (
            "SELECT c.version, v.id, v.text, v.metadata, v.added_us, v.run_id, v.step_id, "  # noqa: S608  # placeholders only
            "v.attempt FROM vector_collections c LEFT JOIN vectors v ON v.cid = c.cid AND "
            f"v.id IN ({marks or 'NULL'}) WHERE c.name = ?"
        )
        rows = self.store.read(lambda conn: conn.execute(sql, (*wanted, name)).fetchall())
        if not rows:
            raise NotFound(f"{self.store.path}: no vector collection '{name}'")
        found = {
            r[1]: StoredEntry(r[1], r[2], json.loads(r[3]) if r[3] else {}, r[4], r[5], r[6], r[7])
            for r in rows
            if r[1] is not None
        }
        return int(rows[0][0]), [found[key] for key in wanted if key in found]

    def entries(self, name: str, ids: Sequence[str] | None = None) -> list[StoredEntry]:
        """See :meth:`~master_sdk.memory.vectors.VectorStore.entries`."""
        columns = "id, text, metadata, added_us, run_id, step_id, attempt"

        def query(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
            cid = self._cid(conn, name)
            if ids is None:
                return conn.execute(
                    f"SELECT {columns} FROM vectors WHERE cid = ? ORDER BY rowid",  # noqa: S608  # constants
                    (cid,),
                ).fetchall()
            found: list[tuple[Any, ...]] = []
            wanted = list(ids)
            for start in range(0, len(wanted), _CHUNK):
                part = wanted[start : start + _CHUNK]
                marks = ",".join("?" * len(part))
                found.extend(
                    conn.execute(
                        f"SELECT {columns} FROM vectors WHERE cid = ? AND id IN ({marks})",  # noqa: S608  # placeholders only
                        (cid, *part),
                    )
                )
            order = {key: i for i, key in enumerate(wanted)}
            return sorted(found, key=lambda r: order[r[0]])

        rows = self.store.read(query)
        return [
            StoredEntry(r[0], r[1], json.loads(r[2]) if r[2] else {}, r[3], r[4], r[5], r[6])
            for r in rows
        ]


def _info(row: tuple[Any, ...]) -> CollectionInfo:
    return CollectionInfo(
        name=row[0],
        model=row[1],
        dimensions=int(row[2]),
        fields=json.loads(row[3]),
        count=int(row[4]),
        version=int(row[5]),
    )


def _existing(conn: sqlite3.Connection, cid: int, ids: list[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(ids), _CHUNK):
        part = ids[start : start + _CHUNK]
        marks = ",".join("?" * len(part))
        found.update(
            r[0]
            for r in conn.execute(
                f"SELECT id FROM vectors WHERE cid = ? AND id IN ({marks})",  # noqa: S608  # placeholders only
                (cid, *part),
            )
        )
    return found
