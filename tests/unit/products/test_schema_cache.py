"""Schemas found valid are remembered beside the product's bytecode: a fresh process that
compiles the same flow again does not import jsonschema; any change is checked again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

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
        [sys.executable, "-c", COMPILE, str(root)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1] == "True"


def _cache(project: Project) -> Path:
    return project.root / "products" / "demo" / "__pycache__" / CACHE_FILE


def test_a_valid_schema_is_checked_once_then_remembered(project: Project) -> None:
    """First process: checks (imports jsonschema) and writes the cache; second: neither."""
    project.flow("ask", FLOW % 10)
    assert _compile_in_a_fresh_process(project.root) is True
    assert len(json.loads(_cache(project).read_text())["valid"]) == 1
    assert _compile_in_a_fresh_process(project.root) is False


def test_a_changed_schema_is_checked_again(project: Project) -> None:
    """Editing the schema gives a new key: checked again, and both keys are kept."""
    project.flow("ask", FLOW % 10)
    _compile_in_a_fresh_process(project.root)
    project.flow("ask", FLOW % 20)
    assert _compile_in_a_fresh_process(project.root) is True
    assert len(json.loads(_cache(project).read_text())["valid"]) == 2


def test_nothing_is_written_when_bytecode_writing_is_off(project: Project) -> None:
    """PYTHONDONTWRITEBYTECODE: the cache obeys the same rule as Python's bytecode."""
    project.flow("ask", FLOW % 10)
    assert _compile_in_a_fresh_process(project.root, bytecode=False) is True
    assert not _cache(project).exists()


def test_an_invalid_schema_is_never_remembered(project: Project) -> None:
    """A schema jsonschema rejects raises every time, from a cache or not."""
    project.flow("ask", FLOW.replace("maxLength: %d", "maxLength: -1"))
    for _ in range(2):
        wb = project.open(store="memory://")
        with pytest.raises(FlowError, match="invalid JSON Schema"):
            wb.flow("demo/ask")
        wb.close()
    if _cache(project).exists():
        assert json.loads(_cache(project).read_text())["valid"] == []


def test_a_corrupt_cache_file_is_ignored(project: Project) -> None:
    """A cache file that is not what it should be is read as empty: the check runs."""
    project.flow("ask", FLOW % 10)
    _cache(project).parent.mkdir(exist_ok=True)
    _cache(project).write_text("not json", encoding="utf-8")
    assert _compile_in_a_fresh_process(project.root) is True
    assert _compile_in_a_fresh_process(project.root) is False
