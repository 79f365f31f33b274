"""Safe YAML: the only way master_sdk reads YAML.

``yaml.safe_load`` semantics plus what a governed platform needs:

* a size cap (1 MB), checked before a file is read, and reading stops at the cap;
* aliases refused, so an alias bomb ("billion laughs") fails at the first ``*name``
  instead of exhausting memory (anchors alone are harmless and allowed);
* nesting capped at 100 levels, so ``[[[[...`` fails with a clear error instead of
  overflowing the parser's recursion;
* duplicate keys refused (silently keeping the last one hides mistakes), including keys
  that differ only in spelling (``1`` and ``0x1``, ``yes`` and ``true``).

``yaml.load`` itself is banned elsewhere by ruff (S506); this module is the one use, with
a loader derived from ``SafeLoader``.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

MAX_YAML_BYTES = 1_000_000
MAX_YAML_DEPTH = 100


class YamlProblem(ValueError):
    """A YAML file could not be read; ``line`` is 1-based when known."""

    def __init__(self, message: str, line: int | None = None) -> None:
        self.line = line
        super().__init__(f"line {line}: {message}" if line else message)


def loads(text: str, *, cached: bool = False) -> Any:
    """Parse YAML text safely (see module docstring).

    ``cached=True``: remember the result under the hash of the text (see
    :func:`parse_cache`), so the next process given the same text skips the parser and
    PyYAML's import. Only for text that holds no secrets; a result JSON cannot hold exactly
    (dates, non-string keys, ...) and any error are never remembered.
    """
    if len(text) > MAX_YAML_BYTES:
        raise YamlProblem(f"text is longer than {MAX_YAML_BYTES} characters")
    if not cached:
        from master_sdk.config.yaml_parser import parse

        return parse(text)
    cache = parse_cache()
    key = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    hit = cache.get(key)
    if isinstance(hit, list) and len(hit) == 1:
        return _copy(hit[0])  # callers may change what they get; the cache must not
    from master_sdk.config.yaml_parser import parse

    value = parse(text)
    if _json_exact(value, 0):
        cache.put(key, [_copy(value)])
    return value


def read_text(path: Path) -> str:
    """A YAML file's text, refusing files over the size cap without reading past it.

    Raises:
        YamlProblem: the file is too large or is not UTF-8 text.
        OSError: the file cannot be read.
    """
    with path.open("rb") as handle:
        data = handle.read(MAX_YAML_BYTES + 1)
    if len(data) > MAX_YAML_BYTES:
        raise YamlProblem(f"file is larger than {MAX_YAML_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise YamlProblem(f"not UTF-8 text (byte {exc.start})") from None


def load_file(path: Path, *, cached: bool = False) -> Any:
    """Read and parse a YAML file, refusing files over the size cap before reading them
    (``cached``: see :func:`loads`)."""
    return loads(read_text(path), cached=cached)


_CACHES: dict[str, Any] = {}


def parse_cache() -> Any:
    """The parsed-YAML cache of this library install (a
    :class:`~master_sdk.config.file_cache.JsonCache` beside this module's bytecode)."""
    cache = _CACHES.get("parsed")
    if cache is None:
        from master_sdk.config.file_cache import JsonCache, beside_bytecode

        cache = JsonCache(beside_bytecode(__file__, "master_sdk-parsed-yaml.json"), max_entries=128)
        cache = _CACHES.setdefault("parsed", cache)
    return cache


def _copy(value: Any) -> Any:
    if type(value) is dict:
        return {k: _copy(v) for k, v in value.items()}
    if type(value) is list:
        return [_copy(v) for v in value]
    return value


def _json_exact(value: Any, depth: int) -> bool:
    """Whether JSON gives ``value`` back exactly (same types, same keys, same order)."""
    if depth > MAX_YAML_DEPTH + 1:
        return False
    if value is None or isinstance(value, bool | str):
        return True
    if isinstance(value, int):
        return type(value) is int
    if isinstance(value, float):
        return type(value) is float and math.isfinite(value)
    if type(value) is list:
        return all(_json_exact(item, depth + 1) for item in value)
    if type(value) is dict:
        return all(type(k) is str and _json_exact(v, depth + 1) for k, v in value.items())
    return False
