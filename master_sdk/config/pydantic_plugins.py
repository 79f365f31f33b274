"""Skip pydantic's plugin scan when no pydantic plugin is installed, as last time.

The first pydantic model a process builds makes pydantic look for plugins: it reads the
entry points of every installed distribution (170 in a development environment; 10-20 ms,
about a tenth of a fresh ``master approve``). The answer only changes when distributions are
installed or removed, which changes the folders on ``sys.path``. So the answer "no plugin" is
remembered (a :class:`~master_sdk.config.file_cache.JsonCache` beside this module's bytecode)
under the folders' modification times and inodes, Python's and pydantic's versions; while that
key holds, pydantic is told there are no plugins instead of scanning. When plugins are
installed, or anything on ``sys.path`` changed, pydantic scans as it always does. The current
folder (``''`` on ``sys.path`` in a kernel or ``python -c``) is left out, as the compiled-flow
cache leaves it out: it changes whenever a file is made in it (a notebook saved, a store's
log created), which is no sign of an install.

Nothing here reads the environment: ``PYDANTIC_DISABLE_PLUGINS`` is still read by pydantic
itself whenever it scans.
"""

from __future__ import annotations

import hashlib
import os
import sys

from master_sdk.config.file_cache import JsonCache, beside_bytecode

_KEY_PREFIX = "pydantic-plugins:"


def _key() -> str | None:
    """A hash of what decides the installed plugins; None when pydantic is not found."""
    from importlib.util import find_spec

    spec = find_spec("pydantic")
    if spec is None or spec.origin is None:
        return None
    parts = [sys.version, spec.origin]
    here = os.getcwd()
    folders = [p for p in sys.path if p and os.path.abspath(p) != here]
    for entry in (spec.origin, *folders):
        try:
            info = os.stat(os.path.dirname(entry) if entry == spec.origin else entry or ".")
        except OSError:
            parts.append(f"{entry}:-")
            continue
        parts.append(f"{entry}:{info.st_mtime_ns}:{info.st_ino}")
    return _KEY_PREFIX + hashlib.sha256("\0".join(parts).encode()).hexdigest()


def _cache() -> JsonCache:
    return JsonCache(beside_bytecode(__file__, "master_sdk-pydantic-plugins.json"), max_entries=16)


def skip_scan_if_none() -> bool:
    """Before the first model is built: tell pydantic it has no plugins if none were found
    under the same ``sys.path`` before; else scan once and remember whether any exist.

    Returns whether pydantic's scan was skipped. Does nothing once pydantic has scanned.
    """
    loader = sys.modules.get("pydantic.plugin._loader")
    if loader is not None and getattr(loader, "_plugins", None) is not None:
        return False
    key = _key()
    if key is None:
        return False
    cache = _cache()
    if cache.get(key) != "none":
        from importlib.metadata import entry_points

        if entry_points(group="pydantic"):
            return False  # pydantic loads them
        cache.put(key, "none")
    from pydantic.plugin import _loader

    if getattr(_loader, "_plugins", False) is None and not _loader._loading_plugins:
        _loader._plugins = {}  # what its own scan would have found: nothing
        return True
    return False
