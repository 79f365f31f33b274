"""Where a SQLite store may live, how its connections are opened, and what their errors
mean to a user.

Everything that can go wrong before the first commit — a directory where the file should
be, a read-only folder or mount, a network filesystem, a file that is not a store — is a
one-line :class:`~master_sdk.errors.StoreError` naming the file and what to do, never a
raw ``sqlite3`` or ``OSError`` traceback.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path

from master_sdk.errors import StoreBusy, StoreError

_READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)


def check_location(path: Path, *, allow_network: bool) -> None:
    """Refuse a store path that cannot hold a store (see module docstring); create its
    folder when missing.

    Raises:
        StoreError: the path is a directory, its folder cannot be created or written
            (the message says "read-only"), or it is on a network filesystem.
    """
    if path.is_dir():
        raise StoreError(
            f"{path} is a directory; the store is a file: give a file path such as "
            f"{path / 'master.sqlite3'}"
        )
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise StoreError(
            f"{path}: {folder} exists and is not a directory; choose another store path"
        ) from None
    except OSError as exc:
        if exc.errno in _READ_ONLY:
            raise StoreError(
                f"{path}: cannot create the folder {folder}, the location is read-only "
                f"({exc.strerror}); put the store in a writable folder (store=, app.store "
                "or MASTER_STORE)"
            ) from None
        raise StoreError(
            f"{path}: cannot create the folder {folder} ({exc.strerror}); choose another store path"
        ) from None
    if not folder.is_dir():
        raise StoreError(f"{path}: {folder} is not a directory; choose another store path")
    if _read_only(folder) or (path.exists() and not os.access(path, os.R_OK | os.W_OK)):
        raise StoreError(
            f"{path}: the store's folder or file is read-only; SQLite needs to write the "
            "file and its -wal and -shm files beside it: put the store in a writable folder "
            "(store=, app.store or MASTER_STORE)"
        )
    _check_local(path, allow_network)


def _read_only(folder: Path) -> bool:
    """Whether files cannot be created in ``folder`` (a read-only mount, or no write
    permission for this user)."""
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return True
    except OSError:
        return False
    return not os.access(folder, os.W_OK | os.X_OK)


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

    warnings.warn(f"{message} (allowed by app.allow_network_store)", UserWarning, stacklevel=4)


def connect(path: Path, busy_timeout_ms: int) -> sqlite3.Connection:
    """A connection to the store file in autocommit mode, usable from any thread (the
    store makes sure one thread at a time uses it)."""
    try:
        return sqlite3.connect(
            str(path),
            isolation_level=None,
            check_same_thread=False,
            timeout=busy_timeout_ms / 1000,
            cached_statements=64,
        )
    except sqlite3.Error as exc:
        raise describe(exc, path, "while opening it", busy_timeout_ms=busy_timeout_ms) from None


def describe(exc: sqlite3.Error, path: Path, doing: str, *, busy_timeout_ms: int) -> StoreError:
    """A ``sqlite3`` error as the one-line StoreError (StoreBusy for a lock) saying what
    to do."""
    code = getattr(exc, "sqlite_errorcode", None)
    primary = None if code is None else code & 0xFF
    text = str(exc)
    if primary in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) or "locked" in text:
        return StoreBusy(
            f"{path}: the store is locked by another process beyond the busy timeout "
            f"({busy_timeout_ms} ms) {doing}; nothing was written, try again"
        )
    if primary == sqlite3.SQLITE_READONLY or "readonly" in text:
        return StoreError(
            f"{path}: the store is read-only ({text}) {doing}; put it in a writable folder "
            "(store=, app.store or MASTER_STORE)"
        )
    if primary == sqlite3.SQLITE_CANTOPEN:
        return StoreError(
            f"{path}: cannot open the store ({text}); check that its folder exists and is writable"
        )
    if primary in (sqlite3.SQLITE_FULL,):
        return StoreError(f"{path}: the disk is full ({text}) {doing}; nothing was written")
    return StoreError(f"{path}: cannot open the store ({text}) {doing}")
