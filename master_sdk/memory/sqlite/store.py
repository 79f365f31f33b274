"""The embedded SQLite store: WAL, busy timeout, one ``BEGIN IMMEDIATE`` per commit.

Every write is one short transaction that never spans a tool or model call. The run row
is written with compare-and-set on its ``version``, so two processes resuming the same
pause cannot both win. Everything serialised passes through the redaction ``scrub``
callable first: this is the choke point between a run and the disk.

One store may be used from many threads: writes go through one connection behind a lock,
reads through a pool of connections (``connections.py``). With ``FULL``, a commit that must
survive a power cut is made durable by the store's own sync of the log once the write lock
is released (``syncing.py``), so no writer waits for another's sync. Every error that leaves it is a
:class:`~master_sdk.errors.MasterError` (``StoreBusy``, ``StoreError``, ``NotFound``).
"""

from __future__ import annotations

import json
import random
import re
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from master_sdk.errors import NotFound, StoreBusy, StoreError
from master_sdk.memory.chunks import NewNames, named, read_names, run_events, run_range
from master_sdk.memory.derived import TRACE_REDACTED, Derived, identity
from master_sdk.memory.encoding import Encoder
from master_sdk.memory.group_commit import GroupCommit, Pending, WriteOne
from master_sdk.memory.schema import PAGE_SIZE, ensure_schema, refuse_newer, stored_version
from master_sdk.memory.sqlite import reads
from master_sdk.memory.sqlite.checkpoints import Checkpoints
from master_sdk.memory.sqlite.connections import Connections
from master_sdk.memory.sqlite.experiments import SQLiteExperiments
from master_sdk.memory.sqlite.reviews import read_reservation
from master_sdk.memory.sqlite.syncing import WalSync
from master_sdk.memory.sqlite.writer_queue import WriterQueue
from master_sdk.memory.sqlite.writes import (
    RUN_FIELDS,
    insert_flows,
    prepare,
    write,
    write_stored_run,
)
from master_sdk.memory.store import (
    ApprovalRecord,
    Changes,
    Commit,
    CommitHook,
    EncodedEvents,
    FlowSource,
    InputRecord,
    LabelHook,
    PendingRun,
    Reservation,
    RunRecord,
    StepAttempt,
    StoredApproval,
    StoredRun,
    call_after_commit,
)

if TYPE_CHECKING:
    from master_sdk.memory.retention import PruneReport
    from master_sdk.memory.store import RunTable, TraceTable

Scrub = Callable[[Any], Any]
T = TypeVar("T")

__all__ = ["TRACE_REDACTED", "SQLiteStore"]

_NULL_FINDING = re.compile(r"NULL value in (\w+)\.(\w+)")
_tuple = tuple.__new__

# waits between tries for the write lock: first about 0.05 ms, doubling up to about 0.2 ms
_FIRST_WAIT_S = 0.00005
_LAST_WAIT_S = 0.0002


class SQLiteStore(SQLiteExperiments, Derived):
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
        hooks: observers of every commit (:class:`~master_sdk.memory.store.CommitHook`).
        before_commit: called with the commit's label just before ``COMMIT`` (crash tests;
            the same as a hook whose ``before_commit`` calls it).
        allow_network: open a store on a network filesystem anyway (with a warning).
        sync_step_starts: with ``FULL``, fsync commits that only record a step's start
            too (``commit(..., sync=False)``); by default those ride on the next fsync.

    Raises:
        StoreBusy: another process held the store locked beyond the busy timeout.
        StoreError: the file cannot be a store here (see above); the message says why.
    """

    kind = "sqlite"

    def __init__(
        self,
        path: Path,
        *,
        synchronous: str = "FULL",
        busy_timeout_ms: int = 5000,
        scrub: Scrub | None = None,
        hooks: Sequence[CommitHook] = (),
        before_commit: Callable[[str], None] | None = None,
        allow_network: bool = False,
        sync_step_starts: bool = False,
    ) -> None:
        self.path = Path(path)
        self.location = str(self.path)
        self.synchronous = synchronous
        self.busy_timeout_ms = busy_timeout_ms
        self.sync_step_starts = sync_step_starts
        self.scrub: Scrub = scrub or identity
        self._enc = Encoder(self.scrub)
        self.hooks: list[CommitHook] = list(hooks)
        if before_commit is not None:
            self.hooks.append(LabelHook(before_commit))
        self._known_flows: set[str] = set()
        self._group = GroupCommit(self._group_transaction)
        # FULL: the store syncs the log itself, after the write lock (see syncing.py)
        self._wal = WalSync(self.path) if synchronous == "FULL" else None
        # writers of this file wait for each other in the kernel (see writer_queue.py)
        self._writers = WriterQueue(self.path)
        # the log is folded into the database after the locks, not in COMMIT
        self._checkpoints = Checkpoints()
        # trace name codes this process has seen committed (see memory/chunks.py)
        self._names: dict[str, int] = {}
        if synchronous not in ("FULL", "NORMAL"):
            raise StoreError(f"synchronous must be FULL or NORMAL, not {synchronous!r}")
        from master_sdk.memory.sqlite.opening import check_location

        check_location(self.path, allow_network=allow_network)
        self._pool = Connections(self._open_writer, self._open_reader, str(self.path))

    # ------------------------------------------------------------------ connections

    def _connect(self) -> sqlite3.Connection:
        from master_sdk.memory.sqlite.opening import connect

        return connect(self.path, self.busy_timeout_ms)

    def _open_writer(self) -> sqlite3.Connection:
        conn = self._connect()
        try:
            # Waits are ours (see _retrying), opening included: SQLite's own busy handler
            # sleeps 1, 2, 5, 10... ms between tries, far longer than a commit holds the
            # lock, so a process opening the store while another writes without pause
            # could wait out the whole busy timeout.
            conn.execute("PRAGMA busy_timeout = 0")
            self._retrying(lambda: self._prepare(conn), " while opening it")
            self._checkpoints.start(conn)  # see checkpoints.py
        except sqlite3.Error as exc:
            conn.close()
            raise self._error(exc, "while opening it") from None
        except BaseException:
            conn.close()
            raise
        return conn

    def _open_reader(self) -> sqlite3.Connection:
        conn = self._connect()
        try:
            conn.execute("PRAGMA busy_timeout = 0")
            conn.execute("PRAGMA query_only = 1")
        except sqlite3.Error as exc:
            conn.close()
            raise self._error(exc, "while opening a reader") from None
        return conn

    def _prepare(self, conn: sqlite3.Connection) -> None:
        """Check, configure, create or migrate the store file (each step may be repeated:
        a migration is one transaction)."""
        refuse_newer(stored_version(conn), path=str(self.path))
        # only a new, empty file takes it; an existing store keeps its own
        conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
        self._configure(conn)
        ensure_schema(conn, path=str(self.path))

    def _configure(self, conn: sqlite3.Connection) -> None:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"{self.path}: could not switch the store to WAL (got {mode})")
        # FULL is NORMAL plus a sync of the log at each commit, which the store makes
        # itself once the write lock is released (memory/sqlite/syncing.py)
        conn.execute("PRAGMA synchronous = NORMAL")
        level = conn.execute("PRAGMA synchronous").fetchone()[0]
        if int(level) != 1:
            raise StoreError(f"{self.path}: PRAGMA synchronous did not take ({level})")

    def _error(self, exc: sqlite3.Error, doing: str) -> StoreError:
        """A sqlite3 error as the StoreError (or StoreBusy) that says what to do."""
        from master_sdk.memory.sqlite.opening import describe

        return describe(exc, self.path, doing, busy_timeout_ms=self.busy_timeout_ms)

    @property
    def conn(self) -> sqlite3.Connection:
        """The writer connection, for SQLite-specific tests and tools that run while no
        other thread of this process writes; everything else goes through the methods."""
        return self._pool.writer

    # ------------------------------------------------------------------ writing

    def _acquire(self, conn: sqlite3.Connection) -> None:
        """Take the side lock that queues this library's writers in the kernel
        (``writer_queue.py``), then ``BEGIN IMMEDIATE``, retried with short jittered
        sleeps; StoreBusy once both together took longer than the busy timeout. The side
        lock is released by the caller right after ``COMMIT`` (here if ``BEGIN`` fails)."""
        timeout = self.busy_timeout_ms / 1000
        deadline = time.monotonic() + timeout
        writers = self._writers
        took = writers.acquire(timeout)
        try:
            self._retrying(lambda: conn.execute("BEGIN IMMEDIATE"), "", deadline=deadline)
        except BaseException:
            if took:
                writers.release()
            raise

    def _retrying(self, step: Callable[[], object], where: str, *, deadline: float = 0.0) -> None:
        """Run ``step``, retried with short jittered sleeps while another connection holds
        a lock, until the busy timeout (from the first failure, or until ``deadline`` on
        the monotonic clock when given); then StoreBusy (``where`` says what was being
        done).

        A commit holds the write lock for well under a millisecond (an fsync at most), so
        waiting 0.05-0.2 ms between tries hands the lock over quickly between processes.
        """
        delay = _FIRST_WAIT_S
        while True:
            try:
                step()
                return
            except sqlite3.OperationalError as exc:
                if not _busy(exc):
                    raise self._error(exc, where.strip() or "while starting a write") from None
            now = time.monotonic()
            if not deadline:
                deadline = now + self.busy_timeout_ms / 1000
            elif now >= deadline:
                raise StoreBusy(
                    f"{self.path}: the store is locked by another process beyond the busy "
                    f"timeout ({self.busy_timeout_ms} ms){where}; nothing was written, try again"
                )
            time.sleep(delay * (0.5 + random.random()))  # noqa: S311  # jitter, not secrets
            delay = min(delay * 2, _LAST_WAIT_S)

    def _write(
        self,
        body: Callable[[sqlite3.Connection], T],
        commit: Commit | None = None,
        *,
        sync: bool = True,
    ) -> T:
        """Run ``body`` in one write transaction on the writer connection (under the write
        lock) and return once it is durable; the hooks' ``before_commit`` get ``commit``
        just before ``COMMIT``. Any failure rolls back: nothing was written."""
        result, durable = self._written(body, commit, sync=sync)
        if durable is not None:
            durable()
        return result

    def _written(
        self,
        body: Callable[[sqlite3.Connection], T],
        commit: Commit | None,
        *,
        sync: bool,
    ) -> tuple[T, Callable[[], None] | None]:
        """:meth:`_write` without the wait: the result, and the wait for the sync the
        commit needs (None when it needs none), to call once the write lock is free."""
        pool = self._pool
        wal = self._wal
        writers = self._writers
        with pool.write_lock:
            if pool.closed:
                raise StoreError(f"{self.path}: the store was closed; open the workbench again")
            conn = pool.writer
            # a transaction started inside this one (by a hook) must not release the lock
            # of the outer one
            nested = writers.held
            try:
                self._acquire(conn)
                try:
                    result = body(conn)
                    if commit is not None:
                        for hook in self.hooks:
                            hook.before_commit(commit)
                    conn.execute("COMMIT")
                except sqlite3.Error as exc:  # disk full, I/O error, constraint
                    _rollback(conn)
                    raise StoreError(
                        f"{self.path}: could not write ({exc}); nothing was written"
                    ) from None
                except BaseException:
                    _rollback(conn)
                    raise
                finally:
                    if not nested:
                        writers.release()  # the next writer goes on; the sync comes after
            except sqlite3.Error as exc:  # BEGIN
                raise self._error(exc, "while starting a write") from None
            ticket = wal.written() if wal is not None else 0
            checkpoint = self._checkpoints.committed()
        if checkpoint:
            self._checkpoint()
        # a commit that only records a step's start rides on the next sync, unless every
        # commit is to be synced at once (sync_step_starts)
        if wal is None or not (sync or self.sync_step_starts):
            return result, None
        return result, lambda: wal.wait(ticket)

    def _checkpoint(self) -> None:
        """Fold the log into the database on a reader connection, outside the write
        locks (``checkpoints.py``); a checkpoint that fails leaves it to the next."""
        with suppress(StoreError):
            self._reading(self._checkpoints.run)

    def sync(self) -> None:
        """Make every commit written so far durable now (with ``FULL``; a no-op with
        ``NORMAL``)."""
        wal = self._wal
        if wal is not None:
            wal.wait(wal.written())

    @property
    def log_syncs(self) -> int:
        """How many times this store synced its log (0 with ``NORMAL``)."""
        return 0 if self._wal is None else self._wal.syncs

    def _group_transaction(
        self, batch: list[Pending], write_one: WriteOne, sync: bool
    ) -> Callable[[], None] | None:
        """One transaction for a group of commits (see :meth:`commit`); returns the wait
        for its sync."""

        def body(conn: sqlite3.Connection) -> None:
            for pending in batch:
                write_one(conn, pending)

        return self._written(body, None, sync=sync)[1]

    def transaction(self, body: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``body`` in one synced write transaction on the writer connection (under the
        write lock), for tables other modules of ``memory/`` keep in the same file (vector
        collections): one SQLite library and one lock per file. Commit hooks are not
        called (they observe run commits); if ``body`` raises, nothing is written."""
        return self._write(body)

    def read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``query`` on a pooled reader connection, retried while the file is busy."""
        return self._reading(query)

    def commit(
        self,
        run: RunRecord,
        changes: Changes,
        *,
        expect_version: int | None,
        label: str,
        sync: bool = True,
    ) -> None:
        """Write a run and one step's changes in one transaction (see
        :class:`~master_sdk.memory.store.Store`)."""
        prepared = prepare(
            run,
            changes,
            expect_version=expect_version,
            enc=self._enc,
            names=self._names,
            known_flows=self._known_flows,
        )
        # the events as written, for hooks: known now unless a name needs a new code
        packed = prepared.packed
        encoded = None
        hooks = self.hooks
        if packed is not None and hooks:  # one C call, not NamedTuple's Python __new__
            encoded = _tuple(EncodedEvents, (*packed, prepared.attrs, self._names))
        done = Commit(run, changes, label, sync, encoded)
        pk = run.pk
        coded: list[NewNames | None] = []

        def apply(conn: sqlite3.Connection) -> None:
            # a name without a code yet is coded inside this transaction
            names = None
            if prepared.packed is None and prepared.events:
                names = NewNames(conn, self._names, self.scrub)
            coded.append(names)
            write(conn, prepared, names)

        def before_commit() -> None:
            for hook in self.hooks:
                hook.before_commit(done)

        def undo() -> None:
            run.pk = pk  # an insert that is rolled back gave no key

        # many runs in flight share one transaction and one sync (memory/group_commit.py);
        # this returns once the transaction holding this commit is durable
        try:
            self._group.commit(Pending(apply, before_commit, sync, undo))
        except sqlite3.Error as exc:  # this commit's statements failed: it alone rolled back
            raise StoreError(f"{self.path}: could not write ({exc}); nothing was written") from None
        names = coded[-1] if coded else None
        if changes.flow_source is not None:
            self._known_flows.add(changes.flow_source.flow_hash)
        if names is not None:
            self._names.update(names.added)
        packed = prepared.packed
        if encoded is None and packed is not None and hooks:  # packed inside the transaction
            encoded = _tuple(EncodedEvents, (*packed, prepared.attrs, self._names))
            done = Commit(run, changes, label, sync, encoded)
        call_after_commit(self.hooks, done)

    # ------------------------------------------------------------------ reading

    def _reading(self, read: Callable[[sqlite3.Connection], T]) -> T:
        """Run a read on a pooled connection, retrying while another process holds an
        exclusive lock (WAL recovery, a truncating checkpoint): reads never wait
        otherwise."""
        deadline = time.monotonic() + self.busy_timeout_ms / 1000
        delay = _FIRST_WAIT_S
        while True:
            try:
                conn = self._pool.take()
                try:
                    return read(conn)
                finally:
                    self._pool.give(conn)
            except sqlite3.OperationalError as exc:
                if not _busy(exc):
                    raise self._error(exc, "while reading") from None
            except sqlite3.Error as exc:
                raise self._error(exc, "while reading") from None
            if time.monotonic() >= deadline:
                raise StoreBusy(
                    f"{self.path}: the store stayed locked beyond the busy timeout "
                    f"({self.busy_timeout_ms} ms) while reading; try again"
                )
            time.sleep(delay * (0.5 + random.random()))  # noqa: S311  # jitter, not secrets
            delay = min(delay * 2, _LAST_WAIT_S)

    def load(self, run_id: str) -> tuple[RunRecord, list[StepAttempt]]:
        """A run and the latest attempt of each of its steps."""
        return self._reading(lambda conn: self._load(conn, run_id))

    def _load(self, conn: sqlite3.Connection, run_id: str) -> tuple[RunRecord, list[StepAttempt]]:
        conn.execute("BEGIN")  # the run and its steps from one snapshot
        try:
            run = _run(conn, run_id, self.path)
            return run, reads.read_steps(conn, run_id)
        finally:
            conn.execute("COMMIT")

    def attempts(self, run_id: str) -> list[StepAttempt]:
        """Every attempt of every step of a run; raises NotFound."""

        def read(conn: sqlite3.Connection) -> list[StepAttempt]:
            if conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone() is None:
                raise NotFound(f"no run '{run_id}' in {self.path}")
            return reads.read_steps(conn, run_id, attempts=True)

        return self._reading(read)

    def find_runs(self, *, status: str | None = None) -> list[tuple[str, str | None]]:
        """``(run_id, owner)`` of runs, oldest first, optionally with one status."""

        def read(conn: sqlite3.Connection) -> list[tuple[str, str | None]]:
            if status is None:
                rows = conn.execute("SELECT run_id, owner FROM runs ORDER BY pk")
            else:
                rows = conn.execute(
                    "SELECT run_id, owner FROM runs WHERE status = ? ORDER BY pk", (status,)
                )
            return [(r[0], r[1]) for r in rows]

        return self._reading(read)

    def flow_source(self, flow_hash: str) -> str | None:
        """The flow text a run started from, by its hash."""
        row = self._reading(
            lambda conn: conn.execute(
                "SELECT source FROM flow_versions WHERE flow_hash = ?", (flow_hash,)
            ).fetchone()
        )
        return None if row is None else str(row[0])

    def run_table(
        self, *, product: str | None = None, flow: str | None = None, status: str | None = None
    ) -> RunTable:
        """Runs, newest first."""
        return self._reading(lambda conn: reads.read_run_table(conn, product, flow, status))

    def trace_table(
        self,
        *,
        run_id: str | None = None,
        product: str | None = None,
        flow: str | None = None,
        status: str | None = None,
        since_us: int | None = None,
    ) -> TraceTable:
        """Trace events of the runs asked for, decoded from their chunks by numpy."""
        from master_sdk.memory.sqlite.traces import read_trace_table

        where, params = reads.run_filter(product, flow, status, run_id=run_id)
        return self._reading(lambda conn: read_trace_table(conn, where, params, since_us=since_us))

    def count_events(self, run_id: str | None = None) -> int:
        """How many trace events the store holds (for one run, or in all)."""
        params: tuple[str, ...] = ()
        if run_id is None:
            sql = "SELECT coalesce(sum(n), 0) FROM trace_chunks"
        else:
            sql = (
                "SELECT coalesce(sum(n), 0) FROM trace_chunks JOIN runs ON runs.run_id = ? "  # noqa: S608  # a constant
                f"AND {run_range('runs.pk', 'trace_chunks')}"
            )
            params = (run_id,)
        return self._reading(lambda conn: int(conn.execute(sql, params).fetchone()[0]))

    def step_attempts(self, run_id: str, *, attempts: bool = False) -> list[StepAttempt]:
        """The latest attempt of each step (``attempts=True``: every attempt)."""
        return self._reading(lambda conn: reads.read_steps(conn, run_id, attempts=attempts))

    def approvals(
        self, *, product: str | None = None, flow: str | None = None
    ) -> list[StoredApproval]:
        """The approval audit, oldest first."""
        return self._reading(lambda conn: reads.read_approvals(conn, product, flow))

    # ------------------------------------------------------------------ export / import

    def pending_runs(
        self,
        *,
        statuses: Sequence[str],
        product: str | None = None,
        flow: str | None = None,
    ) -> list[PendingRun]:
        """Runs in ``statuses`` with their reservations (see ``memory/sqlite/reviews.py``)."""
        from master_sdk.memory.sqlite.reviews import read_pending

        return self._reading(lambda conn: read_pending(conn, statuses, product, flow))

    def reserve(self, run_id: str, by: str, until_us: int, *, now_us: int) -> Reservation:
        """Grant, renew or release a lease in one write transaction."""
        from master_sdk.memory.sqlite.reviews import reserve

        return self._write(lambda conn: reserve(conn, run_id, by, until_us, now_us, str(self.path)))

    def claim(
        self,
        by: str,
        until_us: int,
        *,
        now_us: int,
        statuses: Sequence[str],
        product: str | None = None,
        flow: str | None = None,
        limit: int = 1,
    ) -> list[Reservation]:
        """Lease up to ``limit`` free runs to ``by`` in one write transaction."""
        from master_sdk.memory.sqlite.claims import claim

        return self._write(
            lambda conn: claim(
                conn, by, until_us, now_us=now_us, statuses=statuses, product=product,
                flow=flow, limit=limit,
            )
        )  # fmt: skip

    def reservation(self, run_id: str) -> Reservation | None:
        """The lease stored on a run (possibly expired), or None."""
        return self._reading(lambda conn: read_reservation(conn, run_id))

    def read_runs(self, run_ids: Sequence[str] | None = None) -> Iterator[StoredRun]:
        """Everything about each run, from one snapshot (see
        :class:`~master_sdk.memory.store.Store`)."""
        return iter(self._reading(lambda conn: _read_runs(conn, run_ids, self.path)))

    def flow_sources(self, flow_hashes: Sequence[str] | None = None) -> list[FlowSource]:
        """Stored flow texts (all, or those of ``flow_hashes``)."""

        def read(conn: sqlite3.Connection) -> list[FlowSource]:
            rows = conn.execute(
                "SELECT flow_hash, product, flow, product_version, source FROM flow_versions "
                "ORDER BY flow_hash"
            ).fetchall()
            wanted = None if flow_hashes is None else set(flow_hashes)
            return [FlowSource(*r) for r in rows if wanted is None or r[0] in wanted]

        return self._reading(read)

    def write_runs(
        self,
        runs: Sequence[StoredRun],
        flows: Sequence[FlowSource],
        *,
        on_duplicate: Literal["skip", "error"] = "skip",
    ) -> list[str]:
        """Add whole runs in one transaction; returns the ids added (see
        :class:`~master_sdk.memory.store.Store`)."""
        added: list[str] = []

        def body(conn: sqlite3.Connection) -> NewNames:
            present = {
                r.run.run_id
                for r in runs
                if conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (r.run.run_id,)).fetchone()
            }
            if present and on_duplicate == "error":
                raise StoreError(
                    f"{len(present)} run(s) are already in {self.path}: "
                    f"{', '.join(sorted(present))}; nothing was written"
                )
            insert_flows(conn, flows, self._enc)
            names = NewNames(conn, self._names, self.scrub)
            for stored in runs:
                if stored.run.run_id in present:
                    continue
                write_stored_run(conn, stored, self._enc, names)
                added.append(stored.run.run_id)
            return names

        names = self._write(body)
        self._names.update(names.added)  # committed: the new codes are real
        return added

    # ------------------------------------------------------------------ about the store

    def prune(
        self, *, before_us: int, statuses: Sequence[str], dry_run: bool = False
    ) -> PruneReport:
        """Remove old runs in one write transaction (see ``memory/retention.py``)."""
        from master_sdk.memory.sqlite.retention import prune

        def body(conn: sqlite3.Connection) -> PruneReport:
            return prune(conn, before_us=before_us, statuses=statuses, dry_run=dry_run)

        return self._reading(body) if dry_run else self._write(body)

    def integrity_check(self) -> str:
        """``PRAGMA integrity_check``: ``"ok"`` when healthy, else its findings joined.

        SQLite 3.40.0 to 3.41.0 report NOT NULL columns of WITHOUT ROWID tables declared
        before a primary-key column (``approvals.decision``, ``user_inputs.data``) as
        holding NULLs when they do not; each such finding is checked against the rows and
        kept only if a NULL is really there.
        """
        return self._reading(_integrity)

    def info(self) -> dict[str, Any]:
        """The store's file, schema version, durability pragmas as SQLite reports them,
        integrity and run counts by status."""

        def read(conn: sqlite3.Connection) -> dict[str, Any]:
            counts = dict(conn.execute("SELECT status, count(*) FROM runs GROUP BY status"))
            return {"schema_version": stored_version(conn), "counts": counts}

        with self._pool.write_lock:
            writer = self._pool.writer
            try:
                level = int(writer.execute("PRAGMA synchronous").fetchone()[0])
                mode = str(writer.execute("PRAGMA journal_mode").fetchone()[0])
            except sqlite3.Error as exc:
                raise self._error(exc, "while reading its settings") from None
        if level == 1 and self._wal is not None:
            level = 2  # FULL: NORMAL plus the store's own sync of the log at each commit
        got = self._reading(read)
        counts = got["counts"]
        return {
            "kind": self.kind,
            "path": str(self.path),
            "schema_version": got["schema_version"],
            "journal_mode": mode,
            "synchronous": {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(level, str(level)),
            "busy_timeout_ms": self.busy_timeout_ms,
            "integrity": self.integrity_check(),
            "runs": sum(counts.values()),
            "runs_by_status": {str(k): int(v) for k, v in sorted(counts.items())},
        }

    def close(self) -> None:
        """Close every connection (idempotent)."""
        if self._wal is not None:
            with suppress(StoreError):  # a failing disk: closing goes on
                self._wal.close()
        self._pool.close()
        self._writers.close()

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r})"


def _rollback(conn: sqlite3.Connection) -> None:
    # SQLite may have rolled the transaction back already (an I/O error does)
    if conn.in_transaction:
        with suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _run(conn: sqlite3.Connection, run_id: str, path: Path) -> RunRecord:
    row = conn.execute(
        f"SELECT {RUN_FIELDS}, pk FROM runs WHERE run_id = ?",  # noqa: S608  # constants
        (run_id,),
    ).fetchone()
    if row is None:
        raise NotFound(f"no run '{run_id}' in {path}")
    run = RunRecord(*row[:18])
    run.inputs = _loads(row[18])
    run.output = _loads(row[19])
    run.state = _loads(row[20]) or {}
    run.error = row[21]
    run.parent_run_id = row[22]
    run.forked_at = row[23]
    run.pk = row[24]
    return run


def _read_runs(
    conn: sqlite3.Connection, run_ids: Sequence[str] | None, path: Path
) -> list[StoredRun]:
    conn.execute("BEGIN")  # one snapshot for every run
    try:
        if run_ids is None:
            run_ids = [r[0] for r in conn.execute("SELECT run_id FROM runs ORDER BY pk")]
        names = read_names(conn)
        out = []
        for run_id in run_ids:
            run = _run(conn, run_id, path)
            pk = run.pk
            out.append(
                StoredRun(
                    run=run,
                    attempts=reads.read_steps(conn, run_id, attempts=True),
                    events=named(run_events(conn, pk or 0, names)),
                    approvals=[
                        ApprovalRecord(*r)
                        for r in conn.execute(
                            "SELECT step_id, decision, decided_by, comment, at_us FROM approvals "
                            "WHERE run_pk = ? ORDER BY at_us",
                            (pk,),
                        )
                    ],
                    inputs=[
                        InputRecord(r[0], _loads(r[1]), r[2], r[3])
                        for r in conn.execute(
                            "SELECT step_id, data, given_by, at_us FROM user_inputs "
                            "WHERE run_pk = ? ORDER BY at_us",
                            (pk,),
                        )
                    ],
                )
            )
        return out
    finally:
        conn.execute("COMMIT")


def _integrity(conn: sqlite3.Connection) -> str:
    findings = [str(r[0]) for r in conn.execute("PRAGMA integrity_check")]
    real = [f for f in findings if f != "ok" and not _false_null(conn, f)]
    return "; ".join(real) if real else "ok"


def _false_null(conn: sqlite3.Connection, finding: str) -> bool:
    match = _NULL_FINDING.fullmatch(finding)
    if match is None:
        return False
    table, column = match.groups()
    known = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
    if column not in known:
        return False
    # typeof() is computed per row, so the planner cannot fold the test away on the
    # strength of the NOT NULL constraint (as it may with ``IS NULL``)
    hit = conn.execute(
        f'SELECT 1 FROM "{table}" WHERE typeof("{column}") = \'null\' LIMIT 1'  # noqa: S608  # names from the schema
    ).fetchone()
    return hit is None


def _busy(exc: sqlite3.OperationalError) -> bool:
    """Whether an error means another connection holds a lock (SQLITE_BUSY / LOCKED)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return True
    text = str(exc)
    return "locked" in text or "busy" in text
