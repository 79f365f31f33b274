"""Schemas found valid are remembered in the library's cache: a fresh process that compiles
the same flow again does not import jsonschema; any change is checked again. Each test's
processes keep the library's caches under their own ``pycache_prefix``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import master_sdk.products.schema_cache as schema_cache
from master_sdk.errors import FlowError
from master_sdk.products.schema_cache import CACHE_FILE
from tests.conftest import Project

FLOW = """
id: ask
inputs:
  type: object
  properties: {text: {type: string, maxLength: %d}}
steps:
  - {id: a, type: tool, tool: echo, input: {text: "{{ inputs.text }}"}}
"""

COMPILE = """
import sys
import master_sdk as ms
wb = ms.Workbench.open(sys.argv[1], store="memory://")
wb.flow("demo/ask")
print("jsonschema" in sys.modules)
wb.close()
"""


def _compile_in_a_fresh_process(root: Path, *, bytecode: bool = True) -> bool:
    """Compile demo/ask in a new interpreter; return whether it imported jsonschema."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if not bytecode:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    done = subprocess.run(
        [sys.executable, "-X", f"pycache_prefix={_prefix(root)}", "-c", COMPILE, str(root)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1] == "True"


def _prefix(root: Path) -> Path:
    return root.parent / "pycache"


def _cache(project: Project) -> Path:
    folder = os.path.dirname(os.path.abspath(schema_cache.__file__))
    return _prefix(project.root) / folder.lstrip(os.sep) / CACHE_FILE


def _valid(project: Project) -> list[str]:
    entries = json.loads(_cache(project).read_text())["entries"]
    return [k for k, v in entries.items() if v is True]


def test_a_valid_schema_is_checked_once_then_remembered(project: Project) -> None:
    """First process: checks (imports jsonschema) and writes the cache; second: neither."""
    project.flow("ask", FLOW % 10)
    assert _compile_in_a_fresh_process(project.root) is True
    assert len(_valid(project)) == 1
    assert not (project.root / "products" / "demo" / "__pycache__").exists()
    assert _compile_in_a_fresh_process(project.root) is False


def test_a_changed_schema_is_checked_again(project: Project) -> None:
    """Editing the schema gives a new key: checked again, and both keys are kept."""
    project.flow("ask", FLOW % 10)
    _compile_in_a_fresh_process(project.root)
    project.flow("ask", FLOW % 20)
    assert _compile_in_a_fresh_process(project.root) is True
    assert len(_valid(project)) == 2


def test_the_cache_serves_processes_without_bytecode(project: Project) -> None:
    """PYTHONDONTWRITEBYTECODE=1 (set everywhere on many machines) keeps .pyc files away,
    not this cache: the second process does not import jsonschema either."""
    project.flow("ask", FLOW % 10)
    assert _compile_in_a_fresh_process(project.root, bytecode=False) is True
    assert _compile_in_a_fresh_process(project.root, bytecode=False) is False


def test_an_invalid_schema_is_never_remembered(project: Project) -> None:
    """A schema jsonschema rejects raises every time, from a cache or not."""
    project.flow("ask", FLOW.replace("maxLength: %d", "maxLength: -1"))
    for _ in range(2):
        wb = project.open(store="memory://")
        with pytest.raises(FlowError, match="invalid JSON Schema"):
            wb.flow("demo/ask")
        wb.close()
    for _ in range(2):  # fresh processes with their own cache: raised, nothing remembered
        with pytest.raises(AssertionError, match="invalid JSON Schema"):
            _compile_in_a_fresh_process(project.root)
    if _cache(project).exists():
        assert _valid(project) == []


def test_a_corrupt_cache_file_is_ignored(project: Project) -> None:
    """A cache file that is not what it should be is read as empty: the check runs."""
    project.flow("ask", FLOW % 10)
    _cache(project).parent.mkdir(parents=True, exist_ok=True)
    _cache(project).write_text("not json", encoding="utf-8")
    assert _compile_in_a_fresh_process(project.root) is True
    assert _compile_in_a_fresh_process(project.root) is False
