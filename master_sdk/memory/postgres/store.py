"""The :class:`~master_sdk.memory.store.Store` protocol on a PostgreSQL server.

psycopg 3 with a ``psycopg_pool`` connection pool. Each commit is one statement on one
pooled connection, its own transaction, one round trip (``memory/postgres/writes.py``):
the run row is inserted, or updated with compare-and-set (``UPDATE ... WHERE run_id = %s
AND version = %s``), and the steps, attempts, the commit's trace block, approvals, inputs
and the flow text go with it or not at all; the hooks' ``before_commit`` runs just before
it is sent. Loading a run is one statement too. Many processes and hosts may write at
once: the database serialises what must be serialised (one row per run), nothing else.

Behind a transaction-pooling PgBouncer: no session state is used (no session ``SET``, no
temporary tables, no ``LISTEN``; the schema's advisory lock is transaction-scoped, and a
step's start relaxes ``synchronous_commit`` for its own transaction only). Prepared
statements are on for a direct connection and off behind a pooler, found out for each
connection; ``?prepare=on|off`` in the URL decides instead. An idle pooled connection the
server or the network dropped is replaced before use (see ``connecting.py``).

Values are stored as the same redacted JSON texts as in the SQLite store (``memory/
encoding.py``), so frames, export and import are equal across stores.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from master_sdk.errors import NotFound, StoreError
from master_sdk.memory import derived
from master_sdk.memory.derived import Derived
from master_sdk.memory.encoding import Encoder
from master_sdk.memory.postgres.connecting import (
    Prepare,
    connection_options,
    pooled,
    pooler_hint,
    refusal,
)
from master_sdk.memory.postgres.experiments import PostgresExperiments
from master_sdk.memory.postgres.identity import as_role, session_role
from master_sdk.memory.postgres.reads import RUN_COLS, PostgresReads
from master_sdk.memory.postgres.retention import PostgresRetention
from master_sdk.memory.postgres.reviews import PostgresReviews
from master_sdk.memory.postgres.schema import ensure_schema
from master_sdk.memory.postgres.traces import Block, encode, insert_blocks, name_codes
from master_sdk.memory.postgres.writes import REPLACE_STEPS, Statement, commit_statement
from master_sdk.memory.store import (
    ApprovalRecord,
    Changes,
    Commit,
    CommitHook,
    FlowSource,
    InputRecord,
    RunRecord,
    StepAttempt,
    StoredRun,
    TraceEvent,
    VersionConflict,
    call_after_commit,
)

if TYPE_CHECKING:
    import psycopg
    from psycopg_pool import ConnectionPool

    Conn = psycopg.Connection[tuple[Any, ...]]

T = TypeVar("T")
Scrub = Callable[[Any], Any]

INSTALL_HINT = (
    "PostgreSQL stores need psycopg 3 and psycopg_pool: pip install 'master-sdk[postgres]'"
)

_RUN_COLS = RUN_COLS


def _modules() -> tuple[Any, Any]:
    try:
        import psycopg
        import psycopg_pool
    except ImportError as exc:
        raise StoreError(f"{INSTALL_HINT} ({exc})") from None
    return psycopg, psycopg_pool


class PostgresStore(
    PostgresReads, PostgresExperiments, PostgresReviews, PostgresRetention, Derived
):
    """Runs in a PostgreSQL database (see the module docstring).

    Args:
        url: ``postgresql://user@host:port/database`` (no password in it).
        password: the role's password (from the secrets file), or None.
        scrub: redaction applied to every value before it is stored.
        hooks: observers of every commit.
        pool_size: the most connections this store holds open at once.
        connect_timeout_s: how long to wait for the server when connecting.
        identity: ``"database"``: the role the store signs in as (``role``) is recorded
            as the starter of every new run and the actor of every decision it commits.
    """

    kind = "postgresql"

    def __init__(
        self,
        url: str,
        *,
        password: str | None = None,
        scrub: Scrub | None = None,
        hooks: Sequence[CommitHook] = (),
        pool_size: int = 8,
        connect_timeout_s: float = 10.0,
        identity: Literal["given", "database"] = "given",
    ) -> None:
        psycopg, psycopg_pool = _modules()
        self._psycopg = psycopg
        self.location = url
        self.scrub: Scrub = scrub or derived.identity
        self.hooks: list[CommitHook] = list(hooks)
        self._enc = Encoder(self.scrub)
        self._closed = False
        self._close_lock = threading.Lock()
        # trace name codes known to be durable (names are never renumbered), and flow texts
        # known to be stored
        self._names: dict[str, int] = {}
        self._flows: set[str] = set()
        self.role: str | None = None
        conninfo, given = connection_options(url)
        # the server keeps the plans of statements run often, unless a pooler sits between
        # (see connecting.py)
        prepare = Prepare(given)
        kwargs: dict[str, Any] = {
            "autocommit": True,
            "prepare_threshold": prepare.threshold(),
            "connect_timeout": max(1, int(connect_timeout_s)),
            "application_name": "master_sdk",
        }
        if password is not None:
            kwargs["password"] = password
        try:
            self._pool: ConnectionPool[Any] = psycopg_pool.ConnectionPool(
                conninfo,
                min_size=1,
                max_size=max(2, pool_size),
                kwargs=kwargs,
                configure=prepare,
                open=False,
                timeout=connect_timeout_s,
            )
            self._pool.open(wait=True, timeout=connect_timeout_s)
        except Exception as exc:
            why = refusal(conninfo, kwargs) or _reason(exc)
            raise StoreError(
                f"{url}: cannot connect to the PostgreSQL server ({why}); check the "
                "host, port, database and role, and the password_ref in configs/app.yaml"
            ) from None
        self.prepared = prepare.on
        try:
            with pooled(self._pool) as conn:
                self.schema_version = ensure_schema(conn, location=url)
                # identity: database - the role this store signs in as acts, whatever a
                # caller says (see memory/postgres/identity.py)
                if identity == "database":
                    self.role = session_role(conn)
        except StoreError:
            self._pool.close()
            raise
        except psycopg.Error as exc:
            self._pool.close()
            raise self._error(exc, "while preparing its tables") from None

    # ------------------------------------------------------------------ plumbing

    def _error(self, exc: Exception, doing: str) -> StoreError:
        return StoreError(
            f"{self.location}: PostgreSQL failed {doing}: {_reason(exc)}{pooler_hint(exc)}"
        )

    @contextmanager
    def _conn(self, doing: str) -> Iterator[Conn]:
        if self._closed:
            raise StoreError(f"{self.location}: the store was closed; open the workbench again")
        psycopg = self._psycopg
        try:
            with pooled(self._pool) as conn:
                yield conn
        except (StoreError, NotFound):
            raise
        except psycopg.Error as exc:
            raise self._error(exc, doing) from None
        except Exception as exc:
            if type(exc).__module__.startswith("psycopg_pool"):
                if self._closed:
                    raise StoreError(
                        f"{self.location}: the store was closed; open the workbench again"
                    ) from None
                raise self._error(exc, doing) from None
            raise

    def _read(self, doing: str, read: Callable[[Conn], T]) -> T:
        """``read`` inside one repeatable-read, read-only transaction (one snapshot).

        In pipeline mode: ``BEGIN`` travels with the first query and ``COMMIT`` costs no
        wait, so a read costs a round trip per result it waits for, nothing more.
        """
        with self._conn(doing) as conn:
            try:
                with conn.pipeline():
                    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    got = read(conn)
                    conn.execute("COMMIT")
            except BaseException:
                self._abandon(conn)
                raise
            return got

    def _one(self, doing: str, sql: str, params: Sequence[Any]) -> tuple[Any, ...] | None:
        """The first row of one statement (its own snapshot, one round trip)."""
        with self._conn(doing) as conn:
            return conn.execute(sql, params).fetchone()

    def _reading(self, read: Callable[[Conn], T]) -> T:
        return self._read("while reading", read)

    def _write(self, body: Callable[[Conn], T]) -> T:
        with self._conn("while writing") as conn, conn.transaction():
            return body(conn)

    def transaction(self, body: Callable[[Conn], T], *, doing: str = "while writing") -> T:
        """Run ``body`` in one write transaction on a pooled connection, for tables other
        modules of ``memory/`` keep in the same database (vector collections). Commit
        hooks are not called; if ``body`` raises, nothing is written."""
        with self._conn(doing) as conn, conn.transaction():
            return body(conn)

    def read(self, query: Callable[[Conn], T], *, doing: str = "while reading") -> T:
        """Run ``query`` in one read-only repeatable-read transaction (one snapshot)."""
        return self._read(doing, query)

    # ------------------------------------------------------------------ writing

    def _run_values(self, run: RunRecord, *, new: bool = True) -> tuple[Any, ...]:
        """The ``runs`` row of ``run``; its inputs (written once, never updated) only when
        ``new``."""
        enc = self._enc
        return (
            run.run_id, run.product, run.flow, run.status, run.version, run.cursor,
            run.created_us, run.updated_us, run.flow_hash, run.product_version,
            run.created_by, run.owner, run.steps_used, run.tool_calls, run.model_calls,
            run.tokens_in, run.tokens_out, run.cost_usd, enc.dumps(run.inputs) if new else None,
            enc.dumps(run.output), enc.dumps(run.state), enc.text(run.error),
            run.parent_run_id, run.forked_at,
        )  # fmt: skip

    def _write_steps(self, conn: Conn, pk: int, steps: Sequence[StepAttempt]) -> None:
        enc = self._enc
        if not steps:
            return
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO attempts (run_pk, step_id, attempt, idx, type, status, started_us, "
                "ended_us, output, error) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (run_pk, step_id, attempt) DO UPDATE SET idx = EXCLUDED.idx, "
                "type = EXCLUDED.type, status = EXCLUDED.status, started_us = "
                "EXCLUDED.started_us, ended_us = EXCLUDED.ended_us, output = EXCLUDED.output, "
                "error = EXCLUDED.error",
                [
                    (pk, s.step_id, s.attempt, s.idx, s.type, s.status, s.started_us,
                     s.ended_us, enc.dumps(s.output), enc.text(s.error))
                    for s in steps
                ],
            )  # fmt: skip

    def _point_steps(self, conn: Conn, pk: int, steps: Sequence[StepAttempt]) -> None:
        if not steps:
            return
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO steps (run_pk, idx, step_id, attempt) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (run_pk, idx) DO UPDATE SET step_id = EXCLUDED.step_id, "
                "attempt = EXCLUDED.attempt",
                [(pk, s.idx, s.step_id, s.attempt) for s in steps],
            )

    def _write_rest(
        self,
        conn: Conn,
        pk: int,
        events: Sequence[TraceEvent],
        approvals: Sequence[ApprovalRecord],
        inputs: Sequence[InputRecord],
        learned: dict[str, int],
    ) -> None:
        enc = self._enc
        if events:
            insert_blocks(conn, pk, self._blocks(conn, events, learned))
        with conn.cursor() as cur:
            if approvals:
                cur.executemany(
                    "INSERT INTO approvals (run_pk, step_id, decision, by_, comment, at_us) "
                    "VALUES (%s, %s, %s, %s, %s, %s)",
                    [
                        (pk, a.step_id, a.decision, a.by, enc.text(a.comment), a.at_us)
                        for a in approvals
                    ],
                )
            if inputs:
                cur.executemany(
                    "INSERT INTO user_inputs (run_pk, step_id, data, by_, at_us) "
                    "VALUES (%s, %s, %s, %s, %s)",
                    [(pk, i.step_id, enc.dumps(i.data), i.by, i.at_us) for i in inputs],
                )

    def _write_flows(self, conn: Conn, flows: Sequence[FlowSource]) -> None:
        if flows:
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO flows (flow_hash, product, flow, product_version, source) "
                    "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (flow_hash) DO NOTHING",
                    [
                        (f.flow_hash, f.product, f.flow, f.product_version, self.scrub(f.source))
                        for f in flows
                    ],
                )

    def _codes(
        self, conn: Conn, wanted: set[str], learned: dict[str, int] | None
    ) -> Mapping[str, int]:
        """Codes of trace names; names this store has not seen yet cost one statement.

        Outside a transaction (``learned`` None) new codes are durable at once and go
        straight into the store's cache; inside one (an import) they go into ``learned``,
        for the caller to add once its transaction is committed.
        """
        known = self._names
        missing = [n for n in wanted if n not in known and (learned is None or n not in learned)]
        if learned is None:
            if missing:
                known.update(name_codes(conn, sorted(missing)))
            return known
        if missing:
            learned.update(name_codes(conn, sorted(missing)))
        return {**known, **learned}

    def _blocks(
        self, conn: Conn, events: Sequence[TraceEvent], learned: dict[str, int] | None = None
    ) -> list[Block]:
        return encode(events, self.scrub, self._enc.dumps, lambda w: self._codes(conn, w, learned))

    def commit(
        self,
        run: RunRecord,
        changes: Changes,
        *,
        expect_version: int | None,
        label: str,
        sync: bool = True,
    ) -> None:
        """Write ``run`` and ``changes`` in one transaction, one round trip (see
        ``memory/postgres/writes.py``)."""
        if self.role is not None:
            changes = as_role(self.role, run, changes, new=expect_version is None)
        done = Commit(run, changes, label, sync)
        source = changes.flow_source
        if source is not None and source.flow_hash in self._flows:
            source = None  # stored already (flow texts are never deleted)
        with self._conn(f"while committing run {run.run_id} ({label})") as conn:
            statement = commit_statement(
                self._run_values(run, new=expect_version is None),
                run_id=run.run_id,
                expect_version=expect_version,
                enc=self._enc,
                steps=list(changes.steps.values()),
                blocks=self._blocks(conn, changes.events) if changes.events else [],
                approvals=changes.approvals,
                inputs=changes.inputs,
                flow=source,
                flow_text=None if source is None else self.scrub(source.source),
                sync=sync,
            )
            replace = (run.run_id, expect_version) if changes.replace_steps else None
            row = self._send(conn, statement, done, replace=replace)
            if row is None:
                if expect_version is None:
                    raise StoreError(
                        f"{self.location}: run {run.run_id} exists already; nothing was written"
                    )
                now = conn.execute(
                    "SELECT status, version FROM runs WHERE run_id = %s", (run.run_id,)
                ).fetchone()
                raise VersionConflict(
                    run.run_id, None if now is None else now[0], None if now is None else now[1]
                )
        if source is not None:
            self._flows.add(source.flow_hash)
        if expect_version is None:
            run.pk = int(row[0])
        call_after_commit(self.hooks, done)

    def _send(
        self,
        conn: Conn,
        statement: Statement,
        done: Commit,
        *,
        replace: tuple[str, int | None] | None,
    ) -> tuple[Any, ...] | None:
        """Run the hooks' ``before_commit``, then the commit's statement; its row, None when
        it wrote nothing.

        The statement is its own transaction, so the hooks run just before it is sent:
        nothing of the commit is stored yet, and a hook that raises (or a process that dies
        there) leaves nothing written. A commit replacing the run's steps is two statements
        in one transaction, sent as one pipeline.
        """
        if replace is None:
            for hook in self.hooks:
                hook.before_commit(done)
            return conn.execute(statement.sql, statement.params).fetchone()
        try:
            with conn.pipeline():
                conn.execute("BEGIN")
                conn.execute(REPLACE_STEPS, replace)
                cur = conn.execute(statement.sql, statement.params)
                try:
                    for hook in self.hooks:
                        hook.before_commit(done)
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
        except BaseException:
            self._abandon(conn)
            raise
        return cur.fetchone()

    def _abandon(self, conn: Conn) -> None:
        """Roll back what a failed pipeline left open (the pool would warn otherwise)."""
        psycopg = self._psycopg
        try:
            if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                conn.rollback()
        except psycopg.Error:
            pass  # a broken connection: the pool discards it

    def write_runs(
        self,
        runs: Sequence[StoredRun],
        flows: Sequence[FlowSource],
        *,
        on_duplicate: Literal["skip", "error"] = "skip",
    ) -> list[str]:
        """Add whole runs in one transaction; returns the ids added."""
        added: list[str] = []
        learned: dict[str, int] = {}
        with self._conn("while importing runs") as conn, conn.transaction():
            ids = [r.run.run_id for r in runs]
            present = {
                str(r[0])
                for r in conn.execute("SELECT run_id FROM runs WHERE run_id = ANY(%s)", (ids,))
            }
            if present and on_duplicate == "error":
                raise StoreError(
                    f"{len(present)} run(s) are already in {self.location}: "
                    f"{', '.join(sorted(present))}; nothing was written"
                )
            for r in runs:
                if r.run.run_id in present:
                    continue
                row = conn.execute(
                    f"INSERT INTO runs ({_RUN_COLS[: _RUN_COLS.rindex(', pk')]}) VALUES "
                    f"({', '.join(['%s'] * 24)}) RETURNING pk",
                    self._run_values(r.run),
                ).fetchone()
                assert row is not None  # noqa: S101  # INSERT ... RETURNING gives a row
                pk = int(row[0])
                self._write_steps(conn, pk, r.attempts)
                latest: dict[int, StepAttempt] = {}
                for a in r.attempts:
                    if a.idx not in latest or a.attempt >= latest[a.idx].attempt:
                        latest[a.idx] = a
                self._point_steps(conn, pk, list(latest.values()))
                self._write_rest(conn, pk, r.events, r.approvals, r.inputs, learned)
                present.add(r.run.run_id)
                added.append(r.run.run_id)
            self._write_flows(conn, flows)
        self._names.update(learned)
        return added

    def close(self) -> None:
        """Close every connection (idempotent)."""
        with self._close_lock:
            if not self._closed:
                self._closed = True
                self._pool.close()

    def __repr__(self) -> str:
        return f"PostgresStore({self.location!r})"


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
