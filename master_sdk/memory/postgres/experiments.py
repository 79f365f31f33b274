"""The PostgreSQL store's experiment tables (see ``memory/experiments.py``).

The same statements as ``memory/sqlite/experiments.py`` in PostgreSQL's dialect (``%s``
parameters, ``jsonb`` paths); each write is one transaction on a pooled connection, each
read one snapshot.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from master_sdk.memory.experiments import (
    CaseRecord,
    CaseRun,
    CaseUpdate,
    ExperimentRecord,
    experiment_exists,
    experiment_not_found,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from master_sdk.memory.encoding import Encoder
    from master_sdk.memory.postgres.store import Conn

T = TypeVar("T")

_SELECT_EXPERIMENTS = (
    "SELECT e.name, e.ref, e.flow_hash, e.product_version, e.status, e.created_us, "
    "e.updated_us, e.created_by, e.params, e.error, "
    "(SELECT count(*) FROM experiment_cases c WHERE c.experiment_pk = e.pk) "
    "FROM experiments e"
)
_SELECT_CASES = (
    "SELECT c.case_key, c.idx, c.invalid, c.row, c.scores, c.error, r.run_id, r.status, "
    "r.output, r.tokens_in, r.tokens_out, r.cost_usd, r.created_us, r.updated_us, r.error, "
    "CASE WHEN r.status = 'blocked' THEN (r.state::jsonb) #>> '{violation,rule}' END "
    "FROM experiment_cases c LEFT JOIN runs r ON r.run_id = c.run_id "
    "WHERE c.experiment_pk = %s ORDER BY c.idx"
)


def _pk(conn: Conn, name: str) -> int:
    row = conn.execute("SELECT pk FROM experiments WHERE name = %s", (name,)).fetchone()
    if row is None:
        raise experiment_not_found(name)
    return int(row[0])


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


class PostgresExperiments:
    """The :class:`~master_sdk.memory.experiments.ExperimentStore` half of ``PostgresStore``."""

    if TYPE_CHECKING:  # provided by PostgresStore
        _enc: Encoder

        def _write(self, body: Callable[[Conn], T]) -> T: ...

        def _reading(self, read: Callable[[Conn], T]) -> T: ...

    def create_experiment(self, record: ExperimentRecord, cases: Sequence[CaseRecord]) -> None:
        """See :class:`~master_sdk.memory.experiments.ExperimentStore`."""
        dumps = self._enc.dumps
        params = dumps(record.params)
        rows = [
            (c.case_key, c.idx, c.invalid, dumps(c.row), c.run_id, dumps(c.scores), c.error)
            for c in cases
        ]

        def body(conn: Conn) -> None:
            found = conn.execute(
                "INSERT INTO experiments (name, ref, flow_hash, product_version, status, "
                "created_us, updated_us, created_by, params, error) "
                "VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT (name) DO NOTHING RETURNING pk",
                (
                    record.name, record.ref, record.flow_hash, record.product_version,
                    record.status, record.created_us, record.updated_us, record.created_by,
                    params, record.error,
                ),
            )  # fmt: skip
            row = found.fetchone()
            if row is None:
                raise experiment_exists(record.name)
            pk = row[0]
            conn.cursor().executemany(
                "INSERT INTO experiment_cases (experiment_pk, case_key, idx, invalid, row, "
                "run_id, scores, error) VALUES (%s,%s,%s,%s,%s,%s,%s,%s)",
                [(pk, *row) for row in rows],
            )

        self._write(body)

    def get_experiment(self, name: str) -> ExperimentRecord:
        """See :class:`~master_sdk.memory.experiments.ExperimentStore`."""
        row = self._reading(
            lambda conn: conn.execute(
                f"{_SELECT_EXPERIMENTS} WHERE e.name = %s", (name,)
            ).fetchone()
        )
        if row is None:
            raise experiment_not_found(name)
        return _experiment(row)

    def experiments(self) -> list[ExperimentRecord]:
        """See :class:`~master_sdk.memory.experiments.ExperimentStore`."""
        rows = self._reading(
            lambda conn: conn.execute(
                f"{_SELECT_EXPERIMENTS} ORDER BY e.created_us DESC, e.pk DESC"
            ).fetchall()
        )
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

        def body(conn: Conn) -> None:
            conn.execute(
                "UPDATE experiments SET status = %s, error = %s, updated_us = %s, "
                "params = coalesce(%s, params) WHERE pk = %s",
                (status, text, at_us, encoded, _pk(conn, name)),
            )

        self._write(body)

    def update_cases(self, name: str, updates: Sequence[CaseUpdate]) -> None:
        """See :class:`~master_sdk.memory.experiments.ExperimentStore`."""
        if not updates:
            return
        dumps = self._enc.dumps
        runs = [(u.run_id, u.case_key) for u in updates if u.run_id is not None]
        scores = [(dumps(u.scores), u.case_key) for u in updates if u.scores is not None]
        errors = [(self._enc.text(u.error), u.case_key) for u in updates if u.set_error]

        def body(conn: Conn) -> None:
            pk = _pk(conn, name)
            where = "WHERE experiment_pk = %s AND case_key = %s"
            conn.cursor().executemany(
                f"UPDATE experiment_cases SET run_id = %s {where}",
                [(run_id, pk, key) for run_id, key in runs],
            )
            conn.cursor().executemany(
                f"UPDATE experiment_cases SET scores = %s {where}",
                [(text, pk, key) for text, key in scores],
            )
            conn.cursor().executemany(
                f"UPDATE experiment_cases SET error = %s {where}",
                [(text, pk, key) for text, key in errors],
            )

        self._write(body)

    def claim_case(
        self, name: str, case_key: str, run_id: str, *, expected: str | None = None
    ) -> str | None:
        """See :class:`~master_sdk.memory.experiments.ExperimentStore` (one conditional
        UPDATE: the row lock orders two claims, the second sees the first's link)."""

        def body(conn: Conn) -> str | None:
            pk = _pk(conn, name)
            conn.execute(
                "UPDATE experiment_cases SET run_id = %s WHERE experiment_pk = %s "
                "AND case_key = %s AND run_id IS NOT DISTINCT FROM %s",
                (run_id, pk, case_key, expected),
            )
            row = conn.execute(
                "SELECT run_id FROM experiment_cases WHERE experiment_pk = %s AND case_key = %s",
                (pk, case_key),
            ).fetchone()
            return None if row is None else row[0]

        return self._write(body)

    def experiment_cases(self, name: str, *, rows: bool = True, raw: bool = False) -> list[CaseRun]:
        """See :class:`~master_sdk.memory.experiments.ExperimentStore`."""

        def read(conn: Conn) -> list[Any]:
            return conn.execute(_SELECT_CASES, (_pk(conn, name),)).fetchall()

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

        def read(conn: Conn) -> list[Any]:
            return conn.execute(
                "SELECT r.status, count(*) FROM experiment_cases c "
                "LEFT JOIN runs r ON r.run_id = c.run_id WHERE c.experiment_pk = %s "
                "GROUP BY r.status",
                (_pk(conn, name),),
            ).fetchall()

        return {status: int(count) for status, count in self._reading(read)}

    def tagged_runs(self, name: str) -> dict[str, str]:
        """See :class:`~master_sdk.memory.experiments.ExperimentStore`."""
        rows = self._reading(
            lambda conn: conn.execute(
                "SELECT (state::jsonb) #>> '{experiment,case}', run_id FROM runs "
                "WHERE (state::jsonb) #>> '{experiment,name}' = %s ORDER BY pk",
                (name,),
            ).fetchall()
        )
        return {key: run_id for key, run_id in rows if key is not None}
