"""The vector tables' statements, written once for every SQL store
(:class:`~master_sdk.memory.vectors.VectorStore` on SQLite and PostgreSQL).

Both stores keep ``vector_collections`` (one row per collection, with the ``version`` every
write bumps and the entry ``count``) and ``vectors`` (one row per entry; the vector as
little-endian ``float32`` bytes). A store mixes in :class:`SqlVectors` and names its
:class:`VectorDialect`: how parameters are marked, whether a write locks the collection's
row, how a list of ids goes into a statement, and the few bulk writes each driver does its
own way. The statements are written with ``?`` marks (none holds a literal ``?``) and
translated once per dialect.

Every write starts by reading the collection's row (locked where the database has row
locks), so ``max_items`` is checked against the true count and versions never skip or
repeat; ``load`` and ``hits`` are one statement each, so what they return comes from one
snapshot even where reads are not wrapped in a transaction (SQLite's reader pool).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar

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
    import numpy as np

__all__ = ["Row", "SqlVectors", "VectorDialect", "encode"]


class _RunStore(Protocol):
    location: str


T = TypeVar("T")
S = TypeVar("S", bound=_RunStore)
Conn = Any  # a DB-API connection of the store's driver
# an entry's columns after ``id``: metadata, run_id, step_id, attempt, added_us, vector, text
Row = tuple[str | None, str | None, str | None, int | None, int, bytes, str]

encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, sort_keys=True).encode


@dataclass(frozen=True, slots=True)
class VectorDialect:
    """What differs between the SQL stores' vector tables.

    Attributes:
        mark: the parameter mark (``?`` or ``%s``).
        lock: appended to the ``SELECT`` of the collection's row that starts every write
            (``" FOR UPDATE"``, or ``""`` where the write lock is the whole file's).
        first_added: the column that orders entries as they were first added.
        load_order: the ``ORDER BY`` of :meth:`SqlVectors.load` (may be empty).
        chunk: ids per statement for :meth:`SqlVectors._select_in` (None: all at once).
        ids_in: what follows an id column to test it against ``ids`` (``IN (?,?)``,
            ``= ANY(?)``), and its parameters.
        fetch_vectors: runs a query whose rows hold vectors; its rows.
        write_rows: inserts the rows of new ids and replaces those in ``existing``.
        set_vectors: replaces the vectors of ids (those that exist).
    """

    mark: str
    lock: str
    first_added: str
    load_order: str
    chunk: int | None
    ids_in: Callable[[Sequence[str]], tuple[str, tuple[Any, ...]]]
    fetch_vectors: Callable[[Conn, str, tuple[Any, ...]], list[Any]]
    write_rows: Callable[[Conn, int, Mapping[str, Row], Collection[str]], None]
    set_vectors: Callable[[Conn, int, list[str], list[bytes]], None]

    def sql(self, text: str) -> str:
        """``text`` with this dialect's parameter marks."""
        return text if self.mark == "?" else text.replace("?", self.mark)


_COLLECTION_COLS = "name, model, dimensions, fields, count, version"
_ENTRY_COLS = "v.id, v.text, v.metadata, v.added_us, v.run_id, v.step_id, v.attempt"


class SqlVectors(Generic[S]):
    """The :class:`~master_sdk.memory.vectors.VectorStore` of a SQL run store.

    Args:
        store: the run store whose database and connections hold the collections.
        before_commit: called with ``"vectors"`` inside each write transaction, just
            before ``COMMIT`` (crash tests stop the process there).
    """

    dialect: ClassVar[VectorDialect]

    def __init__(self, store: S, *, before_commit: Callable[[str], None] | None = None) -> None:
        self.store = store
        self.location = store.location
        self._before_commit = before_commit

    def _write(self, body: Callable[[Conn], T], doing: str) -> T:
        """Run ``body`` in one write transaction of the run store."""
        raise NotImplementedError

    def _read(self, query: Callable[[Conn], T], doing: str) -> T:
        """Run ``query`` on a reading connection of the run store."""
        raise NotImplementedError

    def _missing(self, name: str) -> NotFound:
        return NotFound(f"{self.location}: no vector collection '{name}'")

    # ------------------------------------------------------------------ collections

    def open_collection(
        self, name: str, *, model: str, dimensions: int, fields: Mapping[str, str]
    ) -> CollectionInfo:
        """See :meth:`~master_sdk.memory.vectors.VectorStore.open_collection`."""
        from master_sdk.tracing.events import now_us

        declared = dict(fields)
        found = self.info(name)
        if found is not None and found.fields == declared:
            check_same(found, model=model, dimensions=dimensions, where=self.location)
            return found
        encoded = encode(declared)
        d = self.dialect

        def write(conn: Conn) -> CollectionInfo:
            conn.execute(
                d.sql(
                    "INSERT INTO vector_collections (name, model, dimensions, fields, "
                    "created_us) VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO NOTHING"
                ),
                (name, model, dimensions, encoded, now_us()),
            )
            stored = self._info(conn, name)
            if stored is None:  # pragma: no cover - the insert above just made it
                raise StoreError(f"{self.location}: could not create collection '{name}'")
            check_same(stored, model=model, dimensions=dimensions, where=self.location)
            if stored.fields != declared:
                # fields are only how metadata is checked and filtered: follow the declaration
                conn.execute(
                    d.sql("UPDATE vector_collections SET fields = ? WHERE name = ?"),
                    (encoded, name),
                )
            return stored

        return self._write(write, f"while opening collection '{name}'")

    def _info(self, conn: Conn, name: str) -> CollectionInfo | None:
        row = conn.execute(
            self.dialect.sql(
                f"SELECT {_COLLECTION_COLS} FROM vector_collections WHERE name = ?"  # noqa: S608  # constants
            ),
            (name,),
        ).fetchone()
        return None if row is None else _collection(row)

    def info(self, name: str) -> CollectionInfo | None:
        """See :meth:`~master_sdk.memory.vectors.VectorStore.info`."""
        return self._read(lambda conn: self._info(conn, name), "while reading")

    def collections(self) -> list[CollectionInfo]:
        """See :meth:`~master_sdk.memory.vectors.VectorStore.collections`."""
        rows = self._read(
            lambda conn: conn.execute(
                f"SELECT {_COLLECTION_COLS} FROM vector_collections ORDER BY name"  # noqa: S608  # constants
            ).fetchall(),
            "while reading",
        )
        return [_collection(row) for row in rows]

    def _column(self, name: str, column: str) -> int:
        sql = self.dialect.sql(f"SELECT {column} FROM vector_collections WHERE name = ?")  # noqa: S608  # constant names
        row = self._read(lambda conn: conn.execute(sql, (name,)).fetchone(), "while reading")
        return 0 if row is None else int(row[0])

    def version(self, name: str) -> int:
        """See :meth:`~master_sdk.memory.vectors.VectorStore.version`."""
        return self._column(name, "version")

    def count(self, name: str) -> int:
        """See :meth:`~master_sdk.memory.vectors.VectorStore.count`."""
        return self._column(name, "count")

    # ------------------------------------------------------------------ writes

    def _lock(self, conn: Conn, name: str) -> tuple[int, int, int]:
        """The collection's ``cid``, ``count`` and ``version``, its row locked for this
        transaction where the dialect locks rows."""
        d = self.dialect
        row = conn.execute(
            d.sql(f"SELECT cid, count, version FROM vector_collections WHERE name = ?{d.lock}"),  # noqa: S608  # constant text
            (name,),
        ).fetchone()
        if row is None:
            raise self._missing(name)
        return int(row[0]), int(row[1]), int(row[2])

    def _finish(self, conn: Conn, cid: int, sets: str, params: tuple[Any, ...]) -> int:
        """Bump the collection's version (and set ``sets``); the new version. Calls
        ``before_commit`` last, inside the transaction."""
        row = conn.execute(
            self.dialect.sql(
                f"UPDATE vector_collections SET {sets}, version = version + 1 WHERE cid = ? "  # noqa: S608  # constant text
                "RETURNING version"
            ),
            (*params, cid),
        ).fetchone()
        if self._before_commit is not None:
            self._before_commit("vectors")
        return int(row[0])

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
            cid, _, version = self._lock(conn, name)
            check_unchanged(name, version, expect_version, where=self.location)
            self.dialect.set_vectors(conn, cid, keys, blobs)
            done = self._finish(conn, cid, "model = ?, dimensions = ?", (model, dimensions))
            return WriteResult(done, 0, len(keys))

        return self._write(write, f"while re-embedding collection '{name}'")

    def upsert(
        self,
        name: str,
        entries: Sequence[Entry],
        *,
        max_items: int,
        origin: tuple[str, str, int] | None = None,
    ) -> WriteResult:
        """See :meth:`~master_sdk.memory.vectors.VectorStore.upsert`."""
        # everything is encoded before the write lock is taken; a repeated id: the last wins
        rows: dict[str, Row] = {
            e.id: (
                encode(e.metadata) if e.metadata else None,
                e.run_id,
                e.step_id,
                e.attempt,
                e.added_us,
                e.vector.astype("<f4", copy=False).tobytes(),
                e.text,
            )
            for e in entries
        }
        d = self.dialect

        def write(conn: Conn) -> WriteResult:
            cid, count, _ = self._lock(conn, name)
            gone: list[str] = []
            if origin is not None:
                gone = self._earlier_attempts(conn, cid, origin, rows)
            existing = self._existing(conn, cid, list(rows))
            added = len(rows) - len(existing)
            total = count - len(gone) + added
            if total > max_items and total > count:
                raise CollectionFull(name, limit=max_items, value=total)
            if rows:
                d.write_rows(conn, cid, rows, existing)
            done = self._finish(conn, cid, "count = ?", (total,))
            return WriteResult(done, added, len(existing), gone)

        return self._write(write, f"while adding to collection '{name}'")

    def _earlier_attempts(
        self, conn: Conn, cid: int, origin: tuple[str, str, int], keep: Collection[str]
    ) -> list[str]:
        """Remove the entries an earlier attempt of the step wrote, but for ``keep``."""
        run_id, step_id, attempt = origin
        prefix = step_prefix(run_id, step_id)
        stale = conn.execute(
            self.dialect.sql(
                "SELECT id FROM vectors WHERE cid = ? AND id >= ? AND id < ? AND attempt < ?"
            ),
            (cid, prefix, prefix[:-1] + ";", attempt),
        )
        gone = [key for key in (str(r[0]) for r in stale) if key not in keep]
        self._remove(conn, cid, gone)
        return gone

    def delete(self, name: str, ids: Sequence[str]) -> WriteResult:
        """See :meth:`~master_sdk.memory.vectors.VectorStore.delete`."""
        wanted = list(dict.fromkeys(ids))

        def write(conn: Conn) -> WriteResult:
            cid, count, _ = self._lock(conn, name)
            removed = self._remove(conn, cid, wanted)
            gone = [key for key in wanted if key in removed]
            done = self._finish(conn, cid, "count = ?", (count - len(gone),))
            return WriteResult(done, 0, 0, gone)

        return self._write(write, f"while deleting from collection '{name}'")

    # ------------------------------------------------------------------ ids

    def _select_in(
        self, conn: Conn, sql: str, cid: int, ids: Sequence[str]
    ) -> list[tuple[Any, ...]]:
        """Rows of ``sql`` for ``ids``, in as many statements as the dialect needs: its
        ``{ids}`` follows the id column, its one mark before is the collection's ``cid``."""
        d = self.dialect
        if not ids:
            return []
        step = d.chunk or len(ids)
        found: list[tuple[Any, ...]] = []
        for start in range(0, len(ids), step):
            test, params = d.ids_in(ids[start : start + step])
            found.extend(conn.execute(d.sql(sql.format(ids=test)), (cid, *params)))
        return found

    def _existing(self, conn: Conn, cid: int, ids: Sequence[str]) -> set[str]:
        sql = "SELECT v.id FROM vectors v WHERE v.cid = ? AND v.id {ids}"
        return {str(r[0]) for r in self._select_in(conn, sql, cid, ids)}

    def _remove(self, conn: Conn, cid: int, ids: Sequence[str]) -> set[str]:
        """Delete entries by id; the ids that were there."""
        sql = "DELETE FROM vectors WHERE cid = ? AND id {ids} RETURNING id"
        return {str(r[0]) for r in self._select_in(conn, sql, cid, ids)}

    # ------------------------------------------------------------------ reads

    def _head(self, conn: Conn, name: str) -> tuple[Any, ...]:
        row = conn.execute(
            self.dialect.sql(
                "SELECT cid, dimensions, version FROM vector_collections WHERE name = ?"
            ),
            (name,),
        ).fetchone()
        if row is None:
            raise self._missing(name)
        return tuple(row)

    def load(self, name: str) -> Snapshot:
        """See :meth:`~master_sdk.memory.vectors.VectorStore.load`: the entries and the
        version they belong to come from one statement, so from one snapshot."""
        import numpy as np

        d = self.dialect
        sql = d.sql(
            "SELECT v.id, v.metadata, v.vector, c.version FROM vectors v "  # noqa: S608  # constant text
            f"JOIN vector_collections c ON c.cid = v.cid WHERE v.cid = ?{d.load_order}"
        )

        def read(conn: Conn) -> tuple[list[Any], int, int]:
            cid, dims, version = self._head(conn, name)
            rows = d.fetch_vectors(conn, sql, (cid,))
            return rows, int(dims), int(rows[0][3]) if rows else int(version)

        rows, dims, version = self._read(read, f"while loading collection '{name}'")
        if rows:
            blob = b"".join(r[2] for r in rows)
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
        """See :meth:`~master_sdk.memory.vectors.VectorStore.hits`: one statement, so the
        version and the entries come from one snapshot."""
        # a search asks for at most MAX_K (1,000) ids: well within SQLite's 32,766 variables
        wanted = list(dict.fromkeys(ids))
        d = self.dialect
        test, params = d.ids_in(wanted)
        # the collection's row always comes back (LEFT JOIN), with the entries asked for
        sql = d.sql(
            f"SELECT c.version, {_ENTRY_COLS} FROM vector_collections c LEFT JOIN vectors v "  # noqa: S608  # placeholders only
            f"ON v.cid = c.cid AND v.id {test} WHERE c.name = ?"
        )
        rows = self._read(
            lambda conn: conn.execute(sql, (*params, name)).fetchall(),
            "while reading",
        )
        if not rows:
            raise self._missing(name)
        found = {r[1]: _entry(r[1:]) for r in rows if r[1] is not None}
        return int(rows[0][0]), [found[key] for key in wanted if key in found]

    def entries(self, name: str, ids: Sequence[str] | None = None) -> list[StoredEntry]:
        """See :meth:`~master_sdk.memory.vectors.VectorStore.entries`."""
        d = self.dialect

        def read(conn: Conn) -> list[tuple[Any, ...]]:
            cid = self._head(conn, name)[0]
            if ids is None:
                return list(
                    conn.execute(
                        d.sql(
                            f"SELECT {_ENTRY_COLS} FROM vectors v WHERE v.cid = ? "  # noqa: S608  # constants
                            f"ORDER BY v.{d.first_added}"
                        ),
                        (cid,),
                    )
                )
            wanted = list(ids)
            sql = f"SELECT {_ENTRY_COLS} FROM vectors v WHERE v.cid = ? AND v.id {{ids}}"  # noqa: S608  # constants
            by_id = {r[0]: r for r in self._select_in(conn, sql, cid, wanted)}
            return [by_id[key] for key in wanted if key in by_id]

        rows = self._read(read, f"while reading collection '{name}'")
        return [_entry(r) for r in rows]


def _collection(row: Sequence[Any]) -> CollectionInfo:
    return CollectionInfo(
        name=str(row[0]),
        model=str(row[1]),
        dimensions=int(row[2]),
        fields=json.loads(row[3]),
        count=int(row[4]),
        version=int(row[5]),
    )


def _entry(r: Sequence[Any]) -> StoredEntry:
    return StoredEntry(
        str(r[0]), str(r[1]), json.loads(r[2]) if r[2] else {}, int(r[3]), r[4], r[5], r[6]
    )
