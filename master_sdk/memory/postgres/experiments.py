"""The PostgreSQL store's experiment tables: the statements of ``memory/experiment_tables.py``
in PostgreSQL's dialect (``%s`` parameters, ``jsonb`` paths); each write is one transaction
on a pooled connection, each read one snapshot."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from master_sdk.memory.experiment_tables import Dialect, SqlExperiments


def _json_text(column: str, path: tuple[str, ...]) -> str:
    return f"({column}::jsonb) #>> '{{{','.join(path)}}}'"


def _insert_key(conn: Any, sql: str, values: Sequence[Any]) -> int | None:
    row = conn.execute(sql + " RETURNING pk", values).fetchone()
    return None if row is None else int(row[0])


def _many(conn: Any, sql: str, rows: Sequence[Sequence[Any]]) -> None:
    if rows:
        with conn.cursor() as cur:
            cur.executemany(sql, rows)


POSTGRES = Dialect(mark="%s", json_text=_json_text, insert_key=_insert_key, many=_many, flag=bool)


class PostgresExperiments(SqlExperiments):
    """The :class:`~master_sdk.memory.experiments.ExperimentStore` half of ``PostgresStore``."""

    dialect = POSTGRES
