"""Writers of one store file wait for each other in the kernel, not by polling.

SQLite gives a writer that finds the database locked nothing to wait on: ``BEGIN
IMMEDIATE`` fails with ``SQLITE_BUSY`` and the writer must try again later. Polling with
short sleeps (the store's fallback, ``SQLiteStore._retrying``) hands the lock over late
(a waiter sleeps past the moment it is freed) and, with more writer processes than cores,
wastes the cores the lock holder needs: waiters wake over and over, the holder is
descheduled while it holds the lock, and every other writer waits for it.

So before ``BEGIN IMMEDIATE`` every writer of this library takes an exclusive ``flock``
on a side file next to the store (``<store>-wlock``) and releases it right after
``COMMIT`` (before the store syncs the log, and never across anything but the
transaction). A writer that finds it taken sleeps in the kernel until it is released:
no CPU is spent waiting and a waiter wakes the moment the lock is free. The side lock
only orders writers; SQLite's own lock stays the guard of the data: ``BEGIN IMMEDIATE``
is still made (and retried) under it, so a writer that does not know the side file (the
``sqlite3`` shell, another program) is excluded exactly as before.

What can go wrong, and what happens then:

* a process is killed while it holds the lock: the kernel releases a ``flock`` when its
  holder's last descriptor closes, and the next waiter wakes;
* the lock is held beyond the busy timeout (a holder stopped under a debugger, or itself
  waiting for a foreign writer): the wait is made by a helper thread, so the writer gives
  up after its busy timeout whatever the kernel does (no signals: a thread of a notebook
  kernel may not use them), and then tries SQLite's lock itself (``StoreBusy`` if that is
  held too). The helper's wait is kept and adopted by the next write of the store, or the
  lock released at once if it is granted to nobody;
* the side file cannot be created or locked (a read-only folder, a file system without
  ``flock``): writers wait by polling as before; a store only read never touches the file;
* a process forks: ``flock`` locks belong to the open file, which the child would share,
  so the child drops the inherited descriptor and opens its own when it first writes.
"""

from __future__ import annotations

import contextlib
import errno
import os
import queue
import threading
import weakref
from pathlib import Path

try:
    import fcntl
except ImportError:  # no flock on this platform: writers poll
    fcntl = None  # type: ignore[assignment]

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class _Wait:
    """One blocking wait for the lock, made by the helper thread."""

    __slots__ = ("abandoned", "done", "error", "granted")

    def __init__(self) -> None:
        self.done = threading.Lock()
        self.done.acquire()  # released by the helper once the wait is over
        self.granted = False
        self.abandoned = False
        self.error: OSError | None = None


class WriterQueue:
    """The side lock of one store (see the module docstring). Calls are made under the
    store's in-process write lock: one thread at a time takes it, once per transaction.

    Args:
        db_path: the store file; the side file is ``<db_path>-wlock``.
    """

    def __init__(self, db_path: Path) -> None:
        self.path = f"{db_path}-wlock"
        self._db_path = db_path
        self._fd: int | None = None
        self._opened = False  # tried to open the side file (it may have failed)
        self._held = False
        self.owner: int | None = None
        """The thread holding the side lock (``threading.get_ident()``), or None."""
        self._mu = threading.Lock()  # guards the descriptor against the helper thread
        self._waiting: _Wait | None = None  # the helper's wait in progress
        self._requests: queue.SimpleQueue[_Wait | None] | None = None
        self._closing = False
        self._disabled = fcntl is None  # the side file cannot be used here: writers poll
        self.waits = 0
        """How many acquisitions found the lock taken and waited for it (for tests and
        benchmarks)."""
        _LIVE.add(self)

    @property
    def enabled(self) -> bool:
        """Whether writers of this store wait in the kernel (False: by polling)."""
        with self._mu:
            if not self._opened and not self._disabled:
                self._open()
            return self._fd is not None and not self._disabled

    @property
    def held(self) -> bool:
        """Whether this store holds the side lock now."""
        return self._held

    def acquire(self, timeout_s: float) -> bool:
        """Take the side lock, waiting at most ``timeout_s``. True when this call took it
        (release it with :meth:`release`); False when it could not be had in time, is
        already held by this store, or is not available here: the caller goes on with
        SQLite's own lock alone."""
        with self._mu:
            if self._held or self._closing or self._disabled:
                return False
            if not self._opened:
                self._open()
            fd = self._fd
            if fd is None:
                return False
            wait = self._waiting
            if wait is None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    pass
                except OSError as exc:
                    self._give_up(exc)
                    return False
                else:
                    self._held = True
                    self.owner = threading.get_ident()
                    return True
                wait = self._waiting = _Wait()
                self._helper().put(wait)
            else:
                wait.abandoned = False  # adopt the wait an earlier write gave up on
            self.waits += 1
        wait.done.acquire(timeout=max(timeout_s, 0.0))
        with self._mu:
            if wait.granted:
                self._held = True
                self.owner = threading.get_ident()
                return True
            wait.abandoned = True  # the helper releases it when it comes, if nobody adopts it
            if wait.error is not None:
                self._give_up(wait.error)
            return False

    def release(self) -> None:
        """Release the side lock taken by :meth:`acquire` (idempotent)."""
        with self._mu:
            if not self._held:
                return
            self._held = False
            self.owner = None
            fd = self._fd
            if fd is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_UN)
                except OSError as exc:  # cannot unlock: close it (that unlocks it)
                    self._give_up(exc)

    def close(self) -> None:
        """Release the lock and close the side file (idempotent); a wait still in the
        kernel closes it when it ends."""
        with self._mu:
            self._closing = True
            self._held = False
            self.owner = None
            requests, self._requests = self._requests, None
            if requests is not None:
                requests.put(None)  # the helper ends after its current wait
            if self._waiting is None:
                self._close_fd()

    # ------------------------------------------------------------------ internals

    def _open(self) -> None:
        """Open (creating it if needed) the side file; on failure leave it closed."""
        self._opened = True
        try:
            mode = os.stat(self._db_path).st_mode & 0o666
        except OSError:
            mode = 0o644
        fd: int | None = None
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | _CLOEXEC, mode)
        except OSError:
            # a read-only folder or a file of another user: flock works on a descriptor
            # opened for reading, if the file is there
            try:
                fd = os.open(self.path, os.O_RDONLY | _CLOEXEC)
            except OSError:
                return
        try:
            # the same permissions as the store (as SQLite gives its -wal and -shm files)
            info = os.fstat(fd)
            if info.st_size == 0 and info.st_mode & 0o777 != mode and info.st_uid == os.getuid():
                os.fchmod(fd, mode)
        except OSError:
            pass
        self._fd = fd

    def _give_up(self, exc: OSError) -> None:
        """The side file cannot be locked (a file system without ``flock`` says ENOLCK,
        EOPNOTSUPP or EINVAL; any other error is treated the same: the side lock orders
        writers, it is never a reason for a write to fail): writers poll from now on."""
        del exc
        self._disabled = True
        self._held = False
        self.owner = None
        if self._waiting is None:
            self._close_fd()

    def _close_fd(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def _helper(self) -> queue.SimpleQueue[_Wait | None]:
        requests = self._requests
        if requests is None:
            requests = self._requests = queue.SimpleQueue()
            thread = threading.Thread(
                target=_wait_for_lock,
                args=(weakref.ref(self), requests),
                name=f"master-sdk writer queue {self._db_path.name}",
                daemon=True,
            )
            thread.start()
        return requests

    def _forked(self) -> None:
        """In a child process: forget the parent's descriptor and helper (the child takes
        its own lock when it first writes)."""
        self._mu = threading.Lock()
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)  # the parent's lock, if it holds one, stays the parent's
        self._opened = False
        self._held = False
        self.owner = None
        self._disabled = fcntl is None
        self._waiting = None
        self._requests = None


def _wait_for_lock(
    owner: weakref.ref[WriterQueue], requests: queue.SimpleQueue[_Wait | None]
) -> None:
    """The helper thread: make each wait it is given in the kernel, then hand the lock to
    the writer waiting for it, or release it when that writer gave up."""
    while True:
        wait = requests.get()
        if wait is None:
            return
        writers = owner()
        if writers is None:
            return
        fd = writers._fd
        error: OSError | None = None
        if fd is None:
            error = OSError(errno.EBADF, "the side file is closed")
        else:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError as exc:
                error = exc
        with writers._mu:
            writers._waiting = None
            if error is not None:
                wait.error = error
            elif wait.abandoned or writers._closing or writers._disabled:
                with contextlib.suppress(OSError):
                    fcntl.flock(fd, fcntl.LOCK_UN)  # type: ignore[arg-type]  # fd is set here
            else:
                wait.granted = True
            if writers._closing or writers._disabled:
                writers._close_fd()
            wait.done.release()
        del writers


_LIVE: weakref.WeakSet[WriterQueue] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for writers in list(_LIVE):
        writers._forked()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
