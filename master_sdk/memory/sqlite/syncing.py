"""Making commits durable outside the write lock: the store syncs the WAL itself.

With ``synchronous=FULL`` SQLite syncs the write-ahead log inside ``COMMIT``, while it
holds the database's write lock: every other writer, in this process or another, waits
for that sync, so writers never overlap their syncs and N processes write no faster than
one. The store's writer connection runs at ``synchronous=NORMAL`` instead (SQLite writes
the commit's frames to the log and returns; checkpoints still sync the log first and the
database after) and, for a commit that must survive a power cut, the store calls
``fdatasync`` on the log file itself *after* the write lock is released and before the
caller goes on. That is exactly the sync SQLite would have made (``FULL`` in WAL mode is
``NORMAL`` plus a sync of the log at each commit), made later but before anyone is told
the commit happened.

Why that keeps every promise: the log is one append-only file, so a sync covers every frame
written before it. Whoever builds on a commit not yet synced — another thread, another
process — makes its own synced commit after it, and that sync covers the earlier frames
too; a checkpoint copies frames to the database only after syncing the log. Meanwhile other
writers take the lock at once, and concurrent syncs share the disk's flush: one
``fdatasync`` covers every commit written before it started (:meth:`WalSync.wait`), so the
commits of many threads are made durable by one sync.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from master_sdk.errors import StoreError


class WalSync:
    """Counts the commits written to one store's log and syncs the log for them.

    Args:
        db_path: the database file; its log is ``<db_path>-wal``.
    """

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        self.wal_path = f"{db_path}-wal"
        self._cond = threading.Condition()
        self._written = 0  # commits written to the log by this store
        self._durable = 0  # of those, how many a finished sync covers
        self._syncing = False
        self._fd: int | None = None
        self.syncs = 0
        """How many times the log was synced (for tests and benchmarks)."""

    def written(self) -> int:
        """Record one more commit written to the log (call right after ``COMMIT``, under
        the write lock); returns its ticket for :meth:`wait`."""
        with self._cond:
            self._written += 1
            return self._written

    def wait(self, ticket: int) -> None:
        """Return once the commit with ``ticket`` is on disk: a sync that started after it
        was written has finished. One caller syncs; callers arriving meanwhile wait for
        that sync when it covers them, or make the next one, which covers them all.

        Raises:
            StoreError: the sync failed; the commit is written but may not survive a
                power cut.
        """
        with self._cond:
            while self._durable < ticket:
                if not self._syncing:
                    self._syncing = True
                    target = self._written
                    break
                self._cond.wait()
            else:
                return
        ok = False
        try:
            self._sync()
            ok = True
        finally:
            with self._cond:
                self._syncing = False
                if ok:
                    self._durable = max(self._durable, target)
                    self.syncs += 1
                self._cond.notify_all()

    def _sync(self) -> None:
        try:
            fd = self._open()
            if fd is not None:
                os.fdatasync(fd)
        except OSError as exc:
            raise StoreError(
                f"{self.db_path}: could not sync the store's log to disk ({exc.strerror}); "
                "the last commit is written but may not survive a power cut; check the disk"
            ) from None

    def _open(self) -> int | None:
        """The log's descriptor, opened again if the file was replaced; None when there is
        no log (it was folded into the database and removed: nothing left to sync)."""
        fd = self._fd
        if fd is not None and os.fstat(fd).st_nlink > 0:
            return fd
        if fd is not None:
            self._fd = None
            os.close(fd)
        try:
            fd = os.open(self.wal_path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            return None
        # the log's directory entry must survive too (SQLite syncs the folder once after
        # creating a file it syncs)
        folder = os.open(os.path.dirname(self.wal_path) or ".", os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
        self._fd = fd
        return fd

    def close(self) -> None:
        """Sync what is written and not yet durable, then close the log's descriptor
        (idempotent)."""
        with self._cond:
            pending = self._written if self._durable < self._written else 0
        if pending:
            self.wait(pending)
        with self._cond:
            while self._syncing:
                self._cond.wait()
            fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
