"""The SQLite store's experiment tables (schema version 4; see ``memory/experiments.py``):
the statements of ``memory/experiment_tables.py`` in SQLite's dialect.

Writes go through the store's writer (one short transaction, the store's durability);
reads through its pool of readers, like every other read.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from master_sdk.memory.experiment_tables import Dialect, SqlExperiments
from master_sdk.memory.experiments import SCHEMA


def create_tables(conn: sqlite3.Connection) -> None:
    """Schema 3 -> 4: the experiment tables (a migration; also run for new stores)."""
    for statement in SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)


def _json_text(column: str, path: tuple[str, ...]) -> str:
    return f"json_extract({column}, '$.{'.'.join(path)}')"


def _insert_key(conn: sqlite3.Connection, sql: str, values: Sequence[Any]) -> int | None:
    cursor = conn.execute(sql, values)
    return cursor.lastrowid if cursor.rowcount == 1 else None


def _many(conn: sqlite3.Connection, sql: str, rows: Sequence[Sequence[Any]]) -> None:
    conn.executemany(sql, rows)


SQLITE = Dialect(mark="?", json_text=_json_text, insert_key=_insert_key, many=_many, flag=int)


class SQLiteExperiments(SqlExperiments):
    """The :class:`~master_sdk.memory.experiments.ExperimentStore` half of ``SQLiteStore``."""

    dialect = SQLITE
