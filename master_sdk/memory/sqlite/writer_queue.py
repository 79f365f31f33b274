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

A store that is the side file's only user (no other store, in this process or another,
has it open: its shared OFD lock is the only one) skips the side lock, since there is
nobody to queue with; it looks again every ``_ALONE_RECHECK_S``, so a store that opens the
file meanwhile waits for SQLite's lock by polling for at most that long.

What can go wrong, and what happens then:

* a process is killed while it holds the lock: the kernel releases a ``flock`` when its
  holder's last descriptor closes, and the next waiter wakes;
* the lock is held beyond the busy timeout (a holder stopped under a debugger, or itself
  waiting for a foreign writer): ``flock`` has no timeout and a thread of a notebook
  kernel may not use signals, so a writer never blocks in ``flock`` itself. On Linux it
  sleeps on a futex in the side file (mapped shared) that the holder bumps and wakes on
  release (one waiter woken per release), with the time left as the futex's timeout,
  and tries ``flock`` without blocking each time it wakes; a holder that dies wakes
  nobody, so a waiter also looks again every few milliseconds. Elsewhere a helper thread
  makes the blocking ``flock`` and hands the lock over, and a writer that gave up leaves
  that wait to the next write of the store (or to be released at once). Either way the
  writer gives up after its busy timeout and then tries SQLite's lock itself
  (``StoreBusy`` if that is held too);
* the side file cannot be created or locked (a read-only folder, a file system without
  ``flock``): writers wait by polling as before; a store only read never touches the file;
* a process forks: ``flock`` locks belong to the open file, which the child would share,
  so the child drops the inherited descriptor and opens its own when it first writes.

The side file holds no data. Like SQLite with its ``-shm`` file, the last store to close
removes it: each store that has it open holds a shared open-file-description lock on its
first byte (Linux ``F_OFD_SETLK``, independent of ``flock`` and of SQLite's locks on
other files), and a closing store removes the file only if it can turn its own into an
exclusive one; a store that opens the file and finds it removed meanwhile opens it again.
Where such locks are not available the file is simply left in place.
"""

from __future__ import annotations

import contextlib
import errno
import os
import struct
import threading
import time
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import queue

try:
    import fcntl
except ImportError:  # no flock on this platform: writers poll
    fcntl = None  # type: ignore[assignment]

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)

# a waiter looks at the lock again this often even if nobody wakes it (its holder died)
_RECHECK_S = 0.005
# futex(2): the system call's number on the machines that have it, and its operations
# (ctypes and mmap are imported by the first store that writes: not at import time)
_SYS_FUTEX = {"x86_64": 202, "amd64": 202, "aarch64": 98, "arm64": 98}.get(
    os.uname().machine.lower() if hasattr(os, "uname") else ""
)
# the file's users hold shared OFD locks on its first byte (struct flock on Linux: short,
# short, off_t, off_t, pid_t, padded to 32 bytes)
_OFD = fcntl is not None and _SYS_FUTEX is not None and hasattr(fcntl, "F_OFD_SETLKW")
_FLOCK = struct.Struct("hhqqi4x")
# a writer that is the side file's only user skips the side lock (there is nobody to queue
# with) and looks again whether another store came this often
_ALONE_RECHECK_S = 0.02
_FUTEX_WAIT = 0
_FUTEX_WAKE = 1
_WORD = 8  # bytes of the side file that hold the futex word (and room to spare)


_TIMESPEC: list[Any] = []  # struct timespec as a ctypes type, made once when first needed


class _Futex:
    """A 32-bit word in the side file, mapped shared: the holder bumps it and wakes one
    waiter when it releases the lock; waiters sleep on it with a timeout.

    Raises:
        OSError: the file cannot be mapped for writing, or futex(2) is not available.
    """

    def __init__(self, fd: int) -> None:
        if _SYS_FUTEX is None or fcntl is None:
            raise OSError(errno.ENOSYS, "no futex here")
        import ctypes
        import mmap

        if not _TIMESPEC:
            _TIMESPEC.append(
                type(
                    "Timespec",
                    (ctypes.Structure,),
                    {"_fields_": (("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long))},
                )
            )
        self._ctypes = ctypes
        if os.fstat(fd).st_size < _WORD:
            os.pwrite(fd, bytes(_WORD), 0)  # another process doing the same writes the same
        self._map = mmap.mmap(fd, _WORD, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self.word = ctypes.c_uint32.from_buffer(self._map)
        self._addr = ctypes.c_void_p(ctypes.addressof(self.word))
        libc = ctypes.CDLL(None, use_errno=True)
        self._call = libc.syscall
        self._call.restype = ctypes.c_long
        self._nr = ctypes.c_long(_SYS_FUTEX)
        # a wake with nobody waiting: proves the call works here (or raises)
        if self._call(self._nr, self._addr, _FUTEX_WAKE, 1, None, None, 0) < 0:
            raise OSError(ctypes.get_errno(), "futex(2) refused")

    def wait(self, seen: int, timeout_s: float) -> None:
        """Sleep until woken, ``timeout_s`` passed, or the word is no longer ``seen``."""
        whole = int(timeout_s)
        ctypes = self._ctypes
        limit = _TIMESPEC[0](whole, int((timeout_s - whole) * 1e9))
        self._call(
            self._nr, self._addr, _FUTEX_WAIT, ctypes.c_uint32(seen), ctypes.byref(limit), None, 0
        )

    def bump(self) -> None:
        """Change the word (by the lock's holder, before it releases the lock)."""
        self.word.value = (self.word.value + 1) & 0xFFFFFFFF

    def wake(self) -> None:
        """Wake one waiter (after the lock was released)."""
        self._call(self._nr, self._addr, _FUTEX_WAKE, 1, None, None, 0)

    def close(self) -> None:
        del self.word
        with contextlib.suppress(BufferError, ValueError):
            self._map.close()


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
        self._futex: _Futex | None = None
        self._registered = False  # holds a shared OFD lock saying it uses the file
        self._opened = False  # tried to open the side file (it may have failed)
        self._held = False
        self._alone_until = 0.0  # monotonic time until which no other store uses the file
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
            if self._registered and self._alone(fd):
                return False
            futex = self._futex
        if futex is not None:
            return self._acquire_waking(fd, futex, timeout_s)
        with self._mu:
            if self._held or self._closing or self._disabled:
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

    def _alone(self, fd: int) -> bool:
        """Whether no other store has the side file open (no shared OFD lock but this
        one's), looked up at most every ``_ALONE_RECHECK_S``. A lone writer has nobody to
        queue with, so it spends no system call on the side lock; a store that opens the
        file meanwhile waits for SQLite's lock by polling until this one notices it."""
        now = time.monotonic()
        if now < self._alone_until:
            return True
        try:
            seen = fcntl.fcntl(
                fd, fcntl.F_OFD_GETLK, _FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, 0, 1, 0)
            )
        except OSError:
            return False
        if _FLOCK.unpack(seen)[0] != fcntl.F_UNLCK:
            self._alone_until = 0.0
            return False
        self._alone_until = now + _ALONE_RECHECK_S
        return True

    def _acquire_waking(self, fd: int, futex: _Futex, timeout_s: float) -> bool:
        """:meth:`acquire` sleeping on the futex between tries (see the module docstring)."""
        deadline = 0.0
        while True:
            seen = futex.word.value
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pass
            except OSError as exc:
                with self._mu:
                    self._give_up(exc)
                return False
            else:
                self._held = True
                self.owner = threading.get_ident()
                return True
            now = time.monotonic()
            if not deadline:
                deadline = now + timeout_s
                self.waits += 1
            elif now >= deadline:
                return False
            futex.wait(seen, min(deadline - now, _RECHECK_S))

    def release(self) -> None:
        """Release the side lock taken by :meth:`acquire` (idempotent)."""
        with self._mu:
            if not self._held:
                return
            self._held = False
            self.owner = None
            fd = self._fd
            futex = self._futex
            if fd is not None:
                if futex is not None:
                    futex.bump()
                try:
                    fcntl.flock(fd, fcntl.LOCK_UN)
                except OSError as exc:  # cannot unlock: close it (that unlocks it)
                    self._give_up(exc)
        if futex is not None:
            futex.wake()

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
        for _ in range(100):  # the last user may remove it between our open and our lock
            opened = self._open_file(mode)
            if opened is None:
                return
            fd, writable = opened
            registered = _register(fd, self.path)
            if registered is not False:
                break
            os.close(fd)
            time.sleep(0.001)
        else:
            return  # writers poll
        self._registered = bool(registered)
        if writable:
            try:
                self._futex = _Futex(fd)
            except (OSError, ValueError, AttributeError):
                self._futex = None  # a helper thread makes the waits
        self._fd = fd

    def _open_file(self, mode: int) -> tuple[int, bool] | None:
        """A descriptor of the side file and whether it is writable; None if it cannot
        be opened."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | _CLOEXEC, mode)
        except OSError:
            # a read-only folder or a file of another user: flock works on a descriptor
            # opened for reading, if the file is there
            try:
                return os.open(self.path, os.O_RDONLY | _CLOEXEC), False
            except OSError:
                return None
        try:
            # the same permissions as the store (as SQLite gives its -wal and -shm files)
            info = os.fstat(fd)
            if info.st_size == 0 and info.st_mode & 0o777 != mode and info.st_uid == os.getuid():
                os.fchmod(fd, mode)
        except OSError:
            pass
        return fd, True

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
        futex, self._futex = self._futex, None
        if futex is not None:
            futex.close()
        fd, self._fd = self._fd, None
        if fd is not None:
            if self._registered:
                self._registered = False
                _remove_if_last(fd, self.path)
            with contextlib.suppress(OSError):
                os.close(fd)

    def _helper(self) -> queue.SimpleQueue[_Wait | None]:
        requests = self._requests
        if requests is None:
            import queue

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
        self._futex = None  # the mapping is the same file: nothing of the parent's is held
        self._registered = False  # the parent's OFD lock stays the parent's
        self._alone_until = 0.0
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


def _register(fd: int, path: str) -> bool | None:
    """Say this store uses the side file (a shared OFD lock on its first byte). False:
    the file is being removed or was removed by its last user (open it again); None: such
    locks are not available here (the file will not be removed)."""
    if not _OFD:
        return None
    try:
        fcntl.fcntl(fd, fcntl.F_OFD_SETLK, _FLOCK.pack(fcntl.F_RDLCK, os.SEEK_SET, 0, 1, 0))
    except OSError as exc:
        # a closing store holds it exclusively for a moment, then removes the file
        return False if exc.errno in (errno.EAGAIN, errno.EACCES) else None
    try:
        here = os.fstat(fd)
        named = os.stat(path)
    except OSError:
        return False
    return here.st_nlink > 0 and (named.st_dev, named.st_ino) == (here.st_dev, here.st_ino)


def _remove_if_last(fd: int, path: str) -> None:
    """Remove the side file if no other store has it open (this one's shared OFD lock
    can be made exclusive); it is closed next, which releases the lock."""
    try:
        fcntl.fcntl(fd, fcntl.F_OFD_SETLK, _FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, 0, 1, 0))
        here = os.fstat(fd)
        named = os.stat(path)
        if (named.st_dev, named.st_ino) == (here.st_dev, here.st_ino):
            os.unlink(path)
    except OSError:
        return


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
