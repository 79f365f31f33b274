"""Comparing a notebook's new outputs with its committed ones, cell by cell, as text.

Each code cell's outputs become one text: streams (stdout, then stderr, each merged however
the kernel chunked it), the ``text/plain`` of results and displays (a widget shows its text
fallback, e.g. ``waiting_approval · review · Approve/Reject``; an image shows as
``<image/png>``), and errors as ``Name: message``. Both sides are sanitised, then compared;
a difference is reported as a unified diff of expected vs got.

Cells tagged ``nbval-ignore-output`` or ``master-ignore-output`` are executed but not compared.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from master_sdk.notebook_tests.sanitize import Sanitizer

__all__ = [
    "IGNORE_TAGS",
    "CellMismatch",
    "cell_text",
    "compare_cells",
    "first_line",
    "strip_ansi",
]

IGNORE_TAGS = frozenset({"nbval-ignore-output", "master-ignore-output"})
"""Cell tags whose outputs are not compared."""

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@dataclass(frozen=True, slots=True)
class CellMismatch:
    """One cell whose outputs differ from the committed ones, or that failed to run.

    Attributes:
        index: the cell's index in the notebook (0-based, markdown cells counted); -1 when
            no one cell is to blame (refused network calls, a kernel that did not start).
        source: the cell's first line of source.
        kind: ``changed`` (outputs differ), ``error`` (the cell raised) or ``network``
            (a model call tried to leave the machine).
        detail: the unified diff (expected vs got), the traceback, or the refused calls.
    """

    index: int
    source: str
    kind: str
    detail: str

    def describe(self) -> str:
        """The cell, what went wrong, and the diff, as a few indented lines."""
        title = {
            "changed": "outputs differ",
            "error": "raised",
            "network": "refused (no network model calls in notebook tests)",
        }[self.kind]
        where = f"cell {self.index} · {self.source}" if self.index >= 0 else self.source
        lines = [f"  {where}", f"    {title}:"]
        lines.extend(f"      {line}" for line in self.detail.rstrip("\n").splitlines())
        return "\n".join(lines)


def strip_ansi(text: str) -> str:
    """``text`` without terminal colour codes (tracebacks carry them)."""
    return _ANSI.sub("", text)


def first_line(source: str | list[str]) -> str:
    """The first non-empty line of a cell's source (what a report names the cell by)."""
    text = "".join(source) if isinstance(source, list) else source
    for line in text.splitlines():
        if line.strip():
            return line.rstrip()
    return "(empty cell)"


def _text(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def cell_text(outputs: Iterable[Mapping[str, Any]]) -> str:
    """A code cell's outputs as the text that is compared (see the module docstring)."""
    parts: list[str] = []
    streams: dict[str, list[str]] = {}
    for output in outputs:
        kind = output.get("output_type")
        if kind == "stream":
            streams.setdefault(str(output.get("name", "stdout")), []).append(
                _text(output.get("text", ""))
            )
        elif kind in ("execute_result", "display_data"):
            data = output.get("data", {})
            if "text/plain" in data:
                parts.append(_text(data["text/plain"]))
            else:
                parts.append(" ".join(f"<{mime}>" for mime in sorted(data)))
        elif kind == "error":
            parts.append(f"{output.get('ename')}: {strip_ansi(str(output.get('evalue')))}")
    for name in ("stdout", "stderr"):
        if name in streams:
            text = "".join(streams.pop(name))
            parts.insert(0, text) if name == "stdout" else parts.append(f"[stderr]\n{text}")
    lines = [part if part.endswith("\n") else part + "\n" for part in parts if part]
    return "".join(lines)


def compare_cells(
    expected: list[Mapping[str, Any]],
    got: list[Mapping[str, Any]],
    sanitizer: Sanitizer,
) -> list[CellMismatch]:
    """The code cells whose sanitised output text differs, with a unified diff each.

    ``expected`` and ``got`` are the cells of the same notebook (same sources, same order):
    the committed one and the one just executed.
    """
    mismatches: list[CellMismatch] = []
    for index, (old, new) in enumerate(zip(expected, got, strict=True)):
        if old.get("cell_type") != "code":
            continue
        tags = set(old.get("metadata", {}).get("tags", []))
        if tags & IGNORE_TAGS:
            continue
        want = sanitizer.apply(cell_text(old.get("outputs", [])))
        have = sanitizer.apply(cell_text(new.get("outputs", [])))
        if want == have:
            continue
        diff = difflib.unified_diff(
            want.splitlines(), have.splitlines(), "expected", "got", lineterm="", n=2
        )
        mismatches.append(
            CellMismatch(index, first_line(old.get("source", "")), "changed", "\n".join(diff))
        )
    return mismatches
