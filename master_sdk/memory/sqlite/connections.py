"""The SQLite store's connections: one writer behind a lock, a pool of readers.

One ``SQLiteStore`` is shared by every thread of a workbench. Writes are serialised in
the process by a lock around the one writer connection (SQLite serialises them between
processes anyway, and a second writer connection in this process would only spin on the
file lock). Reads take a connection from a pool (opened on demand, so as many readers run
at once as threads ask) and give it back: a read never waits for a write of this process,
and never sees a half-written transaction. Connections are never shared between two
threads at the same moment.

Why a writer behind a lock rather than a connection per thread: measured on this 2-core
machine (shared, loaded) with 8 threads x 60 runs of 3 synced commits and a load each,
both gave 150-400 runs/s with the order flipping between rounds, but connections per
thread spent about twice the CPU per run (1.5-1.7 ms against 0.6-0.8 ms: each waiting
thread polls SQLite's file lock), and their number grows with every thread that ever
touched the store. A lock hands the writer over without polling and keeps one writer
connection; readers need no lock at all.

Every connection is opened by the standard library's ``sqlite3`` (one SQLite library per
process: see ``memory/sqlite/traces.py``); closing the pool closes every connection.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

from master_sdk.errors import StoreError

Opener = Callable[[], sqlite3.Connection]


def bind_none_directly() -> None:
    """Let ``sqlite3`` bind ``None`` and ``bytes`` parameters without its adaptation search.

    ``sqlite3`` sends every parameter that is not exactly an int, float or str through its
    adapter registry; for ``None`` and ``bytes`` that search ends with two failed attribute
    lookups, and on Python 3.11 the first one builds (and drops) an ``AttributeError``
    message: over a thousand instructions per value, and a run binds some forty. An
    adapter registered for the type ends the search at once. Both are C functions that
    give back what they get (``{}.get``: ``None`` -> ``None``; ``bytes``: the same bytes
    object), so what is bound is exactly what was bound before, for every caller of
    ``sqlite3`` in the process; an adapter someone else registered is left alone.
    """
    identities: dict[type, Callable[[Any], Any]] = {type(None): {}.get, bytes: bytes}
    for kind, same in identities.items():
        if (kind, sqlite3.PrepareProtocol) not in sqlite3.adapters:
            sqlite3.register_adapter(kind, same)


bind_none_directly()


class Connections:
    """The writer connection (use under :attr:`write_lock`) and a pool of readers.

    Args:
        open_writer: opens and configures the writer connection.
        open_reader: opens and configures one reader connection.
        path: the store file, for messages.
    """

    def __init__(self, open_writer: Opener, open_reader: Opener, path: str) -> None:
        self.path = path
        self.write_lock = threading.RLock()
        self.writer = open_writer()
        self._open_reader = open_reader
        self._idle: list[sqlite3.Connection] = []
        self._out: set[sqlite3.Connection] = set()
        self._lock = threading.Lock()
        self._closed = False

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def _closed_error(self) -> StoreError:
        return StoreError(f"{self.path}: the store was closed; open the workbench again")

    def take(self) -> sqlite3.Connection:
        """A reader connection for this thread alone until :meth:`give` returns it."""
        with self._lock:
            if self._closed:
                raise self._closed_error()
            if self._idle:
                conn = self._idle.pop()
                self._out.add(conn)
                return conn
        conn = self._open_reader()
        with self._lock:
            if self._closed:
                conn.close()
                raise self._closed_error()
            self._out.add(conn)
        return conn

    def give(self, conn: sqlite3.Connection) -> None:
        """Return a connection :meth:`take` gave (closed if the pool was closed meanwhile)."""
        if conn.in_transaction:
            with suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        with self._lock:
            self._out.discard(conn)
            if self._closed:
                conn.close()
            else:
                self._idle.append(conn)

    @contextmanager
    def reader(self) -> Iterator[sqlite3.Connection]:
        """A reader connection for this thread until the block ends."""
        conn = self.take()
        try:
            yield conn
        finally:
            self.give(conn)

    @contextmanager
    def writing(self) -> Iterator[sqlite3.Connection]:
        """The writer connection, held by this thread until the block ends."""
        with self.write_lock:
            if self._closed:
                raise self._closed_error()
            yield self.writer

    def close(self) -> None:
        """Close the writer and every idle reader now, readers in use when given back
        (idempotent)."""
        with self.write_lock, self._lock:
            if self._closed:
                return
            self._closed = True
            idle, self._idle = self._idle, []
            for conn in idle:
                conn.close()
            with suppress(sqlite3.ProgrammingError):
                self.writer.close()

    def size(self) -> int:
        """How many reader connections are open (idle or in use)."""
        with self._lock:
            return len(self._idle) + len(self._out)
