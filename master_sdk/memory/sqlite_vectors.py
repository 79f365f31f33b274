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

The statements are those of :mod:`master_sdk.memory.vector_tables`, in SQLite's dialect.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from master_sdk.memory.sqlite import SQLiteStore
from master_sdk.memory.vector_tables import Row, SqlVectors, VectorDialect

if TYPE_CHECKING:
    import sqlite3

__all__ = ["SQLITE_VECTORS", "VECTORS_DDL", "SQLiteVectorStore", "create_vector_tables"]

T = TypeVar("T")

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


def _ids_in(ids: Sequence[str]) -> tuple[str, tuple[Any, ...]]:
    return f"IN ({','.join('?' * len(ids)) or 'NULL'})", tuple(ids)


def _fetch(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> list[Any]:
    return conn.execute(sql, params).fetchall()


def _write_rows(
    conn: sqlite3.Connection, cid: int, rows: Mapping[str, Row], existing: Collection[str]
) -> None:
    conn.executemany(
        _INSERT, [(cid, key, *row) for key, row in rows.items() if key not in existing]
    )
    if existing:
        conn.executemany(_UPDATE, [(*rows[key], cid, key) for key in existing])


def _set_vectors(conn: sqlite3.Connection, cid: int, ids: list[str], blobs: list[bytes]) -> None:
    conn.executemany(
        "UPDATE vectors SET vector = ? WHERE cid = ? AND id = ?",
        [(blob, cid, key) for key, blob in zip(ids, blobs, strict=True)],
    )


# one write lock for the whole file: the collection's row needs no lock of its own; ids
# per IN (...) query well under SQLite's default limit of 32766 variables
SQLITE_VECTORS = VectorDialect(
    mark="?", lock="", first_added="rowid", load_order="", chunk=500, ids_in=_ids_in,
    fetch_vectors=_fetch, write_rows=_write_rows, set_vectors=_set_vectors,
)  # fmt: skip


class SQLiteVectorStore(SqlVectors[SQLiteStore]):
    """A :class:`~master_sdk.memory.vectors.VectorStore` in a :class:`SQLiteStore`'s file,
    through the store's own connections (see :class:`~master_sdk.memory.vector_tables.SqlVectors`
    for the arguments)."""

    dialect = SQLITE_VECTORS

    def _write(self, body: Callable[[sqlite3.Connection], T], doing: str) -> T:
        return self.store.transaction(body)

    def _read(self, query: Callable[[sqlite3.Connection], T], doing: str) -> T:
        return self.store.read(query)
