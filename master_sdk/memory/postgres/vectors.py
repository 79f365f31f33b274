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
(apart from the run tables' version). The statements are those of
:mod:`master_sdk.memory.vector_tables`, in PostgreSQL's dialect.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from master_sdk.memory.postgres.schema import LOCK_KEY
from master_sdk.memory.postgres.store import PostgresStore
from master_sdk.memory.vector_tables import Row, SqlVectors, VectorDialect

if TYPE_CHECKING:
    from master_sdk.memory.postgres.store import Conn

__all__ = ["POSTGRES_VECTORS", "VECTORS_SCHEMA_VERSION", "PostgresVectorStore"]

T = TypeVar("T")

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


def _ids_in(ids: Sequence[str]) -> tuple[str, tuple[Any, ...]]:
    return "= ANY(%s::text[])", (list(ids),)


def _fetch_binary(conn: Conn, sql: str, params: tuple[Any, ...]) -> list[Any]:
    # the vectors read in binary: no hex text for the ``bytea``
    with conn.cursor(binary=True) as cur:
        cur.execute(sql, params)
        return cur.fetchall()


def _write_rows(conn: Conn, cid: int, rows: Mapping[str, Row], existing: Collection[str]) -> None:
    # one statement for every row, new or replaced (ON CONFLICT)
    conn.execute(_UPSERT, (cid, list(rows), *(list(c) for c in zip(*rows.values(), strict=True))))


def _set_vectors(conn: Conn, cid: int, ids: list[str], blobs: list[bytes]) -> None:
    conn.execute(
        "UPDATE vectors v SET vector = n.vector FROM unnest(%s::text[], %s::bytea[]) "
        "AS n (id, vector) WHERE v.cid = %s AND v.id = n.id",
        (ids, blobs, cid),
    )


POSTGRES_VECTORS = VectorDialect(
    mark="%s", lock=" FOR UPDATE", first_added="seq", load_order=" ORDER BY v.seq", chunk=None,
    ids_in=_ids_in, fetch_vectors=_fetch_binary, write_rows=_write_rows, set_vectors=_set_vectors,
)  # fmt: skip


class PostgresVectorStore(SqlVectors[PostgresStore]):
    """A :class:`~master_sdk.memory.vectors.VectorStore` in a :class:`PostgresStore`'s
    database (see the module docstring, and :class:`~master_sdk.memory.vector_tables.SqlVectors`
    for the arguments)."""

    dialect = POSTGRES_VECTORS

    def __init__(
        self, store: PostgresStore, *, before_commit: Callable[[str], None] | None = None
    ) -> None:
        super().__init__(store, before_commit=before_commit)
        store.transaction(ensure_vector_tables, doing="while preparing the vector tables")

    def _write(self, body: Callable[[Conn], T], doing: str) -> T:
        return self.store.transaction(body, doing=doing)

    def _read(self, query: Callable[[Conn], T], doing: str) -> T:
        return self.store.read(query, doing=doing)
