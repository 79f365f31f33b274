"""Which JSON Schemas of a product were already found valid, kept beside its bytecode.

Compiling a flow checks every JSON Schema it declares against its metaschema. That check
needs ``jsonschema``, whose import costs more than everything else a fresh ``master
approve`` does; and the answer only changes when the schema, ``jsonschema`` or this library
changes. So a schema found valid is remembered, in the product's ``__pycache__`` folder
(where Python keeps the product's bytecode, and under the same rules: nothing is written
when bytecode writing is off, a folder that cannot be written is left alone), under a key
made of the schema's canonical JSON, this library's version and the installed
``jsonschema`` and checking code. Any change to one of those gives a new key, which is
checked again. Invalid schemas are never remembered: their error is raised every time.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
import threading
from collections.abc import Mapping
from contextlib import suppress
from pathlib import Path
from typing import Any

CACHE_FILE = "master_sdk-valid-schemas.json"
_FORMAT = 1
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
    """Remembered valid schemas of one product folder (see the module docstring)."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "__pycache__" / CACHE_FILE
        self._keys: set[str] | None = None
        self._env: str | None = None
        self._lock = threading.Lock()

    def key(self, schema: Mapping[str, Any]) -> str | None:
        """The cache key of a schema (None when it cannot be serialised canonically)."""
        if self._env is None:
            self._env = _environment()
        try:
            text = json.dumps(schema, sort_keys=True, separators=(",", ":"), default=repr)
        except (TypeError, ValueError):
            return None
        return hashlib.sha256(f"{self._env}\0{text}".encode()).hexdigest()

    def known(self, key: str) -> bool:
        """Whether the schema with ``key`` was found valid before."""
        with self._lock:
            if self._keys is None:
                self._keys = self._read()
            return key in self._keys

    def remember(self, key: str) -> None:
        """Record a schema found valid (written at once, atomically; best effort)."""
        with self._lock:
            if self._keys is None:
                self._keys = self._read()
            if key in self._keys:
                return
            self._keys.add(key)
            if sys.dont_write_bytecode:
                return
            keys = sorted(self._keys)[-_MAX_KEYS:]
            temp = self.path.with_name(f"{CACHE_FILE}.{os.getpid()}.{threading.get_ident()}")
            try:
                self.path.parent.mkdir(exist_ok=True)
                temp.write_text(json.dumps({"format": _FORMAT, "valid": keys}), encoding="utf-8")
                os.replace(temp, self.path)
            except OSError:
                with suppress(OSError):
                    temp.unlink(missing_ok=True)

    def _read(self) -> set[str]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return set()
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            return set()
        valid = data.get("valid")
        return {k for k in valid if isinstance(k, str)} if isinstance(valid, list) else set()
