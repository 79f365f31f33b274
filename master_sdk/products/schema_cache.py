"""Which JSON Schemas were already found valid, kept in the library's own cache.

Compiling a flow checks every JSON Schema it declares against its metaschema. That check
needs ``jsonschema``, whose import costs more than everything else a fresh ``master
approve`` does; and the answer only changes when the schema, ``jsonschema`` or this library
changes. So a schema found valid is remembered in a :class:`~master_sdk.config.file_cache.
JsonCache` beside the library's bytecode (trusted only when it is the user's own, private,
of this library version and with a matching checksum; written under ``-B`` too, and never
in the project's folders), under a key made of the schema's canonical JSON, this library's
version and the installed ``jsonschema`` and checking code. Any change to one of those gives
a new key, which is checked again. Invalid schemas are never remembered: their error is
raised every time.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from master_sdk.config.file_cache import JsonCache, beside_bytecode

CACHE_FILE = "master_sdk-valid-schemas.json"
_FORMAT = 2
_MAX_KEYS = 512


def _environment() -> str:
    """What a schema check depends on besides the schema: this library's version and the
    files of the checking code and of ``jsonschema`` (found without importing it)."""
    from master_sdk import __version__
    from master_sdk.orchestrator import validation

    parts = [str(_FORMAT), __version__]
    spec = importlib.util.find_spec("jsonschema")
    for origin in (validation.__file__, spec.origin if spec is not None else None):
        try:
            stat = os.stat(origin) if origin else None
        except OSError:
            stat = None
        parts.append(f"{origin}:{stat.st_mtime_ns}:{stat.st_size}" if stat else "-")
    return "\0".join(parts)


class SchemaCache:
    """Remembered valid schemas (see the module docstring); one per process is enough."""

    def __init__(self, path: os.PathLike[str] | str | None = None) -> None:
        self._cache = JsonCache(
            beside_bytecode(__file__, CACHE_FILE) if path is None else Path(path),
            max_entries=_MAX_KEYS,
        )
        self._env: str | None = None
        self._lock = threading.Lock()

    @property
    def path(self) -> Path:
        """The cache file."""
        return self._cache.path

    def key(self, schema: Mapping[str, Any]) -> str | None:
        """The cache key of a schema (None when it cannot be serialised canonically)."""
        with self._lock:
            if self._env is None:
                self._env = _environment()
        try:
            text = json.dumps(schema, sort_keys=True, separators=(",", ":"), default=repr)
        except (TypeError, ValueError):
            return None
        return hashlib.sha256(f"{self._env}\0{text}".encode()).hexdigest()

    def known(self, key: str) -> bool:
        """Whether the schema with ``key`` was found valid before."""
        return self._cache.get(key) is True

    def remember(self, key: str) -> None:
        """Record a schema found valid (written at once, atomically; best effort)."""
        self._cache.put(key, True)
