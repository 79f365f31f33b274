"""The embedded SQLite store: WAL, busy timeout, one ``BEGIN IMMEDIATE`` per commit.

Every write is one short transaction that never spans a tool or model call. The run row
is written with compare-and-set on its ``version``, so two processes resuming the same
pause cannot both win. Everything serialised passes through the redaction ``scrub``
callable first: this is the choke point between a run and the disk.
"""

from __future__ import annotations

import json
import random
import re
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from master_sdk.errors import NotFound, StoreBusy, StoreError
from master_sdk.memory.chunks import INSERT_CHUNK, NewNames, attrs_text, pack
from master_sdk.memory.records import Changes, RunRow, StepRow, VersionConflict
from master_sdk.memory.schema import PAGE_SIZE, ensure_schema, refuse_newer, stored_version

if TYPE_CHECKING:
    import pandas as pd

    from master_sdk.memory.transfer import TransferReport

Scrub = Callable[[Any], Any]

_RUN_COLUMNS = (
    "run_id, product, flow, status, version, cursor, created_us, updated_us, flow_hash, "
    "product_version, created_by, owner, steps_used, tool_calls, model_calls, tokens_in, "
    "tokens_out, cost_usd, inputs, output, state, error"
)
_INSERT_RUN = f"INSERT INTO runs ({_RUN_COLUMNS}) VALUES ({', '.join('?' * 22)})"  # noqa: S608  # constants
_UPDATE_RUN = (
    "UPDATE runs SET status=?, version=?, cursor=?, updated_us=?, owner=?, steps_used=?, "
    "tool_calls=?, model_calls=?, tokens_in=?, tokens_out=?, cost_usd=?, output=?, state=?, "
    "error=?, flow_hash=?, product_version=? WHERE pk=? AND version=?"
)
_UPSERT_STEP = (
    "INSERT INTO steps (run_pk, idx, step_id, type, status, attempt, started_us, ended_us, "
    "output, error) VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT (run_pk, idx) DO UPDATE SET "
    "status=excluded.status, attempt=excluded.attempt, started_us=excluded.started_us, "
    "ended_us=excluded.ended_us, output=excluded.output, error=excluded.error"
)
_INSERT_APPROVAL = "INSERT INTO approvals VALUES (?,?,?,?,?,?)"
_INSERT_INPUT = "INSERT INTO user_inputs VALUES (?,?,?,?,?)"
_INSERT_FLOW = "INSERT OR IGNORE INTO flow_versions VALUES (?,?,?,?,?)"

_NULL_FINDING = re.compile(r"NULL value in (\w+)\.(\w+)")

_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str).encode


# waits between tries for the write lock: first about 0.05 ms, doubling up to about 0.2 ms
_FIRST_WAIT_S = 0.00005
_LAST_WAIT_S = 0.0002
T = TypeVar("T")


TRACE_REDACTED: tuple[str, ...] = ("attrs",)
"""Columns of :meth:`SQLiteStore.trace_frame` redacted by the store's ``scrub`` as they are
built (once per distinct chunk ``attrs`` text): a reader holding the same redactor need not
walk them again."""


def _identity(value: Any) -> Any:
    return value


class SQLiteStore:
    """A run store in one SQLite file (see module docstring).

    Opening checks, in this order, before anything is written: the file's folder is not
    on a network filesystem (unless ``allow_network``), the file is not from a newer
    schema; then WAL and ``synchronous`` are set and read back, and an older schema is
    migrated.

    Args:
        path: the database file (its folder is created).
        synchronous: ``FULL`` (default: a committed step survives power loss) or ``NORMAL``.
        busy_timeout_ms: how long a writer waits for another process's lock.
        scrub: redaction applied to every value before it is serialised.
        before_commit: called with the commit's label just before ``COMMIT`` (crash tests).
        allow_network: open a store on a network filesystem anyway (with a warning).
        sync_step_starts: with ``FULL``, fsync commits that only record a step's start
            too (``commit(..., sync=False)``); by default those ride on the next fsync.

    Raises:
        StoreBusy: another process held the store locked beyond the busy timeout.
        StoreError: the file cannot be a store here (see above); the message says why.
    """

    def __init__(
        self,
        path: Path,
        *,
        synchronous: str = "FULL",
        busy_timeout_ms: int = 5000,
        scrub: Scrub | None = None,
        before_commit: Callable[[str], None] | None = None,
        allow_network: bool = False,
        sync_step_starts: bool = False,
    ) -> None:
        self.path = path
        self.synchronous = synchronous
        self.busy_timeout_ms = busy_timeout_ms
        self.sync_step_starts = sync_step_starts
        self.scrub: Scrub = scrub or _identity
        self.before_commit = before_commit
        self._known_flows: set[str] = set()
        # trace name codes this process has seen committed (see memory/chunks.py)
        self._names: dict[str, int] = {}
        if synchronous not in ("FULL", "NORMAL"):
            raise StoreError(f"synchronous must be FULL or NORMAL, not {synchronous!r}")
        path.parent.mkdir(parents=True, exist_ok=True)
        _check_local(path, allow_network)
        self.conn = sqlite3.connect(
            str(path),
            isolation_level=None,
            check_same_thread=False,
            timeout=busy_timeout_ms / 1000,
            cached_statements=64,
        )
        try:
            self.conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            refuse_newer(stored_version(self.conn), path=str(path))
            # only a new, empty file takes it; an existing store keeps its own
            self.conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
            self._configure()
            ensure_schema(self.conn, path=str(path))
            # From here on waits are ours (see _acquire): SQLite's own busy handler sleeps
            # 1, 2, 5, 10... ms between tries, far longer than a commit holds the lock, which
            # starves writers in other processes.
            self.conn.execute("PRAGMA busy_timeout = 0")
        except sqlite3.OperationalError as exc:
            self.conn.close()
            if _busy(exc):
                raise StoreBusy(
                    f"{path}: the store is locked by another process beyond the busy timeout "
                    f"({busy_timeout_ms} ms) while opening it; try again"
                ) from None
            raise StoreError(f"{path}: cannot open the store: {exc}") from None
        except sqlite3.DatabaseError as exc:
            self.conn.close()
            raise StoreError(f"{path}: cannot open the store: {exc}") from None
        except BaseException:
            self.conn.close()
            raise

    def _configure(self) -> None:
        conn = self.conn
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"{self.path}: could not switch the store to WAL (got {mode})")
        conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        level = conn.execute("PRAGMA synchronous").fetchone()[0]
        if int(level) != {"NORMAL": 1, "FULL": 2}[self.synchronous]:
            raise StoreError(f"{self.path}: PRAGMA synchronous did not take ({level})")
        waits = conn.execute("PRAGMA busy_timeout").fetchone()[0]
        if int(waits) != int(self.busy_timeout_ms):
            raise StoreError(f"{self.path}: PRAGMA busy_timeout did not take ({waits})")

    def _dumps(self, value: Any) -> str | None:
        if value is None:
            return None
        return _encode(self.scrub(value))

    def _acquire(self) -> None:
        """``BEGIN IMMEDIATE``, retried with short jittered sleeps until the busy timeout.

        A commit holds the write lock for well under a millisecond (an fsync at most), so
        waiting 0.05-0.2 ms between tries hands the lock over quickly between processes.
        """
        conn = self.conn
        deadline = 0.0
        delay = _FIRST_WAIT_S
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if not _busy(exc):
                    raise StoreError(f"{self.path}: {exc}") from None
            now = time.monotonic()
            if not deadline:
                deadline = now + self.busy_timeout_ms / 1000
            elif now >= deadline:
                raise StoreBusy(
                    f"{self.path}: the store is locked by another process beyond the busy "
                    f"timeout ({self.busy_timeout_ms} ms); nothing was written, try again"
                )
            time.sleep(delay * (0.5 + random.random()))  # noqa: S311  # jitter, not secrets
            delay = min(delay * 2, _LAST_WAIT_S)

    def _reading(self, read: Callable[[], T]) -> T:
        """Run a read, retrying while another process holds an exclusive lock (WAL
        recovery, a truncating checkpoint): reads never wait otherwise."""
        deadline = time.monotonic() + self.busy_timeout_ms / 1000
        delay = _FIRST_WAIT_S
        while True:
            try:
                return read()
            except sqlite3.OperationalError as exc:
                if not _busy(exc):
                    raise StoreError(f"{self.path}: cannot read: {exc}") from None
                if time.monotonic() >= deadline:
                    raise StoreBusy(f"{self.path}: the store is busy ({exc}); try again") from None
            time.sleep(delay * (0.5 + random.random()))  # noqa: S311  # jitter, not secrets
            delay = min(delay * 2, _LAST_WAIT_S)

    @contextmanager
    def _write(self, label: str, *, sync: bool = True) -> Iterator[sqlite3.Connection]:
        conn = self.conn
        # The safety level can only change outside a transaction: set it around this one.
        relaxed = not sync and self.synchronous == "FULL" and not self.sync_step_starts
        if relaxed:
            conn.execute("PRAGMA synchronous = NORMAL")
        try:
            self._acquire()
            try:
                yield conn
                if self.before_commit is not None:
                    self.before_commit(label)
                conn.execute("COMMIT")
            except sqlite3.Error as exc:  # disk full, I/O error, constraint: nothing written
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise StoreError(
                    f"{self.path}: could not write ({exc}); nothing was written"
                ) from exc
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        finally:
            if relaxed:
                conn.execute("PRAGMA synchronous = FULL")

    def commit(
        self,
        run: RunRow,
        changes: Changes,
        *,
        expect_version: int | None,
        label: str,
        sync: bool = True,
    ) -> None:
        """Write a run and one step's changes in one transaction (see :class:`Store`)."""
        dumps = self._dumps
        state = dumps(run.state)
        output = dumps(run.output)
        error = self.scrub(run.error) if run.error else None
        events = changes.events
        packed: tuple[bytes, bytes | None] | None = None
        attrs: str | None = None
        names: NewNames | None = None
        if events:
            # the commit's events as one chunk, encoded before the write lock is taken
            # unless a name needs a new code (which is read back inside the transaction)
            attrs = attrs_text(events, dumps)
            with suppress(KeyError):
                packed = pack(events, self._names)
        # Everything else is serialised (and redacted) before the lock too: other processes
        # wait for it only while SQL runs and the WAL is synced.
        inputs = dumps(run.inputs) if expect_version is None else None
        steps = [
            (
                s.idx,
                s.step_id,
                s.type,
                s.status,
                s.attempt,
                s.started_us,
                s.ended_us,
                dumps(s.output),
                self.scrub(s.error) if s.error else None,
            )
            for s in changes.steps.values()
        ]
        approvals = [
            (step, decision, by, self.scrub(comment) if comment else None, at)
            for step, decision, by, comment, at in changes.approvals
        ]
        given = [(step, dumps(data), by, at) for step, data, by, at in changes.inputs]
        flow_source = changes.flow_source
        if flow_source is not None and flow_source[0] in self._known_flows:
            flow_source = None
        elif flow_source is not None:
            # the flow's text holds its template constants: redacted like everything else
            flow_source = (*flow_source[:4], self.scrub(flow_source[4]))
        with self._write(label, sync=sync) as conn:
            if expect_version is None:
                cur = conn.execute(
                    _INSERT_RUN,
                    (
                        run.run_id,
                        run.product,
                        run.flow,
                        run.status,
                        run.version,
                        run.cursor,
                        run.created_us,
                        run.updated_us,
                        run.flow_hash,
                        run.product_version,
                        run.created_by,
                        run.owner,
                        run.steps_used,
                        run.tool_calls,
                        run.model_calls,
                        run.tokens_in,
                        run.tokens_out,
                        run.cost_usd,
                        inputs,
                        output,
                        state,
                        error,
                    ),
                )
                run.pk = cur.lastrowid
            else:
                cur = conn.execute(
                    _UPDATE_RUN,
                    (
                        run.status,
                        run.version,
                        run.cursor,
                        run.updated_us,
                        run.owner,
                        run.steps_used,
                        run.tool_calls,
                        run.model_calls,
                        run.tokens_in,
                        run.tokens_out,
                        run.cost_usd,
                        output,
                        state,
                        error,
                        run.flow_hash,
                        run.product_version,
                        run.pk,
                        expect_version,
                    ),
                )
                if cur.rowcount != 1:
                    row = conn.execute(
                        "SELECT status, version FROM runs WHERE pk = ?", (run.pk,)
                    ).fetchone()
                    raise VersionConflict(run.run_id, *(row or (None, None)))
            pk = run.pk
            if changes.replace_steps:
                conn.execute("DELETE FROM steps WHERE run_pk = ?", (pk,))
            if steps:
                conn.executemany(_UPSERT_STEP, [(pk, *row) for row in steps])
            if events:
                if packed is None:
                    names = NewNames(conn, self._names, self.scrub)
                    packed = pack(events, names)
                conn.execute(INSERT_CHUNK, (pk, events[0][0], len(events), *packed, attrs))
            if approvals:
                conn.executemany(_INSERT_APPROVAL, [(pk, *row) for row in approvals])
            if given:
                conn.executemany(_INSERT_INPUT, [(pk, *row) for row in given])
            if flow_source is not None:
                conn.execute(_INSERT_FLOW, flow_source)
        if changes.flow_source is not None:
            self._known_flows.add(changes.flow_source[0])
        if names is not None:
            self._names.update(names.added)

    def load(self, run_id: str) -> tuple[RunRow, list[StepRow]]:
        """A run and its steps (see :class:`Store`)."""
        return self._reading(lambda: self._load(run_id))

    def _load(self, run_id: str) -> tuple[RunRow, list[StepRow]]:
        row = self.conn.execute(
            f"SELECT {_RUN_COLUMNS}, pk FROM runs WHERE run_id = ?",  # noqa: S608  # constants
            (run_id,),
        ).fetchone()
        if row is None:
            raise NotFound(f"no run '{run_id}' in {self.path}")
        run = RunRow(*row[:18])
        run.inputs = _loads(row[18])
        run.output = _loads(row[19])
        run.state = _loads(row[20]) or {}
        run.error = row[21]
        run.pk = row[22]
        steps = [
            StepRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], _loads(r[7]), r[8])
            for r in self.conn.execute(
                "SELECT idx, step_id, type, status, attempt, started_us, ended_us, output, error "
                "FROM steps WHERE run_pk = ? ORDER BY idx",
                (run.pk,),
            )
        ]
        return run, steps

    def find_runs(self, *, status: str | None = None) -> list[tuple[str, str | None]]:
        """``(run_id, owner)`` of runs, optionally with one status."""
        return self._reading(lambda: self._find_runs(status))

    def _find_runs(self, status: str | None) -> list[tuple[str, str | None]]:
        if status is None:
            rows = self.conn.execute("SELECT run_id, owner FROM runs ORDER BY pk")
        else:
            rows = self.conn.execute(
                "SELECT run_id, owner FROM runs WHERE status = ? ORDER BY pk", (status,)
            )
        return [(r[0], r[1]) for r in rows]

    def flow_source(self, flow_hash: str) -> str | None:
        """The flow text a run started from, by its hash."""
        row = self._reading(
            lambda: self.conn.execute(
                "SELECT source FROM flow_versions WHERE flow_hash = ?", (flow_hash,)
            ).fetchone()
        )
        return None if row is None else str(row[0])

    def runs_frame(
        self, *, product: str | None = None, flow: str | None = None, status: str | None = None
    ) -> pd.DataFrame:
        """The run list (columns in the README)."""
        from master_sdk.memory.frames import runs_frame

        return self._reading(
            lambda: runs_frame(self.conn, product=product, flow=flow, status=status)
        )

    def trace_frame(
        self,
        *,
        run_id: str | None = None,
        product: str | None = None,
        flow: str | None = None,
        status: str | None = None,
        since_us: int | None = None,
    ) -> pd.DataFrame:
        """Trace events as a DataFrame (columns in the README); the columns named in
        :data:`TRACE_REDACTED` have passed through this store's ``scrub`` on the way out."""
        from master_sdk.memory.frames import trace_frame

        scrub = None if self.scrub is _identity else self.scrub
        return self._reading(
            lambda: trace_frame(
                self.conn,
                self.path,
                run_id=run_id,
                product=product,
                flow=flow,
                status=status,
                since_us=since_us,
                redact=scrub,
            )
        )

    def count_events(self, run_id: str | None = None) -> int:
        """How many trace events the store holds (for one run, or in all)."""
        params: tuple[str, ...] = ()
        if run_id is None:
            sql = "SELECT coalesce(sum(n), 0) FROM trace_chunks"
        else:
            sql = (
                "SELECT coalesce(sum(n), 0) FROM trace_chunks "
                "WHERE run_pk = (SELECT pk FROM runs WHERE run_id = ?)"
            )
            params = (run_id,)
        return self._reading(lambda: int(self.conn.execute(sql, params).fetchone()[0]))

    def steps_frame(self, run_id: str) -> pd.DataFrame:
        """One row per step of a run."""
        from master_sdk.memory.frames import steps_frame

        return self._reading(lambda: steps_frame(self.conn, run_id))

    def approvals_frame(
        self, *, product: str | None = None, flow: str | None = None
    ) -> pd.DataFrame:
        """The approval audit."""
        from master_sdk.memory.frames import approvals_frame

        return self._reading(lambda: approvals_frame(self.conn, product=product, flow=flow))

    def integrity_check(self) -> str:
        """``PRAGMA integrity_check``: ``"ok"`` when healthy, else its findings joined.

        SQLite 3.40.0 to 3.41.0 report NOT NULL columns of WITHOUT ROWID tables declared
        before a primary-key column (``approvals.decision``, ``user_inputs.data``) as
        holding NULLs when they do not; each such finding is checked against the rows and
        kept only if a NULL is really there.
        """
        findings = [str(r[0]) for r in self.conn.execute("PRAGMA integrity_check")]
        real = [f for f in findings if f != "ok" and not self._false_null(f)]
        return "; ".join(real) if real else "ok"

    def _false_null(self, finding: str) -> bool:
        match = _NULL_FINDING.fullmatch(finding)
        if match is None:
            return False
        table, column = match.groups()
        known = {r[1] for r in self.conn.execute(f"PRAGMA table_info({table})")}
        if column not in known:
            return False
        # typeof() is computed per row, so the planner cannot fold the test away on the
        # strength of the NOT NULL constraint (as it may with ``IS NULL``)
        hit = self.conn.execute(
            f'SELECT 1 FROM "{table}" WHERE typeof("{column}") = \'null\' LIMIT 1'  # noqa: S608  # names from the schema
        ).fetchone()
        return hit is None

    def info(self) -> dict[str, Any]:
        """The store's file, schema version, durability pragmas as SQLite reports them,
        integrity and run counts by status."""
        conn = self.conn
        level = int(conn.execute("PRAGMA synchronous").fetchone()[0])
        counts = dict(conn.execute("SELECT status, count(*) FROM runs GROUP BY status"))
        return {
            "path": str(self.path),
            "schema_version": stored_version(conn),
            "journal_mode": str(conn.execute("PRAGMA journal_mode").fetchone()[0]),
            "synchronous": {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(level, str(level)),
            "busy_timeout_ms": self.busy_timeout_ms,
            "integrity": self.integrity_check(),
            "runs": sum(counts.values()),
            "runs_by_status": {str(k): int(v) for k, v in sorted(counts.items())},
        }

    def export_runs(
        self,
        target: Path,
        *,
        run_ids: Sequence[str] | None = None,
        fmt: str | None = None,
        overwrite: bool = False,
    ) -> TransferReport:
        """Write runs to a JSON Lines file or a standalone SQLite file (see
        :func:`master_sdk.memory.transfer.export_store`)."""
        from master_sdk.memory.transfer import export_store

        return export_store(self, target, run_ids=run_ids, fmt=fmt, overwrite=overwrite)

    def import_runs(
        self, source: Path, *, fmt: str | None = None, on_duplicate: str = "skip"
    ) -> TransferReport:
        """Merge the runs of an export (or of another store file) into this store (see
        :func:`master_sdk.memory.transfer.import_store`)."""
        from master_sdk.memory.transfer import import_store

        return import_store(self, source, fmt=fmt, on_duplicate=on_duplicate)

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with suppress(sqlite3.ProgrammingError):
            self.conn.close()


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _busy(exc: sqlite3.OperationalError) -> bool:
    """Whether an error means another connection holds a lock (SQLITE_BUSY / LOCKED)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return True
    text = str(exc)
    return "locked" in text or "busy" in text


def _check_local(path: Path, allow_network: bool) -> None:
    from master_sdk.memory.filesystems import network_mount

    mount = network_mount(path.parent)
    if mount is None:
        return
    message = (
        f"{path} is on a network filesystem ({mount.fstype} mounted at {mount.point} from "
        f"{mount.device}); SQLite's WAL needs shared memory and reliable locks that network "
        "filesystems do not provide, so runs could be lost or corrupted"
    )
    if not allow_network:
        raise StoreError(
            f"{message}. Put the store on a local disk (app.store / MASTER_STORE), or set "
            "app.allow_network_store: true to accept the risk"
        )
    import warnings

    warnings.warn(f"{message} (allowed by app.allow_network_store)", UserWarning, stacklevel=3)
