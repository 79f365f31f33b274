"""Group commit: the commits of many threads share one transaction and one WAL sync.

With many runs in flight in one process (an experiment, a bulk approval), every step
result waits for its own synced commit, and the store's one writer connection makes them
queue: the disk's sync rate caps throughput. Here a caller hands its writes to
:meth:`GroupCommit.commit` and waits; whichever caller finds no commit in progress leads:
it takes every commit queued so far, writes each inside its own savepoint (one that fails
— a lost compare-and-set, say — is rolled back alone and its caller gets the error), runs
the before-commit check of each, and commits once, synced if any of them asked for it
(commits that need no sync — a step's start — form their own transaction first, so they
never wait for an fsync).
Every caller returns only after the transaction holding its writes is durable, so the
promise of a single commit is kept: a step's result is on disk before its run goes on.
A commit that arrives while one is being synced joins the next group, which is why the
groups grow with the load and a lone caller pays no extra latency.

Waiting costs each caller one wake-up: a caller that finds a leader parks on a lock of its
own; the leader releases the locks of the commits it made durable, then hands leadership
to the first caller still queued (if any) by releasing that one's lock. With dozens of
runs in flight, waking every waiter after every group (a shared condition) would make
each of them take the lock and the interpreter in turn, slowing the leader.

A store that makes its commits durable after its write lock is released
(``memory/sqlite/syncing.py``) returns the wait for that from its transaction: the leader
hands the lead on first, so the next group is written while this one is synced.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from master_sdk.errors import StoreError

Apply = Callable[[sqlite3.Connection], None]


@dataclass(slots=True, eq=False)
class Pending:
    """One caller's commit: its writes, its check before commit, whether it must sync."""

    apply: Apply
    before_commit: Callable[[], None] | None = None
    sync: bool = True
    undo: Callable[[], None] | None = None
    done: bool = False
    error: BaseException | None = None
    group: int = 0
    _savepoint: str = field(default="", repr=False)
    # held while its caller waits: released once the commit is done, or to make the
    # caller the next leader
    _wake: threading.Lock | None = field(default=None, repr=False)


WriteOne = Callable[[sqlite3.Connection, "Pending"], None]
Durable = Callable[[], None]
"""Waits until a written group is durable; raises if it cannot be made so."""
Transaction = Callable[[list["Pending"], WriteOne, bool], Durable | None]


class GroupCommit:
    """Batches :class:`Pending` commits into shared transactions (see the module docstring).

    Args:
        transaction: runs one group: called with the pending commits and a function
            that writes one of them inside a savepoint; it opens the transaction (taking
            whatever locks the store needs), calls that function for each, and commits —
            synced when its argument says so. An exception it raises fails every commit of
            the group, none of which was written. It may return a function that waits
            until the group is durable (called after the lead is handed on).
    """

    def __init__(self, transaction: Transaction) -> None:
        self._transaction = transaction
        self._lock = threading.Lock()
        self._queue: list[Pending] = []
        self._leading = False
        self.groups = 0
        self.commits = 0

    def commit(self, pending: Pending) -> None:
        """Write ``pending`` in the next group and return once it is durable; raise its
        error (nothing of it written) otherwise."""
        with self._lock:
            self._queue.append(pending)
            wake: threading.Lock | None = None
            if self._leading:
                wake = threading.Lock()
                wake.acquire()
                pending._wake = wake
            else:
                self._leading = True
        if wake is not None:
            try:
                wake.acquire()  # released when done, or when this caller is to lead
            except BaseException:
                self._left(pending, wake)
                raise
        if not pending.done:
            self._lead()
        if pending.error is not None:
            raise pending.error

    def _left(self, pending: Pending, wake: threading.Lock) -> None:
        """The caller stopped waiting (a KeyboardInterrupt): a commit still queued is
        taken out (nothing of it written); one just made leader leads all the same, so
        the callers queued behind it are not left waiting for a leader that is gone."""
        with self._lock:
            queued = any(p is pending for p in self._queue)
            if queued and pending._wake is wake:
                self._queue.remove(pending)
                pending._wake = None
                return
        if queued and not pending.done:
            self._lead()

    def _lead(self) -> None:
        """Write every queued commit, hand leadership on (or give it up), then wait until
        what was written is durable and let its callers return."""
        with self._lock:
            batch, self._queue = self._queue, []
        written: list[tuple[list[Pending], Durable | None]] = []
        try:
            # commits that need no sync (a step's start) go first, in their own
            # transaction: they never wait for another commit's fsync
            quick = [p for p in batch if not p.sync]
            if quick and len(quick) < len(batch):
                written.append(self._run(quick))
                written.append(self._run([p for p in batch if p.sync]))
            else:
                written.append(self._run(batch))
        except BaseException:
            # the leader was interrupted: no caller may wait for ever
            for group, durable in written:
                if group and not group[0].done:
                    if durable is not None:
                        for p in group:
                            p.error = p.error or StoreError(
                                "the commit is written but was not made durable (the "
                                "writer was interrupted); it may not survive a power cut"
                            )
                    self._finish(group)
            self._abandon(batch)
            raise
        finally:
            with self._lock:
                following = self._queue[0] if self._queue else None
                if following is None:
                    self._leading = False
                else:
                    wake, following._wake = following._wake, None
            if following is not None and wake is not None:
                wake.release()  # the first caller queued meanwhile leads the next group
        for group, durable in written:
            self._settle(group, durable)

    def _settle(self, batch: list[Pending], durable: Durable | None) -> None:
        """Wait until a written group is durable, then let its callers return."""
        if durable is not None and batch and not batch[0].done:
            try:
                durable()
            except Exception as exc:  # written, but not known to be on disk
                for p in batch:
                    if p.error is None:
                        p.error = exc
            except BaseException as exc:
                shared = StoreError(
                    f"the commit was interrupted ({type(exc).__name__}) before it was made "
                    "durable; it is written but may not survive a power cut"
                )
                for p in batch:
                    if p.error is None:
                        p.error = shared
                self._finish(batch)
                raise
        if batch and not batch[0].done:
            self._finish(batch)

    def _abandon(self, batch: list[Pending]) -> None:
        left = [p for p in batch if not p.done]
        for p in left:
            if p.error is None:
                p.error = StoreError(
                    "the commit was interrupted before it was written; nothing of it was written"
                )
                if p.undo is not None:
                    p.undo()
        if left:
            self._finish(left)

    def _run(self, batch: list[Pending]) -> tuple[list[Pending], Durable | None]:
        sync = any(p.sync for p in batch)
        try:
            write = _write_alone if len(batch) == 1 else _write_one
            durable = self._transaction(batch, write, sync)
        except _Alone:
            # the one commit failed and its transaction was rolled back: its caller gets
            # its own error (set by _write_alone), nothing else is affected
            self._finish(batch)
            return batch, None
        except BaseException as exc:
            # nothing of the group was written: every commit of it fails; a caller other
            # than the leader gets a store error, never the leader's KeyboardInterrupt
            shared = (
                exc
                if isinstance(exc, Exception)
                else StoreError(
                    f"the commit was interrupted ({type(exc).__name__}) before it was made "
                    "durable; nothing of it was written"
                )
            )
            for p in batch:
                if p.error is None:
                    if p.undo is not None:
                        p.undo()
                    p.error = shared
            self._finish(batch)
            if shared is not exc:
                raise
            return batch, None
        return batch, durable

    def _finish(self, batch: list[Pending]) -> None:
        with self._lock:
            self.groups += 1
            self.commits += len(batch)
            group = self.groups
        for p in batch:
            p.group = group
            p.done = True
            wake, p._wake = p._wake, None
            if wake is not None:
                wake.release()  # its caller may return now


def _write_alone(conn: sqlite3.Connection, pending: Pending) -> None:
    """Write the one commit of a group: an error rolls the whole transaction back, so it
    needs no savepoint of its own (two statements fewer under the write lock)."""
    try:
        pending.apply(conn)
        if pending.before_commit is not None:
            pending.before_commit()
    except Exception as exc:
        if pending.undo is not None:
            pending.undo()
        pending.error = exc
        raise _Alone from exc


class _Alone(Exception):  # control flow: the group's one commit failed
    """Raised out of a one-commit group's transaction so that it rolls back."""


def _write_one(conn: sqlite3.Connection, pending: Pending) -> None:
    """Write one commit inside its own savepoint; on an error roll back just that one."""
    conn.execute("SAVEPOINT one_commit")
    try:
        pending.apply(conn)
        if pending.before_commit is not None:
            pending.before_commit()
    except Exception as exc:
        conn.execute("ROLLBACK TO one_commit")
        conn.execute("RELEASE one_commit")
        if pending.undo is not None:
            pending.undo()
        pending.error = exc
        return
    conn.execute("RELEASE one_commit")
