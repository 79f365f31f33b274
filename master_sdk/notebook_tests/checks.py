"""``master test``: run notebooks against their committed outputs, or refresh them.

:func:`check_notebook` executes a notebook in isolation (:mod:`.runner`) and compares each
code cell's outputs with the committed ones (:mod:`.compare`); :func:`update_notebook`
writes the new outputs back with a minimal diff. :func:`format_report` is what the command
prints.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from master_sdk.errors import NotFound
from master_sdk.notebook_tests.compare import CellMismatch, cell_text, compare_cells
from master_sdk.notebook_tests.runner import CELL_TIMEOUT_S, execute_notebook
from master_sdk.notebook_tests.sanitize import Sanitizer

__all__ = [
    "DEFAULT_PATTERNS",
    "NotebookResult",
    "check_notebook",
    "find_notebooks",
    "format_report",
    "run_tests",
    "update_notebook",
]

DEFAULT_PATTERNS = ("products/*/notebooks/*.ipynb", "notebooks/*.ipynb")
"""Where ``master test`` looks when given no paths, relative to the project root."""

_WIDGETS = "widgets"
_VIEW_MIME = "application/vnd.jupyter.widget-view+json"


@dataclass
class NotebookResult:
    """The outcome for one notebook.

    Attributes:
        path: the notebook file.
        mismatches: cells whose outputs differ, the cell that raised, refused network calls.
        seconds: execution wall time.
        written: whether ``update`` rewrote the file.
        unrecorded: the notebook was never executed (no code cell has outputs or an
            execution count, as a fresh starter notebook): it only had to run cleanly, its
            outputs were not compared; ``update`` records them.
    """

    path: Path
    mismatches: list[CellMismatch] = field(default_factory=list)
    seconds: float = 0.0
    written: bool = False
    unrecorded: bool = False

    @property
    def ok(self) -> bool:
        """True when every cell ran and matched and no model call tried the network."""
        return not self.mismatches


def find_notebooks(paths: Sequence[str | Path], root: Path) -> list[Path]:
    """The notebooks to run: the files given, the ``*.ipynb`` under folders given, or (no
    paths) :data:`DEFAULT_PATTERNS` under ``root``. Jupyter's checkpoint copies are skipped.

    Raises:
        NotFound: a path given does not exist.
    """
    found: list[Path] = []
    if not paths:
        for pattern in DEFAULT_PATTERNS:
            found.extend(sorted(root.glob(pattern)))
    for given in paths:
        path = Path(given)
        if not path.exists():
            raise NotFound(f"{path}: no such notebook or folder")
        found.extend(sorted(path.rglob("*.ipynb")) if path.is_dir() else [path])
    unique = dict.fromkeys(p.resolve() for p in found if ".ipynb_checkpoints" not in p.parts)
    return list(unique)


def check_notebook(
    path: Path,
    *,
    sanitizer: Sanitizer | None = None,
    timeout: int = CELL_TIMEOUT_S,
) -> NotebookResult:
    """Execute ``path`` in isolation and compare it with its committed outputs.

    A notebook never executed (see :attr:`NotebookResult.unrecorded`) only has to run
    cleanly.

    Args:
        path: the notebook (not written).
        sanitizer: default: the shipped rules plus a ``sanitize.cfg`` next to the notebook.
        timeout: seconds one cell may run.
    """
    committed = _read(path)
    execution = execute_notebook(path, timeout=timeout)
    rules = sanitizer if sanitizer is not None else Sanitizer.for_notebook(path)
    result = NotebookResult(path, seconds=execution.seconds, unrecorded=_unrecorded(committed))
    if result.unrecorded:
        # a notebook never executed (a fresh starter) has nothing to compare with: it must
        # run cleanly, and says so in the report until `--update` records its outputs
        if execution.error is not None:
            result.mismatches.append(execution.error)
    elif execution.error is not None:
        # cells after the one that raised did not run: compare only those before it
        stop = execution.error.index
        result.mismatches = compare_cells(
            committed.cells[:stop], execution.notebook.cells[:stop], rules
        )
        result.mismatches.append(execution.error)
    else:
        result.mismatches = compare_cells(committed.cells, execution.notebook.cells, rules)
    if execution.blocked:
        result.mismatches.append(
            CellMismatch(-1, "model calls", "network", "\n".join(execution.blocked))
        )
    return result


def update_notebook(
    path: Path,
    *,
    sanitizer: Sanitizer | None = None,
    timeout: int = CELL_TIMEOUT_S,
) -> NotebookResult:
    """Re-execute ``path`` and write its new outputs in place, keeping the diff minimal.

    A cell whose outputs read the same as before (after sanitising) keeps its committed
    outputs and execution count byte for byte; the stored widget state is replaced only if
    a cell that shows widgets changed. Sources and cell metadata are never touched. The
    file is written only if something changed, and not at all if a cell raised or a model
    call tried the network (both are reported as in :func:`check_notebook`).
    """
    committed = _read(path)
    execution = execute_notebook(path, timeout=timeout)
    rules = sanitizer if sanitizer is not None else Sanitizer.for_notebook(path)
    result = NotebookResult(path, seconds=execution.seconds)
    if execution.error is not None:
        result.mismatches.append(execution.error)
    if execution.blocked:
        result.mismatches.append(
            CellMismatch(-1, "model calls", "network", "\n".join(execution.blocked))
        )
    if result.mismatches:
        return result
    merged = merge_outputs(committed, execution.notebook, rules)
    text: str = nbformat.writes(merged)  # type: ignore[no-untyped-call]  # untyped
    text = text if text.endswith("\n") else text + "\n"
    if text != path.read_text(encoding="utf-8"):
        path.write_text(text, encoding="utf-8")
        result.written = True
    return result


def merge_outputs(
    committed: NotebookNode, executed: NotebookNode, rules: Sanitizer
) -> NotebookNode:
    """The committed notebook with the executed outputs where they read differently.

    See :func:`update_notebook`. Neither argument is modified.
    """
    merged = copy.deepcopy(committed)
    changed_widgets = False
    for old, new in zip(merged.cells, executed.cells, strict=True):
        if old.get("cell_type") != "code":
            continue
        same = rules.apply(cell_text(old.get("outputs", []))) == rules.apply(
            cell_text(new.get("outputs", []))
        )
        if same and _has_view(old) == _has_view(new):
            continue
        old["outputs"] = copy.deepcopy(new.get("outputs", []))
        old["execution_count"] = new.get("execution_count")
        changed_widgets = changed_widgets or _has_view(new)
    new_state = executed.metadata.get(_WIDGETS)
    if changed_widgets or (_WIDGETS not in merged.metadata and new_state):
        # the new views point at the new state: every cell showing a widget takes its new
        # outputs too, so no view refers to a model that is no longer stored
        for old, new in zip(merged.cells, executed.cells, strict=True):
            if old.get("cell_type") == "code" and (_has_view(old) or _has_view(new)):
                old["outputs"] = copy.deepcopy(new.get("outputs", []))
                old["execution_count"] = new.get("execution_count")
        if new_state:
            merged.metadata[_WIDGETS] = copy.deepcopy(new_state)
        else:
            merged.metadata.pop(_WIDGETS, None)
    for key in ("kernelspec", "language_info"):
        if key not in merged.metadata and key in executed.metadata:
            merged.metadata[key] = copy.deepcopy(executed.metadata[key])
    return merged


def _unrecorded(nb: NotebookNode) -> bool:
    code = [c for c in nb.cells if c.get("cell_type") == "code" and c.get("source", "").strip()]
    return bool(code) and not any(c.get("outputs") or c.get("execution_count") for c in code)


def _has_view(cell: NotebookNode) -> bool:
    return any(_VIEW_MIME in o.get("data", {}) for o in cell.get("outputs", []))


def _read(path: Path) -> NotebookNode:
    nb: NotebookNode = nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]  # untyped
    return nb


def format_report(results: Iterable[NotebookResult], *, root: Path | None = None) -> str:
    """What ``master test`` prints: one line per notebook, and for each failing one the
    cells (index and first line of source) with a unified diff of expected vs got."""
    lines: list[str] = []
    results = list(results)
    for result in results:
        name = _relative(result.path, root)
        if result.ok:
            note = " (outputs updated)" if result.written else ""
            if result.unrecorded and not result.written:
                note = f" (ran cleanly; no outputs recorded yet: master test --update {name})"
            lines.append(f"ok    {name}  {result.seconds:.1f} s{note}")
            continue
        lines.append(f"FAIL  {name}  {result.seconds:.1f} s")
        lines.extend(m.describe() for m in result.mismatches)
        if all(m.kind == "changed" for m in result.mismatches):
            lines.append(f"  if the new outputs are right: master test --update {name}")
    failed = sum(1 for r in results if not r.ok)
    lines.append(
        f"{len(results) - failed} passed, {failed} failed" if results else "no notebooks found"
    )
    return "\n".join(lines)


def run_tests(
    paths: Sequence[str | Path] = (),
    *,
    root: str | Path | None = None,
    update: bool = False,
    echo: Callable[[str], object] = print,
) -> int:
    """``master test [PATHS] [--update]``: check (or refresh) notebooks, print the report.

    Args:
        paths: notebooks or folders (default: :data:`DEFAULT_PATTERNS` under the root).
        root: the project folder (default: found upward from the current directory).
        update: refresh the committed outputs instead of comparing with them.
        echo: where each notebook's lines go as it finishes.

    Returns:
        The exit code: 0 when every notebook passed, 1 otherwise (none found included).
    """
    from master_sdk.config.loader import find_root

    base = Path(root).resolve() if root is not None else find_root()
    notebooks = find_notebooks(paths, base)
    action = update_notebook if update else check_notebook
    results = []
    for path in notebooks:
        result = action(path)
        results.append(result)
        echo(format_report([result], root=base).rsplit("\n", 1)[0])
    failed = sum(1 for r in results if not r.ok)
    echo(f"{len(results) - failed} passed, {failed} failed" if results else "no notebooks found")
    return 1 if failed or not results else 0


def _relative(path: Path, root: Path | None) -> str:
    if root is not None:
        try:
            return str(path.resolve().relative_to(root.resolve()))
        except ValueError:
            pass
    return str(path)
