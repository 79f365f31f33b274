"""Small JSON caches kept beside bytecode, read only when they are the user's own.

A fresh process (``master approve``, a notebook's first cell) pays for work whose answer
only changes when some files change: parsing the project's YAML, scanning every installed
distribution for pydantic plugins. :class:`JsonCache` remembers such answers in one JSON
file under a ``__pycache__`` folder of the library (or under ``sys.pycache_prefix``); a
folder that cannot be written is left alone. Unlike bytecode, these files are written when
bytecode writing is off (``-B``, ``PYTHONDONTWRITEBYTECODE``): that switch is set in many
images and CI machines to keep ``.pyc`` files out of source trees, these caches live only in
the library's own folder, and without them every process would pay the cold start again.
(The product schema cache, which lives in the project's folders, does follow ``-B``.)

The file is data, never code (JSON, not pickle), and it is trusted only as far as the files
it stands for: it is ignored unless it is a regular file owned by the user running the
process and not writable by anyone else, unless its format and this library's version match,
and unless its checksum matches its entries (a truncated, corrupted or hand-edited file is
ignored and rewritten). Every entry is keyed by a hash of what it was computed from, so an
edit gives a new key and the entry is computed again; callers validate what they read as
they would a fresh answer.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
import threading
from contextlib import suppress
from pathlib import Path
from typing import Any

_FORMAT = 1


def _version() -> str:
    from master_sdk import __version__

    return f"{__version__}|{sys.version_info[:3]}"


def _checksum(entries: dict[str, Any]) -> str:
    text = json.dumps(entries, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{_version()}\0{text}".encode("utf-8", "surrogatepass")).hexdigest()


def beside_bytecode(module_file: str, name: str) -> Path:
    """Where a cache file ``name`` goes for the module at ``module_file``: its folder's
    ``__pycache__``, or under ``sys.pycache_prefix`` when one is set (``-X
    pycache_prefix``, ``PYTHONPYCACHEPREFIX``), as Python puts the bytecode."""
    folder = os.path.dirname(os.path.abspath(module_file))
    prefix = sys.pycache_prefix
    if prefix:
        return Path(prefix) / folder.lstrip(os.sep) / name
    return Path(folder) / "__pycache__" / name


def trusted_file(path: Path) -> bool:
    """Whether ``path`` is a regular file owned by this user and writable only by them."""
    try:
        info = os.lstat(path)
    except OSError:
        return False
    if not stat.S_ISREG(info.st_mode):
        return False
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        return False
    return not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


class JsonCache:
    """Entries ``key -> JSON value`` in one file (see the module docstring).

    ``max_entries`` bounds the file: the oldest entries are dropped first.
    """

    def __init__(self, path: Path, *, max_entries: int = 256) -> None:
        self.path = path
        self.max_entries = max_entries
        self._entries: dict[str, Any] | None = None
        self._lock = threading.Lock()

    def get(self, key: str) -> Any | None:
        """The value stored under ``key``, or None."""
        with self._lock:
            if self._entries is None:
                self._entries = self._read()
            return self._entries.get(key)

    def put(self, key: str, value: Any) -> None:
        """Store ``value`` (JSON data) under ``key``; written at once, atomically, best
        effort (a cache that cannot be written only costs the next process some time)."""
        with self._lock:
            if self._entries is None:
                self._entries = self._read()
            if self._entries.get(key) == value:
                return
            self._entries.pop(key, None)
            self._entries[key] = value
            while len(self._entries) > self.max_entries:
                del self._entries[next(iter(self._entries))]
            self._write(self._entries)

    def _read(self) -> dict[str, Any]:
        if not trusted_file(self.path):
            return {}
        try:
            with open(self.path, encoding="utf-8") as handle:
                data = json.load(handle)
        except (OSError, ValueError, RecursionError):
            return {}
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            return {}
        entries = data.get("entries")
        if data.get("version") != _version() or not isinstance(entries, dict):
            return {}
        if data.get("checksum") != _checksum(entries):
            return {}
        return entries

    def _write(self, entries: dict[str, Any]) -> None:
        temp = self.path.with_name(f"{self.path.name}.{os.getpid()}.{threading.get_ident()}")
        try:
            document = {
                "format": _FORMAT,
                "version": _version(),
                "checksum": _checksum(entries),
                "entries": entries,
            }
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # created private: the cache is trusted only when no one else can write it
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(document, handle, ensure_ascii=False, separators=(",", ":"))
            os.replace(temp, self.path)
        except (OSError, TypeError, ValueError):
            with suppress(OSError):
                temp.unlink(missing_ok=True)
