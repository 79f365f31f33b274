"""What a product is made of, reduced to a hash an open workbench can compare cheaply.

A product's *code* is every ``.py`` file in its folder (``components.py``, its helper
modules and packages), its ``manifest.yaml`` and everything under ``config/``; its *layout*
is the list of flow files. Flow files' contents are not part of it: each flow is hashed on
its own (a flow's text is what a run pins; see :mod:`master_sdk.orchestrator.pinning`).

Checking costs one ``stat`` per file; a file is read and hashed again only when its size,
mtime or inode changed (so an editor's atomic replace is seen, and an unchanged product
costs no reading at all).
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path

_SKIP_DIRS = frozenset({"__pycache__", "node_modules"})
_CODE_SUFFIXES = frozenset({".py"})
_CONFIG_SUFFIXES = frozenset({".yaml", ".yml", ".json"})


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
        self._lock = threading.Lock()

    def of(self, folder: Path, flows_dir: Path | None) -> Fingerprint:
        """The fingerprint of ``folder``; ``flows_dir`` (resolved) is listed, not hashed."""
        root = str(folder)
        skip = str(flows_dir) if flows_dir is not None else None
        files = _code_files(root, skip)
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
            try:
                with os.scandir(skip) as entries:
                    names = tuple(
                        sorted(
                            e.name
                            for e in entries
                            if e.name.endswith((".yaml", ".yml")) and not e.name.startswith(".")
                        )
                    )
            except OSError:
                names = ()
        return Fingerprint(code=code, flows=names)

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


def _code_files(root: str, skip: str | None) -> list[tuple[str, str, os.stat_result | None]]:
    """``(relative path, path, stat)`` of every file that makes up a product's code."""
    found: list[tuple[str, str, os.stat_result | None]] = []
    pending = [("", root)]
    while pending:
        relative_top, top = pending.pop()
        try:
            with os.scandir(top) as scan:
                entries = sorted(scan, key=lambda e: e.name)
        except OSError:
            continue
        in_config = relative_top == "config" or relative_top.startswith("config/")
        for entry in entries:
            name = entry.name
            if name.startswith("."):
                continue
            relative = f"{relative_top}/{name}" if relative_top else name
            if entry.is_dir(follow_symlinks=False):
                # a linked folder is not followed (its imports would be refused anyway)
                if name in _SKIP_DIRS or entry.path == skip:
                    continue
                pending.append((relative, entry.path))
                continue
            suffix = os.path.splitext(name)[1]
            wanted = (
                suffix in _CODE_SUFFIXES
                or (not relative_top and name == "manifest.yaml")
                or (in_config and suffix in _CONFIG_SUFFIXES)
            )
            if wanted:
                try:
                    stat: os.stat_result | None = entry.stat()  # follows a link: its target
                except OSError:
                    stat = None
                found.append((relative, entry.path, stat))
    found.sort()
    return found
