"""In a real kernel, a MasterError shows as its message; the traceback is one click or %tb away."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[3]
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _execute(cells: list[str], cwd: Path) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    NotebookClient(
        nb,
        timeout=120,
        kernel_name="python3",
        allow_errors=True,
        resources={"metadata": {"path": str(cwd)}},
    ).execute()
    return nb


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory) -> nbformat.NotebookNode:
    cwd = tmp_path_factory.mktemp("kernel")
    return _execute(
        [
            f"import sys; sys.path.insert(0, {str(REPO)!r})\nimport master_sdk as ms",
            "raise ms.FlowError('unknown tool', file='flows/f.yaml', flow='f', step='a', "
            "field='tool', hint='registered tools: echo')",
            "%tb",
            "raise ValueError('plain')",
        ],
        cwd,
    )


def _error(cell: nbformat.NotebookNode) -> nbformat.NotebookNode:
    (error,) = [o for o in cell.outputs if o.output_type == "error"]
    return error


def test_a_master_error_shows_its_message_not_library_frames(
    executed: nbformat.NotebookNode,
) -> None:
    """The error output is the name, the message naming file/flow/step/field, and a pointer."""
    error = _error(executed.cells[1])
    text = ANSI.sub("", "\n".join(error.traceback))
    assert error.ename == "FlowError"
    assert text.splitlines()[0] == (
        "FlowError: flows/f.yaml, flow 'f', step 'a', field 'tool': unknown tool "
        "(registered tools: echo)"
    )
    assert "%tb" in text
    assert "File " not in text and len(text.splitlines()) <= 3


def test_the_full_traceback_is_one_click_away(executed: nbformat.NotebookNode) -> None:
    """A collapsed 'Traceback' section holds the whole traceback."""
    html = [
        o.data["text/html"]
        for o in executed.cells[1].outputs
        if o.output_type == "display_data" and "text/html" in o.data
    ]
    assert html and html[0].startswith("<details><summary>Traceback</summary>")
    assert "Traceback (most recent call last)" in html[0]


def test_percent_tb_prints_the_full_traceback(executed: nbformat.NotebookNode) -> None:
    """%tb after a MasterError shows the usual IPython traceback."""
    text = ANSI.sub(
        "",
        "".join(
            "\n".join(o.get("traceback", [])) + o.get("text", "") for o in executed.cells[2].outputs
        ),
    )
    assert "FlowError" in text and "Traceback" in text and "raise ms.FlowError" in text


def test_other_exceptions_keep_ipythons_traceback(executed: nbformat.NotebookNode) -> None:
    """Only MasterError is shortened; a ValueError shows as IPython always shows it."""
    text = ANSI.sub("", "\n".join(_error(executed.cells[3]).traceback))
    assert "Traceback" in text and "%tb" not in text
