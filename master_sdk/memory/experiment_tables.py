"""The experiment tables' statements, written once for every SQL store
(:class:`~master_sdk.memory.experiments.ExperimentStore` on SQLite and PostgreSQL).

A store mixes in :class:`SqlExperiments` and names its :class:`Dialect`: how parameters
are marked, how a text field is read out of a JSON column, how a new experiment's key comes
back and how many rows are written at once. The statements are written with ``?`` marks
(none of them holds a literal ``?``) and translated once per dialect.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from master_sdk.memory.experiments import (
    CaseRecord,
    CaseRun,
    CaseUpdate,
    ExperimentRecord,
    experiment_exists,
    experiment_not_found,
)

if TYPE_CHECKING:
    from master_sdk.memory.encoding import Encoder

T = TypeVar("T")
Conn = Any  # a DB-API connection of the store's driver


@dataclass(frozen=True, slots=True)
class Dialect:
    """What differs between the SQL stores here.

    Attributes:
        mark: the parameter mark (``?`` or ``%s``).
        json_text: SQL reading the text at a path (``("a", "b")``) of a JSON column.
        insert_key: runs an ``INSERT`` of one experiment; its ``pk``, None when the name is
            taken (the statement ends in ``ON CONFLICT (name) DO NOTHING``).
        many: runs one statement for each row of parameters.
        flag: a boolean as the driver stores it.
    """

    mark: str
    json_text: Callable[[str, tuple[str, ...]], str]
    insert_key: Callable[[Conn, str, Sequence[Any]], int | None]
    many: Callable[[Conn, str, Sequence[Sequence[Any]]], None]
    flag: Callable[[bool], Any]

    def sql(self, text: str) -> str:
        """``text`` with this dialect's parameter marks."""
        return text if self.mark == "?" else text.replace("?", self.mark)


_SELECT_EXPERIMENTS = (
    "SELECT e.name, e.ref, e.flow_hash, e.product_version, e.status, e.created_us, "
    "e.updated_us, e.created_by, e.params, e.error, "
    "(SELECT count(*) FROM experiment_cases c WHERE c.experiment_pk = e.pk) "
    "FROM experiments e"
)
_INSERT_EXPERIMENT = (
    "INSERT INTO experiments (name, ref, flow_hash, product_version, status, created_us, "
    "updated_us, created_by, params, error) VALUES (?,?,?,?,?,?,?,?,?,?) "
    "ON CONFLICT (name) DO NOTHING"
)
_INSERT_CASES = (
    "INSERT INTO experiment_cases (experiment_pk, case_key, idx, invalid, row, run_id, "
    "scores, error) VALUES (?,?,?,?,?,?,?,?)"
)
_CASE_WHERE = "WHERE experiment_pk = ? AND case_key = ?"


@cache
def _select_cases(dialect: Dialect) -> str:
    rule = dialect.json_text("r.state", ("violation", "rule"))
    return dialect.sql(
        "SELECT c.case_key, c.idx, c.invalid, c.row, c.scores, c.error, r.run_id, r.status, "  # noqa: S608  # constant expressions
        "r.output, r.tokens_in, r.tokens_out, r.cost_usd, r.created_us, r.updated_us, r.error, "
        f"CASE WHEN r.status = 'blocked' THEN {rule} END "
        "FROM experiment_cases c LEFT JOIN runs r ON r.run_id = c.run_id "
        "WHERE c.experiment_pk = ? ORDER BY c.idx"
    )


@cache
def _select_tagged(dialect: Dialect) -> str:
    case = dialect.json_text("state", ("experiment", "case"))
    name = dialect.json_text("state", ("experiment", "name"))
    return dialect.sql(f"SELECT {case}, run_id FROM runs WHERE {name} = ? ORDER BY pk")  # noqa: S608  # constant expressions


def _loads(text: str | None) -> Any:
    return json.loads(text) if text is not None else None


def _raw(text: str | None) -> Any:
    return text


def _empty(text: str | None) -> Any:
    return {}


def _experiment(row: Sequence[Any]) -> ExperimentRecord:
    return ExperimentRecord(
        name=row[0], ref=row[1], flow_hash=row[2], product_version=row[3], status=row[4],
        created_us=row[5], updated_us=row[6], created_by=row[7],
        params=json.loads(row[8]) if row[8] else None, error=row[9], cases=int(row[10]),
    )  # fmt: skip


class SqlExperiments:
    """The :class:`~master_sdk.memory.experiments.ExperimentStore` half of a SQL store."""

    dialect: ClassVar[Dialect]

    if TYPE_CHECKING:  # provided by the store
        _enc: Encoder

        def _write(self, body: Callable[[Conn], T]) -> T: ...

        def _reading(self, read: Callable[[Conn], T]) -> T: ...

    def _experiment_pk(self, conn: Conn, name: str) -> int:
        row = conn.execute(
            self.dialect.sql("SELECT pk FROM experiments WHERE name = ?"), (name,)
        ).fetchone()
        if row is None:
            raise experiment_not_found(name)
        return int(row[0])

    def create_experiment(self, record: ExperimentRecord, cases: Sequence[CaseRecord]) -> None:
        """See :class:`~master_sdk.memory.experiments.ExperimentStore`."""
        dumps, d = self._enc.dumps, self.dialect
        rows = [
            (c.case_key, c.idx, d.flag(c.invalid), dumps(c.row), c.run_id, dumps(c.scores),
             c.error)
            for c in cases
        ]  # fmt: skip
        values = (
            record.name, record.ref, record.flow_hash, record.product_version, record.status,
            record.created_us, record.updated_us, record.created_by, dumps(record.params),
            record.error,
        )  # fmt: skip

        def body(conn: Conn) -> None:
            pk = d.insert_key(conn, d.sql(_INSERT_EXPERIMENT), values)
            if pk is None:
                raise experiment_exists(record.name)
            d.many(conn, d.sql(_INSERT_CASES), [(pk, *row) for row in rows])

        self._write(body)

    def get_experiment(self, name: str) -> ExperimentRecord:
        """See :class:`~master_sdk.memory.experiments.ExperimentStore`."""
        sql = self.dialect.sql(f"{_SELECT_EXPERIMENTS} WHERE e.name = ?")
        row = self._reading(lambda conn: conn.execute(sql, (name,)).fetchone())
        if row is None:
            raise experiment_not_found(name)
        return _experiment(row)

    def experiments(self) -> list[ExperimentRecord]:
        """See :class:`~master_sdk.memory.experiments.ExperimentStore`."""
        sql = f"{_SELECT_EXPERIMENTS} ORDER BY e.created_us DESC, e.pk DESC"
        rows = self._reading(lambda conn: conn.execute(sql).fetchall())
        return [_experiment(r) for r in rows]

    def set_experiment_status(
        self,
        name: str,
        status: str,
        *,
        error: str | None,
        at_us: int,
        params: dict[str, Any] | None = None,
    ) -> None:
        """See :class:`~master_sdk.memory.experiments.ExperimentStore`."""
        text = self._enc.text(error)
        encoded = self._enc.dumps(params) if params is not None else None
        sql = self.dialect.sql(
            "UPDATE experiments SET status = ?, error = ?, updated_us = ?, "
            "params = coalesce(?, params) WHERE pk = ?"
        )

        def body(conn: Conn) -> None:
            conn.execute(sql, (status, text, at_us, encoded, self._experiment_pk(conn, name)))

        self._write(body)

    def update_cases(self, name: str, updates: Sequence[CaseUpdate]) -> None:
        """See :class:`~master_sdk.memory.experiments.ExperimentStore`."""
        if not updates:
            return
        dumps, d = self._enc.dumps, self.dialect
        changes: dict[str, list[tuple[Any, str]]] = {
            "run_id": [(u.run_id, u.case_key) for u in updates if u.run_id is not None],
            "scores": [(dumps(u.scores), u.case_key) for u in updates if u.scores is not None],
            "error": [(self._enc.text(u.error), u.case_key) for u in updates if u.set_error],
        }

        def body(conn: Conn) -> None:
            pk = self._experiment_pk(conn, name)
            for column, values in changes.items():
                d.many(
                    conn,
                    d.sql(f"UPDATE experiment_cases SET {column} = ? {_CASE_WHERE}"),  # noqa: S608  # constant names
                    [(value, pk, key) for value, key in values],
                )

        self._write(body)

    def claim_case(
        self, name: str, case_key: str, run_id: str, *, expected: str | None = None
    ) -> str | None:
        """See :class:`~master_sdk.memory.experiments.ExperimentStore` (one conditional
        UPDATE under the store's write lock or the row's lock, so two claims are ordered
        and the second sees the first's link)."""
        d = self.dialect
        held = "run_id IS NULL" if expected is None else "run_id = ?"
        update = d.sql(f"UPDATE experiment_cases SET run_id = ? {_CASE_WHERE} AND {held}")  # noqa: S608  # constant text
        select = d.sql(f"SELECT run_id FROM experiment_cases {_CASE_WHERE}")  # noqa: S608  # constant text

        def body(conn: Conn) -> str | None:
            pk = self._experiment_pk(conn, name)
            values: tuple[Any, ...] = (run_id, pk, case_key)
            conn.execute(update, values if expected is None else (*values, expected))
            row = conn.execute(select, (pk, case_key)).fetchone()
            return None if row is None else row[0]

        return self._write(body)

    def experiment_cases(self, name: str, *, rows: bool = True, raw: bool = False) -> list[CaseRun]:
        """See :class:`~master_sdk.memory.experiments.ExperimentStore`."""
        sql = _select_cases(self.dialect)

        def read(conn: Conn) -> list[Any]:
            return list(conn.execute(sql, (self._experiment_pk(conn, name),)).fetchall())

        found = self._reading(read)
        parse: Any = _raw if raw else _loads
        parse_row: Any = parse if rows else _empty
        return [
            CaseRun(
                case_key=r[0], idx=r[1], invalid=bool(r[2]), row=parse_row(r[3]),
                scores=parse(r[4]), case_error=r[5], run_id=r[6], status=r[7],
                output=parse(r[8]), tokens_in=r[9], tokens_out=r[10], cost_usd=r[11],
                created_us=r[12], updated_us=r[13], run_error=r[14], blocked_rule=r[15],
            )
            for r in found
        ]  # fmt: skip

    def case_statuses(self, name: str) -> dict[str | None, int]:
        """See :class:`~master_sdk.memory.experiments.ExperimentStore`."""
        sql = self.dialect.sql(
            "SELECT r.status, count(*) FROM experiment_cases c "
            "LEFT JOIN runs r ON r.run_id = c.run_id WHERE c.experiment_pk = ? "
            "GROUP BY r.status"
        )

        def read(conn: Conn) -> list[Any]:
            return list(conn.execute(sql, (self._experiment_pk(conn, name),)).fetchall())

        return {status: int(count) for status, count in self._reading(read)}

    def tagged_runs(self, name: str) -> dict[str, str]:
        """See :class:`~master_sdk.memory.experiments.ExperimentStore`."""
        sql = _select_tagged(self.dialect)
        rows = self._reading(lambda conn: conn.execute(sql, (name,)).fetchall())
        return {key: run_id for key, run_id in rows if key is not None}
