"""The PostgreSQL store's reads: runs, steps, flows, frames' tables, the audit, whole runs
for export, and what ``info()`` reports. Every read of more than one statement is one
repeatable-read, read-only transaction, so it sees one snapshot."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from master_sdk.errors import NotFound
from master_sdk.memory.postgres.traces import read_run_events, read_trace_table
from master_sdk.memory.store import (
    ApprovalRecord,
    FlowSource,
    InputRecord,
    RunRecord,
    RunTable,
    StepAttempt,
    StoredApproval,
    StoredRun,
    TraceTable,
)

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    import psycopg

    Conn = psycopg.Connection[tuple[Any, ...]]

T = TypeVar("T")

RUN_COLS = (
    "run_id, product, flow, status, version, cursor, created_us, updated_us, flow_hash, "
    "product_version, created_by, owner, steps_used, tool_calls, model_calls, tokens_in, "
    "tokens_out, cost_usd, inputs, output, state, error, parent_run_id, forked_at, pk"
)
_STEP_COLS = (
    "a.idx, a.step_id, a.type, a.status, a.attempt, a.started_us, a.ended_us, a.output, a.error"
)


# a run and its latest attempts as one row: the attempts' columns as arrays in step order
_LOAD = (
    f"SELECT {RUN_COLS}, latest.* FROM runs LEFT JOIN LATERAL (SELECT "
    + ", ".join(
        f"array_agg({c} ORDER BY s.idx)" for c in _STEP_COLS.replace("a.idx", "s.idx").split(", ")
    )
    + " FROM steps s JOIN attempts a ON a.run_pk = s.run_pk AND a.step_id = s.step_id "
    "AND a.attempt = s.attempt WHERE s.run_pk = runs.pk) latest ON true WHERE run_id = %s"
)


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


class PostgresReads:
    """The reading half of ``PostgresStore``."""

    if TYPE_CHECKING:  # provided by PostgresStore
        kind: str
        location: str
        schema_version: int

        def _conn(self, doing: str) -> AbstractContextManager[Conn]: ...

        def _read(self, doing: str, read: Callable[[Conn], T]) -> T: ...

        def _one(self, doing: str, sql: str, params: Sequence[Any]) -> tuple[Any, ...] | None: ...

        def _abandon(self, conn: Conn) -> None: ...

    # ------------------------------------------------------------------ reading

    def _pk(self, conn: Conn, run_id: str) -> int:
        row = conn.execute("SELECT pk FROM runs WHERE run_id = %s", (run_id,)).fetchone()
        if row is None:
            raise NotFound(f"no run '{run_id}' in {self.location}")
        return int(row[0])

    def _run(self, conn: Conn, run_id: str) -> RunRecord:
        row = conn.execute(f"SELECT {RUN_COLS} FROM runs WHERE run_id = %s", (run_id,)).fetchone()
        if row is None:
            raise NotFound(f"no run '{run_id}' in {self.location}")
        return _run_record(row)

    @staticmethod
    def _steps(conn: Conn, pk: int, *, every: bool) -> list[StepAttempt]:
        if every:
            sql = (
                f"SELECT {_STEP_COLS} FROM attempts a WHERE a.run_pk = %s "
                "ORDER BY a.idx, a.attempt, a.step_id"
            )
        else:
            sql = (
                f"SELECT {_STEP_COLS} FROM steps s JOIN attempts a ON a.run_pk = s.run_pk "
                "AND a.step_id = s.step_id AND a.attempt = s.attempt WHERE s.run_pk = %s "
                "ORDER BY s.idx"
            )
        rows = conn.execute(sql, (pk,)).fetchall()
        return [
            StepAttempt(
                idx=r[0], step_id=r[1], type=r[2], status=r[3], attempt=r[4],
                started_us=r[5], ended_us=r[6], output=_loads(r[7]), error=r[8],
            )
            for r in rows
        ]  # fmt: skip

    def load(self, run_id: str) -> tuple[RunRecord, list[StepAttempt]]:
        """A run and the latest attempt of each of its steps, in one statement (one
        snapshot, one round trip)."""
        row = self._one(f"while loading run {run_id}", _LOAD, (run_id,))
        if row is None:
            raise NotFound(f"no run '{run_id}' in {self.location}")
        steps = [
            StepAttempt(
                idx=idx, step_id=step_id, type=type_, status=status, attempt=attempt,
                started_us=started, ended_us=ended, output=_loads(output), error=error,
            )
            for idx, step_id, type_, status, attempt, started, ended, output, error in zip(
                *(row[25 + i] or () for i in range(9)), strict=True
            )
        ]  # fmt: skip
        return _run_record(row), steps

    def attempts(self, run_id: str) -> list[StepAttempt]:
        """Every attempt of every step of a run."""
        return self._read(
            f"while reading run {run_id}",
            lambda conn: self._steps(conn, self._pk(conn, run_id), every=True),
        )

    def step_attempts(self, run_id: str, *, attempts: bool = False) -> list[StepAttempt]:
        """The latest attempt of each step (``attempts=True``: every attempt)."""

        def read(conn: Conn) -> list[StepAttempt]:
            row = conn.execute("SELECT pk FROM runs WHERE run_id = %s", (run_id,)).fetchone()
            return [] if row is None else self._steps(conn, int(row[0]), every=attempts)

        return self._read(f"while reading the steps of run {run_id}", read)

    def find_runs(self, *, status: str | None = None) -> list[tuple[str, str | None]]:
        """``(run_id, owner)`` of runs, oldest first."""
        with self._conn("while listing runs") as conn:
            rows = conn.execute(
                "SELECT run_id, owner FROM runs WHERE %s::text IS NULL OR status = %s ORDER BY pk",
                (status, status),
            ).fetchall()
        return [(str(r[0]), r[1]) for r in rows]

    def flow_source(self, flow_hash: str) -> str | None:
        """The flow text a run started from, by its hash."""
        with self._conn("while reading a flow text") as conn:
            row = conn.execute(
                "SELECT source FROM flows WHERE flow_hash = %s", (flow_hash,)
            ).fetchone()
        return None if row is None else str(row[0])

    def flow_sources(self, flow_hashes: Sequence[str] | None = None) -> list[FlowSource]:
        """Stored flow texts (all, or those of ``flow_hashes``)."""
        with self._conn("while reading flow texts") as conn:
            rows = conn.execute(
                "SELECT flow_hash, product, flow, product_version, source FROM flows "
                "WHERE %s::text[] IS NULL OR flow_hash = ANY(%s) ORDER BY flow_hash",
                (None if flow_hashes is None else list(flow_hashes),) * 2,
            ).fetchall()
        return [FlowSource(*r) for r in rows]

    @staticmethod
    def _where(
        product: str | None, flow: str | None, status: str | None, run_id: str | None = None
    ) -> tuple[str, list[Any]]:
        clauses, params = [], []
        for column, value in (("product", product), ("flow", flow), ("status", status),
                              ("run_id", run_id)):  # fmt: skip
            if value is not None:
                clauses.append(f"r.{column} = %s")
                params.append(value)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params

    def run_table(
        self, *, product: str | None = None, flow: str | None = None, status: str | None = None
    ) -> RunTable:
        """Runs, newest first."""
        where, params = self._where(product, flow, status)
        with self._conn("while reading runs") as conn:
            rows = conn.execute(
                f"SELECT {RUN_COLS} FROM runs r{where} ORDER BY pk DESC", params
            ).fetchall()
        runs = [_run_record(r) for r in rows]
        return RunTable.of(runs)

    def trace_table(
        self,
        *,
        run_id: str | None = None,
        product: str | None = None,
        flow: str | None = None,
        status: str | None = None,
        since_us: int | None = None,
    ) -> TraceTable:
        """Trace events of the runs asked for, ordered by run then ``seq``."""
        where, params = self._where(product, flow, status, run_id)
        return self._snapshot(
            "while reading the trace",
            lambda conn: read_trace_table(conn, where, params, since_us=since_us),
        )

    def _snapshot(self, doing: str, read: Callable[[Conn], T]) -> T:
        """``read`` inside one repeatable-read, read-only transaction, not pipelined (for
        ``COPY``, which cannot be)."""
        with self._conn(doing) as conn:
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            try:
                got = read(conn)
            except BaseException:
                self._abandon(conn)
                raise
            conn.execute("COMMIT")
            return got

    def count_events(self, run_id: str | None = None) -> int:
        """How many trace events the store holds (for one run, or in all)."""
        with self._conn("while counting events") as conn:
            row = conn.execute(
                "SELECT coalesce(sum(b.n), 0) FROM trace_blocks b JOIN runs r ON r.pk = b.run_pk "
                "WHERE %s::text IS NULL OR r.run_id = %s",
                (run_id, run_id),
            ).fetchone()
        return int(row[0]) if row is not None else 0

    def approvals(
        self, *, product: str | None = None, flow: str | None = None
    ) -> list[StoredApproval]:
        """The approval audit, oldest first."""
        where, params = self._where(product, flow, None)
        with self._conn("while reading approvals") as conn:
            rows = conn.execute(
                "SELECT r.run_id, r.product, r.flow, a.step_id, a.decision, a.by_, a.comment, "
                f"a.at_us FROM approvals a JOIN runs r ON r.pk = a.run_pk{where} "
                "ORDER BY a.at_us, r.pk, a.n",
                params,
            ).fetchall()
        return [StoredApproval(r[0], r[1], r[2], ApprovalRecord(*r[3:])) for r in rows]

    def read_runs(self, run_ids: Sequence[str] | None = None) -> Iterator[StoredRun]:
        """Everything about each run, from one snapshot (a repeatable-read transaction)."""

        def read(conn: Conn) -> list[StoredRun]:
            ids = (
                [str(r[0]) for r in conn.execute("SELECT run_id FROM runs ORDER BY pk")]
                if run_ids is None
                else list(run_ids)
            )
            out = []
            for rid in ids:
                run = self._run(conn, rid)
                pk = run.pk or 0
                events = read_run_events(conn, pk)
                approvals = [
                    ApprovalRecord(*r)
                    for r in conn.execute(
                        "SELECT step_id, decision, by_, comment, at_us FROM approvals "
                        "WHERE run_pk = %s ORDER BY n",
                        (pk,),
                    )
                ]
                inputs = [
                    InputRecord(r[0], _loads(r[1]), r[2], r[3])
                    for r in conn.execute(
                        "SELECT step_id, data, by_, at_us FROM user_inputs WHERE run_pk = %s "
                        "ORDER BY n",
                        (pk,),
                    )
                ]
                out.append(
                    StoredRun(run, self._steps(conn, pk, every=True), events, approvals, inputs)
                )
            return out

        return iter(self._read("while reading runs", read))

    # ------------------------------------------------------------------ about the store

    def info(self) -> dict[str, Any]:
        """Where the store is, its schema version, the server's durability settings and
        run counts by status."""

        def read(conn: Conn) -> dict[str, Any]:
            counts = {
                str(s): int(n)
                for s, n in conn.execute("SELECT status, count(*) FROM runs GROUP BY status")
            }
            sync = conn.execute("SELECT current_setting('synchronous_commit')").fetchone()
            version = conn.execute("SELECT current_setting('server_version')").fetchone()
            return {"counts": counts, "sync": sync, "server": version}

        got = self._read("while reading its settings", read)
        counts = got["counts"]
        return {
            "kind": self.kind,
            "path": self.location,
            "schema_version": self.schema_version,
            "server_version": None if got["server"] is None else str(got["server"][0]),
            "journal_mode": "wal (PostgreSQL)",
            "synchronous": None if got["sync"] is None else str(got["sync"][0]),
            "busy_timeout_ms": 0,
            "integrity": "ok",
            "runs": sum(counts.values()),
            "runs_by_status": dict(sorted(counts.items())),
        }


def _run_record(r: Sequence[Any]) -> RunRecord:
    return RunRecord(
        run_id=r[0], product=r[1], flow=r[2], status=r[3], version=r[4], cursor=r[5],
        created_us=r[6], updated_us=r[7], flow_hash=r[8], product_version=r[9],
        created_by=r[10], owner=r[11], steps_used=r[12], tool_calls=r[13],
        model_calls=r[14], tokens_in=r[15], tokens_out=r[16], cost_usd=r[17],
        inputs=_loads(r[18]), output=_loads(r[19]), state=_loads(r[20]) or {},
        error=r[21], parent_run_id=r[22], forked_at=r[23], pk=r[24],
    )  # fmt: skip
