"""What a product is made of, reduced to a hash an open workbench can compare cheaply.

A product's *code* is every ``.py`` file in its folder (``components.py``, its helper
modules and packages), its ``manifest.yaml`` and everything under ``config/``; its *layout*
is the list of flow files. Flow files' contents are not part of it: each flow is hashed on
its own (a flow's text is what a run pins; see :mod:`master_sdk.orchestrator.pinning`).

Checking costs one ``stat`` per file and per folder; a file is read and hashed again only
when its size, mtime or inode changed (so an editor's atomic replace is seen, and an
unchanged product costs no reading at all). A folder is listed again only when its own
stat changed (adding, removing or renaming an entry changes it), and a listing is
remembered only once the folder has been still for a moment: timestamps are coarse, so a
folder changed twice within one tick could otherwise keep the stat of its first change.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

_SKIP_DIRS = frozenset({"__pycache__", "node_modules"})
_CODE_SUFFIXES = frozenset({".py"})
_CONFIG_SUFFIXES = frozenset({".yaml", ".yml", ".json"})
_SETTLED_NS = 100_000_000
"""A folder's listing is remembered once its last change is this much older than the
listing: well above the granularity of file systems with sub-second timestamps (a tick
of the kernel's coarse clock on Linux)."""
_SETTLED_WHOLE_NS = 2_000_000_000
"""The same for a file system whose timestamps are whole seconds (FAT has two)."""

# (name, path, is a folder) of a folder's entries, sorted by name
Listing = list[tuple[str, str, bool]]


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """A product's code hash and flow file names, as of one check."""

    code: str
    flows: tuple[str, ...]


class Fingerprinter:
    """Hashes product folders, remembering each file's hash until its stat changes."""

    def __init__(self) -> None:
        self._hashes: dict[str, tuple[tuple[int, int, int], str]] = {}
        # per folder: the stats of its files and the code hash they gave, so an unchanged
        # product (the usual case, checked on every use) costs its stats and no hashing
        self._last: dict[tuple[str, str | None], tuple[tuple[object, ...], str]] = {}
        # per folder: its stat when listed and what it held (see _SETTLED_NS)
        self._listings: dict[str, tuple[tuple[int, int, int], Listing]] = {}
        # per folder: what a listing of it holds for the code (see _Plan), kept with the
        # listing it was read from and reused while _listed returns that same listing
        self._plans: dict[str, _Plan] = {}
        self._lock = threading.Lock()

    def of(self, folder: Path, flows_dir: Path | None) -> Fingerprint:
        """The fingerprint of ``folder``; ``flows_dir`` (resolved) is listed, not hashed."""
        root = str(folder)
        skip = str(flows_dir) if flows_dir is not None else None
        files = _code_files(root, skip, self._listed, self._plans)
        stats = tuple(
            (relative, None if st is None else (st.st_mtime_ns, st.st_size, st.st_ino))
            for relative, _, st in files
        )
        last = self._last.get((root, skip))
        if last is not None and last[0] == stats:
            code = last[1]
        else:
            digest = hashlib.sha256()
            for relative, path, stat in files:
                digest.update(relative.encode("utf-8", "surrogateescape") + b"\0")
                digest.update(self._hash(path, stat).encode("ascii") + b"\0")
            code = digest.hexdigest()[:16]
            with self._lock:
                self._last[(root, skip)] = (stats, code)
        names: tuple[str, ...] = ()
        if skip is not None:
            names = tuple(
                name
                for name, _, _ in self._listed(skip) or ()
                if name.endswith((".yaml", ".yml")) and not name.startswith(".")
            )
        return Fingerprint(code=code, flows=names)

    def _listed(self, top: str) -> Listing | None:
        """The entries of folder ``top`` (None if it cannot be read), listed again only
        when the folder's stat changed since a listing taken after it had settled."""
        try:
            st = os.stat(top)
        except OSError:
            return None
        key = (st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
        known = self._listings.get(top)
        if known is not None and known[0] == key:
            return known[1]
        listed_at = time.time_ns()
        try:
            with os.scandir(top) as scan:
                entries = sorted((e.name, e.path, e.is_dir(follow_symlinks=False)) for e in scan)
        except OSError:
            return None
        changed = st.st_mtime_ns  # an entry added, removed or renamed
        settled = _SETTLED_NS if changed % 1_000_000_000 else _SETTLED_WHOLE_NS
        if listed_at - changed > settled:
            with self._lock:
                self._listings[top] = (key, entries)
        return entries

    def _hash(self, path: str, stat: os.stat_result | None) -> str:
        if stat is None:
            return "missing"
        key = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        with self._lock:
            known = self._hashes.get(path)
        if known is not None and known[0] == key:
            return known[1]
        try:
            with open(path, "rb") as handle:
                value = hashlib.sha256(handle.read()).hexdigest()
        except OSError:
            return "unreadable"
        with self._lock:
            self._hashes[path] = (key, value)
        return value


@dataclass(frozen=True, slots=True)
class _Plan:
    """A folder's entries sorted out for the code: its code files and the folders to walk,
    as ``(relative path, path)``; valid for the listing (and walk) it was made from."""

    listing: Listing
    relative_top: str
    skip: str | None
    files: tuple[tuple[str, str], ...]
    folders: tuple[tuple[str, str], ...]


def _plan(relative_top: str, skip: str | None, entries: Listing) -> _Plan:
    in_config = relative_top == "config" or relative_top.startswith("config/")
    files: list[tuple[str, str]] = []
    folders: list[tuple[str, str]] = []
    for name, path, is_dir in entries:
        if name.startswith("."):
            continue
        relative = f"{relative_top}/{name}" if relative_top else name
        if is_dir:
            # a linked folder is not followed (its imports would be refused anyway)
            if name not in _SKIP_DIRS and path != skip:
                folders.append((relative, path))
            continue
        suffix = os.path.splitext(name)[1]
        if (
            suffix in _CODE_SUFFIXES
            or (not relative_top and name == "manifest.yaml")
            or (in_config and suffix in _CONFIG_SUFFIXES)
        ):
            files.append((relative, path))
    return _Plan(entries, relative_top, skip, tuple(files), tuple(folders))


def _code_files(
    root: str,
    skip: str | None,
    listed: Callable[[str], Listing | None],
    plans: dict[str, _Plan],
) -> list[tuple[str, str, os.stat_result | None]]:
    """``(relative path, path, stat)`` of every file that makes up a product's code;
    ``listed`` gives a folder's entries, ``plans`` keeps what they held for the code while
    ``listed`` gives the same listing (a file's stat is taken on every call)."""
    found: list[tuple[str, str, os.stat_result | None]] = []
    pending = [("", root)]
    while pending:
        relative_top, top = pending.pop()
        entries = listed(top)
        if entries is None:
            continue
        plan = plans.get(top)
        if (
            plan is None
            or plan.listing is not entries
            or plan.relative_top != relative_top
            or plan.skip != skip
        ):
            plan = plans[top] = _plan(relative_top, skip, entries)
        pending.extend(plan.folders)
        for relative, path in plan.files:
            try:
                stat: os.stat_result | None = os.stat(path)  # follows a link: its target
            except OSError:
                stat = None
            found.append((relative, path, stat))
    found.sort()
    return found
