"""The SQLite schema, its version (``PRAGMA user_version``) and migrations.

A store written by an older schema is migrated in place inside one transaction; a
store from a newer version is refused. Each release that changes the schema appends a
migration to :data:`MIGRATIONS` and bumps :data:`SCHEMA_VERSION`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from master_sdk.errors import StoreError

if TYPE_CHECKING:
    import sqlite3

SCHEMA_VERSION = 1

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

# MIGRATIONS[n] upgrades a store from version n to n + 1. A migration runs inside the
# caller's transaction: it must use ``conn.execute`` only (``executescript`` commits) and
# must not commit; if it raises, every migration of this open is rolled back.
MIGRATIONS: dict[int, Migration] = {}


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
