"""Folding the log into the database after the write lock, not inside ``COMMIT``.

SQLite checkpoints a WAL database automatically: the connection whose ``COMMIT`` brings
the log to 1,000 frames copies them into the database file right there, inside the
``COMMIT`` call (syncing the log before and the database after). The store calls
``COMMIT`` while it holds its write lock and the writers' side lock
(``writer_queue.py``), so every few dozen runs one commit kept every other writer of the
file waiting for two syncs and a page copy: about 3 ms each time, some 40 % of the time
the lock was held per run on this machine (1,000 runs: 33 such commits, 95 of 195 ms
spent in ``COMMIT``).

So the writer connection has the automatic checkpoint turned off, and every
:data:`EVERY` commits of this store, once its locks are released, the committing thread
runs the same ``PASSIVE`` checkpoint on a reader connection (a ``PASSIVE`` checkpoint
never blocks writers, and is skipped when another is running). One process alone
checkpoints about as often as SQLite did for it (the benchmark flow's commits write
about ten frames each: 1,000 runs, 5,000 commits, 47 automatic checkpoints); several
processes each checkpoint their own share, so the log stays as short. The log is
never left growing: a store that commits keeps checkpointing, closing the last
connection folds everything in, and any other program's connection checkpoints as usual.
SQLite's index beside the database (``-shm``) is not read directly: opening and closing
a descriptor to it would drop this process's SQLite locks on it (POSIX locks belong to
the process and file, not to the descriptor).
"""

from __future__ import annotations

import sqlite3

EVERY = 100
"""Commits of one store between its checkpoints."""


class Checkpoints:
    """Counts one store's commits and checkpoints every :data:`EVERY` of them (see the
    module docstring)."""

    def __init__(self) -> None:
        self._commits = 0
        self.started = False
        self.runs = 0
        """How many checkpoints this store made (for tests and benchmarks)."""

    def start(self, writer: sqlite3.Connection) -> None:
        """Turn the writer connection's automatic checkpoint off (under the write lock,
        once; if that fails, SQLite keeps checkpointing inside ``COMMIT``)."""
        if self.started:
            return
        try:
            writer.execute("PRAGMA wal_autocheckpoint = 0")
        except sqlite3.Error:
            return
        self.started = True

    def committed(self) -> bool:
        """Count a commit (under the write lock); True when a checkpoint is due."""
        if not self.started:
            return False
        self._commits += 1
        if self._commits < EVERY:
            return False
        self._commits = 0
        return True

    def run(self, conn: sqlite3.Connection) -> None:
        """A ``PASSIVE`` checkpoint on ``conn`` (any connection to the store)."""
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        self.runs += 1
