"""The SQLite schema, its version (``PRAGMA user_version``) and migrations.

A store written by an older schema is migrated in place inside one transaction; a
store from a newer version is refused. Each release that changes the schema appends a
migration to :data:`MIGRATIONS` and bumps :data:`SCHEMA_VERSION`.

Versions: 1, the tables of :data:`SCHEMA_V1` (a ``trace`` row per event); 2, the trace as
``trace_chunks`` (a row per commit) and ``trace_names`` (:mod:`master_sdk.memory.chunks`);
3, ``step_attempts`` keeps the attempts of a step superseded by a retry, a recovery or a
skip, beside ``steps``, which keeps the latest attempt of each step; 4, the experiment
tables; 5, an index on ``runs.status`` and ``reservations`` (review); 6, the vector
memory tables ``vector_collections`` and ``vectors`` (:mod:`master_sdk.memory.sqlite_vectors`);
7, a run's lineage: ``runs.parent_run_id`` and ``runs.forked_at`` (a fork's parent run and
fork step); 8, ``trace_chunks`` and ``steps`` keyed by a row id made of their run and
first event or step index (:data:`~master_sdk.memory.chunks.CHUNKS_DDL`,
:data:`STEPS_DDL`: fewer pages written per commit).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from itertools import groupby
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from master_sdk.errors import StoreError
from master_sdk.memory.chunks import (
    CHUNKS_DDL,
    CHUNKS_DDL_V2,
    INSERT_CHUNK_V2,
    MAX_CHUNK,
    NAMES_DDL,
    RUN_BITS,
    Chunk,
    NewNames,
    pack,
)

if TYPE_CHECKING:
    import sqlite3

    from master_sdk.tracing.events import EventRow

SCHEMA_VERSION = 8

PAGE_SIZE = 2048
"""Page size of new stores. A commit writes every page it touches to the WAL (and a
synced commit waits for them): a run's commit touches a few small rows in four tables,
so smaller pages mean less to write and sync per commit; scans of the trace are no
slower. Existing stores keep the page size they were created with."""

SCHEMA_V1 = """
CREATE TABLE runs (
    pk INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL UNIQUE,
    product TEXT NOT NULL,
    flow TEXT NOT NULL,
    status TEXT NOT NULL,
    version INTEGER NOT NULL,
    cursor INTEGER NOT NULL,
    created_us INTEGER NOT NULL,
    updated_us INTEGER NOT NULL,
    flow_hash TEXT NOT NULL,
    product_version TEXT NOT NULL,
    created_by TEXT,
    owner TEXT,
    steps_used INTEGER NOT NULL DEFAULT 0,
    tool_calls INTEGER NOT NULL DEFAULT 0,
    model_calls INTEGER NOT NULL DEFAULT 0,
    tokens_in INTEGER NOT NULL DEFAULT 0,
    tokens_out INTEGER NOT NULL DEFAULT 0,
    cost_usd REAL NOT NULL DEFAULT 0,
    inputs TEXT,
    output TEXT,
    state TEXT,
    error TEXT
);
CREATE TABLE steps (
    run_pk INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    step_id TEXT NOT NULL,
    type TEXT NOT NULL,
    status TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    started_us INTEGER,
    ended_us INTEGER,
    output TEXT,
    error TEXT,
    PRIMARY KEY (run_pk, idx)
) WITHOUT ROWID;
CREATE TABLE trace (
    run_pk INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    ts_us INTEGER NOT NULL,
    event INTEGER NOT NULL,
    step_id TEXT,
    step_type INTEGER,
    name TEXT,
    status INTEGER,
    duration_ms REAL,
    tokens_in INTEGER,
    tokens_out INTEGER,
    cost_usd REAL,
    attrs TEXT,
    PRIMARY KEY (run_pk, seq)
) WITHOUT ROWID;
CREATE TABLE approvals (
    run_pk INTEGER NOT NULL,
    step_id TEXT NOT NULL,
    decision TEXT NOT NULL,
    decided_by TEXT,
    comment TEXT,
    at_us INTEGER NOT NULL,
    PRIMARY KEY (run_pk, step_id, at_us)
) WITHOUT ROWID;
CREATE TABLE user_inputs (
    run_pk INTEGER NOT NULL,
    step_id TEXT NOT NULL,
    data TEXT NOT NULL,
    given_by TEXT,
    at_us INTEGER NOT NULL,
    PRIMARY KEY (run_pk, step_id, at_us)
) WITHOUT ROWID;
CREATE TABLE flow_versions (
    flow_hash TEXT PRIMARY KEY,
    product TEXT NOT NULL,
    flow TEXT NOT NULL,
    product_version TEXT NOT NULL,
    source TEXT NOT NULL
) WITHOUT ROWID;
"""

Migration = Callable[["sqlite3.Connection"], None]


def trace_chunks_v2(conn: sqlite3.Connection) -> None:
    """Version 1 -> 2: the ``trace`` table (one row per event) becomes ``trace_chunks`` (one
    row per group of events, see :mod:`master_sdk.memory.chunks`) and ``trace_names``.

    Version 1 did not record which commit wrote an event, so each run's events become
    chunks of up to ``MAX_CHUNK`` events. Attribute texts are kept as they were stored
    (redacted when written), joined into each chunk's JSON array.
    """
    conn.execute(NAMES_DDL)
    conn.execute(CHUNKS_DDL_V2)
    codes = NewNames(conn, {}, _same)
    rows = conn.execute(
        "SELECT run_pk, seq, ts_us, event, step_id, step_type, name, status, duration_ms, "
        "tokens_in, tokens_out, cost_usd, attrs FROM trace ORDER BY run_pk, seq"
    )
    chunks: list[Chunk] = []
    for pk, group in groupby(rows, key=itemgetter(0)):
        events = list(group)
        for start in range(0, len(events), MAX_CHUNK):
            chunks.append(_v1_chunk(pk, events[start : start + MAX_CHUNK], codes))
        if len(chunks) >= 1000:
            conn.executemany(INSERT_CHUNK_V2, chunks)
            chunks.clear()
    conn.executemany(INSERT_CHUNK_V2, chunks)
    conn.execute("DROP TABLE trace")


def _v1_chunk(pk: int, rows: list[tuple[Any, ...]], codes: Mapping[str, int]) -> Chunk:
    events: list[EventRow] = [
        (seq, ts, event, step_id, step_type, name, status, dur, _int(t_in), _int(t_out), cost, None)
        for _, seq, ts, event, step_id, step_type, name, status, dur, t_in, t_out, cost, _ in rows
    ]
    texts = [r[12] for r in rows]
    attrs = None
    if any(t is not None for t in texts):
        attrs = "[" + ",".join("null" if t is None else t for t in texts) + "]"
    return (pk, rows[0][1], len(rows), *pack(events, codes), attrs)


def _int(value: Any) -> int | None:
    # a token count SQLite kept as REAL (version 1 did not check) becomes the integer it is
    return None if value is None else int(value)


def _same(value: Any) -> Any:
    return value


STEP_ATTEMPTS_DDL = """
CREATE TABLE step_attempts (
    run_pk INTEGER NOT NULL,
    step_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    type TEXT NOT NULL,
    status TEXT NOT NULL,
    started_us INTEGER,
    ended_us INTEGER,
    output TEXT,
    error TEXT,
    PRIMARY KEY (run_pk, step_id, attempt)
) WITHOUT ROWID
"""


def step_attempts_v3(conn: sqlite3.Connection) -> None:
    """Version 2 -> 3: ``step_attempts``, the attempts of a step superseded by a later one
    (``steps`` keeps each step's latest attempt), keyed by step id so a step keeps its
    history when a changed flow moves it. Version 2 kept only the latest attempt: a
    migrated store starts with no earlier ones."""
    conn.execute(STEP_ATTEMPTS_DDL)


def reviews_v5(conn: sqlite3.Connection) -> None:
    """Version 4 -> 5: an index on ``runs.status`` (the pending list reads the paused runs
    of a large store without a scan) and ``reservations``, a reviewer's lease on a paused
    run (kept apart from the run row: reserving does not change the run's version, so it
    never makes a decision taken on what a reviewer saw lose its compare-and-set)."""
    conn.execute("CREATE INDEX IF NOT EXISTS runs_status ON runs (status)")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS reservations ("
        "run_pk INTEGER PRIMARY KEY, reserved_by TEXT NOT NULL, until_us INTEGER NOT NULL)"
    )


def run_lineage_v7(conn: sqlite3.Connection) -> None:
    """Version 6 -> 7: ``runs.parent_run_id`` and ``runs.forked_at``, set when a run is
    forked from another (``Run.fork``), with an index to find a run's children. Runs of
    earlier versions were never forked: both stay NULL."""
    conn.execute("ALTER TABLE runs ADD COLUMN parent_run_id TEXT")
    conn.execute("ALTER TABLE runs ADD COLUMN forked_at TEXT")
    conn.execute(
        "CREATE INDEX runs_parent ON runs (parent_run_id) WHERE parent_run_id IS NOT NULL"
    )


# MIGRATIONS[n] upgrades a store from version n to n + 1. A migration runs inside the
# caller's transaction: it must use ``conn.execute`` / ``executemany`` only (``executescript``
# commits) and must not commit; if it raises, every migration of this open is rolled back.
MIGRATIONS: dict[int, Migration] = {
    1: trace_chunks_v2,
    2: step_attempts_v3,
    3: lambda conn: experiments_v4(conn),
    4: reviews_v5,
    5: lambda conn: vector_tables_v6(conn),
    6: run_lineage_v7,
    7: lambda conn: trace_chunk_ids_v8(conn),
}


STEPS_DDL = """
CREATE TABLE steps (
    id INTEGER PRIMARY KEY,
    run_pk INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    step_id TEXT NOT NULL,
    type TEXT NOT NULL,
    status TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    started_us INTEGER,
    ended_us INTEGER,
    output TEXT,
    error TEXT
)
"""
"""Schema version 8: a step's row id is ``run_pk << 32 | idx`` (see
:data:`~master_sdk.memory.chunks.CHUNKS_DDL` for why); version 1 keyed ``steps`` by
``(run_pk, idx)`` WITHOUT ROWID."""


def trace_chunk_ids_v8(conn: sqlite3.Connection) -> None:
    """Version 7 -> 8: ``trace_chunks`` and ``steps`` become tables keyed by row id,
    ``run_pk << 32 | first_seq`` (:data:`~master_sdk.memory.chunks.CHUNKS_DDL`) and
    ``run_pk << 32 | idx`` (:data:`STEPS_DDL`), instead of WITHOUT ROWID on
    ``(run_pk, first_seq)`` and ``(run_pk, idx)``: a run's rows are one range of row ids,
    appended at the right edge of the table's B-tree. Every row is copied as it is."""
    conn.execute("ALTER TABLE steps RENAME TO steps_v7")
    conn.execute(STEPS_DDL)
    conn.execute(
        "INSERT INTO steps (id, run_pk, idx, step_id, type, status, attempt, started_us, "  # noqa: S608  # a constant
        f"ended_us, output, error) SELECT (run_pk << {RUN_BITS}) | idx, run_pk, idx, step_id, "
        "type, status, attempt, started_us, ended_us, output, error FROM steps_v7 "
        "ORDER BY run_pk, idx"
    )
    conn.execute("DROP TABLE steps_v7")
    conn.execute("ALTER TABLE trace_chunks RENAME TO trace_chunks_v7")
    conn.execute(CHUNKS_DDL)
    conn.execute(
        "INSERT INTO trace_chunks (id, run_pk, first_seq, n, data, metrics, attrs) "  # noqa: S608  # a constant
        f"SELECT (run_pk << {RUN_BITS}) | first_seq, run_pk, first_seq, n, data, metrics, "
        "attrs FROM trace_chunks_v7 ORDER BY run_pk, first_seq"
    )
    conn.execute("DROP TABLE trace_chunks_v7")


def experiments_v4(conn: sqlite3.Connection) -> None:
    """Version 3 -> 4: the experiment tables (``memory/experiments.py``)."""
    from master_sdk.memory.sqlite.experiments import create_tables

    create_tables(conn)


def vector_tables_v6(conn: sqlite3.Connection) -> None:
    """Version 5 -> 6: the vector memory tables (see :mod:`master_sdk.memory.sqlite_vectors`)."""
    from master_sdk.memory.sqlite_vectors import create_vector_tables

    create_vector_tables(conn)


def stored_version(conn: sqlite3.Connection) -> int:
    """The schema version a store file declares (``PRAGMA user_version``; 0 when new)."""
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def refuse_newer(version: int, *, path: str) -> None:
    """Raise :class:`StoreError` when a store was written by a newer schema than this code's."""
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path}: store schema version {version} is newer than this master_sdk "
            f"understands ({SCHEMA_VERSION}); upgrade master_sdk to open it (the file was "
            "not changed)"
        )


def ensure_schema(conn: sqlite3.Connection, *, path: str) -> None:
    """Create or migrate the schema of an open connection (in autocommit mode).

    A new file gets the version 1 tables and then every migration, so new and migrated
    stores go through the same code. Everything happens in one ``BEGIN IMMEDIATE``
    transaction: a failing migration leaves the file exactly as it was.

    Raises:
        StoreError: the file is newer than this code, holds tables that are not a store,
            or a migration failed (nothing was changed).
    """
    version = stored_version(conn)
    if version == SCHEMA_VERSION:
        return
    refuse_newer(version, path=path)
    conn.execute("BEGIN IMMEDIATE")
    try:
        # re-read under the write lock: another process may have just done this
        version = stored_version(conn)
        refuse_newer(version, path=path)
        first = version
        if version == 0 and _is_empty(conn):
            for statement in SCHEMA_V1.split(";"):
                if statement.strip():
                    conn.execute(statement)
            version = 1
        elif version == 0:
            raise StoreError(
                f"{path}: this SQLite file holds tables but is not a master_sdk store; "
                "choose another store path"
            )
        while version < SCHEMA_VERSION:
            _migrate(conn, version, first=first, path=path)
            version += 1
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _migrate(conn: sqlite3.Connection, version: int, *, first: int, path: str) -> None:
    step = MIGRATIONS.get(version)
    if step is None:
        raise StoreError(
            f"{path}: no migration from store schema version {version} to {version + 1}; "
            "this master_sdk cannot open the store"
        )
    try:
        step(conn)
    except StoreError:
        raise
    except Exception as exc:
        raise StoreError(
            f"{path}: migrating the store from schema version {version} to {version + 1} "
            f"failed ({type(exc).__name__}: {exc}); nothing was changed, the store is still "
            f"at version {first}"
        ) from exc


def _is_empty(conn: sqlite3.Connection) -> bool:
    row = conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()
    return int(row[0]) == 0
