"""The JSON caches kept beside bytecode, and the parsed-YAML cache built on them."""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from pathlib import Path

import pytest

from master_sdk.config import safe_yaml
from master_sdk.config.file_cache import JsonCache, beside_bytecode


@pytest.fixture(autouse=True)
def _bytecode_writing_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """Caches are written only when bytecode is (the test runner may turn it off)."""
    monkeypatch.setattr(sys, "dont_write_bytecode", False)


def test_values_survive_a_new_cache_object(tmp_path: Path) -> None:
    """What one process puts, a later one gets back (same file, new object)."""
    path = tmp_path / "__pycache__" / "c.json"
    JsonCache(path).put("k", {"a": [1, 2.5, None, True, "x"]})
    assert JsonCache(path).get("k") == {"a": [1, 2.5, None, True, "x"]}
    assert path.stat().st_mode & 0o077 == 0


def test_an_edited_entry_is_rejected(tmp_path: Path) -> None:
    """A value changed in the file without its checksum: the whole file is ignored."""
    path = tmp_path / "c.json"
    JsonCache(path).put("k", "original")
    document = json.loads(path.read_text(encoding="utf-8"))
    document["entries"]["k"] = "forged"
    path.write_text(json.dumps(document), encoding="utf-8")
    path.chmod(0o600)
    assert JsonCache(path).get("k") is None


@pytest.mark.parametrize("content", [b"", b"not json", b"[]", b'{"format": 1}', b"\xff\xfe"])
def test_a_corrupted_file_is_empty(tmp_path: Path, content: bytes) -> None:
    """Truncated, foreign or garbage files read as an empty cache."""
    path = tmp_path / "c.json"
    path.write_bytes(content)
    path.chmod(0o600)
    assert JsonCache(path).get("k") is None


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="file ownership is POSIX")
def test_a_file_others_may_write_is_ignored(tmp_path: Path) -> None:
    """A cache file writable by the group or others is not trusted."""
    path = tmp_path / "c.json"
    JsonCache(path).put("k", 1)
    path.chmod(0o620)
    assert JsonCache(path).get("k") is None


def test_the_oldest_entries_go_first(tmp_path: Path) -> None:
    """A full cache drops its oldest entries."""
    path = tmp_path / "c.json"
    cache = JsonCache(path, max_entries=2)
    for key in ("a", "b", "c"):
        cache.put(key, key)
    again = JsonCache(path)
    assert (again.get("a"), again.get("b"), again.get("c")) == (None, "b", "c")


def test_the_cache_is_written_when_bytecode_is_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """-B or PYTHONDONTWRITEBYTECODE keep .pyc files away, not these caches: a machine that
    sets it everywhere would otherwise pay the cold start in every process."""
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    cache = JsonCache(tmp_path / "c.json")
    cache.put("k", 1)
    assert cache.get("k") == 1
    assert JsonCache(tmp_path / "c.json").get("k") == 1


def test_the_cache_follows_the_pycache_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a pycache prefix, caches go where the bytecode goes."""
    monkeypatch.setattr(sys, "pycache_prefix", "/somewhere")
    assert beside_bytecode("/lib/pkg/mod.py", "c.json") == Path("/somewhere/lib/pkg/c.json")
    monkeypatch.setattr(sys, "pycache_prefix", None)
    assert beside_bytecode("/lib/pkg/mod.py", "c.json") == Path("/lib/pkg/__pycache__/c.json")


def test_cached_parses_equal_fresh_ones_and_are_private_copies() -> None:
    """A cached parse gives the same value as the parser, and changing what it returned
    does not change what the next call gets."""
    text = "a: 1\nb: [x, {c: 2.5}]\nd: null\n"
    first = safe_yaml.loads(text, cached=True)
    first["b"][1]["c"] = "changed"
    assert (
        safe_yaml.loads(text, cached=True)
        == safe_yaml.loads(text)
        == {
            "a": 1,
            "b": ["x", {"c": 2.5}],
            "d": None,
        }
    )


def test_values_json_cannot_hold_are_parsed_every_time() -> None:
    """Dates and non-string keys are not remembered (JSON would change them)."""
    assert safe_yaml.loads("when: 2026-01-02\n1: one\n", cached=True) == {
        "when": dt.date(2026, 1, 2),
        1: "one",
    }


def test_text_json_cannot_write_is_parsed_and_not_cached() -> None:
    """A lone surrogate (a YAML escape) cannot be written as UTF-8: the parse still works."""
    assert safe_yaml.loads('a: "\\ud800"\n', cached=True) == {"a": "\ud800"}
