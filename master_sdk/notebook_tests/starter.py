"""A starter notebook for a product flow that passes ``master test`` as soon as it exists.

:func:`write_product_notebook` writes it to ``products/<product>/notebooks/<flow>.ipynb`` and
executes it once, so its outputs are committed with it (what a product scaffold calls)::

    >>> from master_sdk.notebook_tests import write_product_notebook
    >>> write_product_notebook(".", "triage", "classify", inputs={"text": "Printer on fire"},
    ...                        answers={"audience": {"audience": "the board"}})  # doctest: +SKIP
    PosixPath('products/triage/notebooks/classify.ipynb')

:func:`product_notebook` only builds the notebook (an ``nbformat`` node, no outputs); then
``master test --update`` executes it once and commits its outputs. The cells start the flow,
answer every form in code (approving each approval and filling each input form from
``answers``), assert that the run completed, and show its steps and trace as frames.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nbformat import NotebookNode

__all__ = ["product_notebook", "product_notebook_text", "write_product_notebook"]


def product_notebook_text(
    product: str,
    flow: str,
    *,
    inputs: Mapping[str, Any] | None = None,
    answers: Mapping[str, Mapping[str, Any]] | None = None,
    approver: str = "notebook-test",
) -> str:
    """The starter notebook as ``.ipynb`` text (nbformat 4.5, no outputs yet).

    Built without nbformat, so a product scaffold can write it where only the core package
    is installed; the arguments are those of :func:`product_notebook`.
    """
    ref = f"{product}/{flow}"
    sources = [
        (
            "markdown",
            f"# `{ref}` end to end\n\n"
            "A regression test of the flow: `master test` executes this notebook in a fresh "
            "kernel (throwaway store, deterministic ids and clock, no network models) and "
            "compares every output with the one committed here; `master test --update` "
            "records them.",
        ),
        (
            "code",
            "import master_sdk as ms\n\n"
            "wb = ms.Workbench.open()\n"
            f"run = wb.run({ref!r}, inputs={dict(inputs or {})!r})\n"
            "run",
        ),
        (
            "code",
            f"ANSWERS = {_literal(answers or {})}\n\n"
            "# answer every form in code, as a reviewer would by clicking\n"
            'while run.status in ("waiting_approval", "waiting_input"):\n'
            "    step = run.waiting_for['step']\n"
            "    form = run.form()\n"
            '    if run.status == "waiting_approval":\n'
            f"        form.user.value = {approver!r}\n"
            '        form.comment.value = "approved by the notebook"\n'
            "        form.approve_button.click()\n"
            "    else:\n"
            "        for name, value in ANSWERS.get(step, {}).items():\n"
            "            form.fields[name].value = value\n"
            "        form.submit_button.click()\n"
            "        assert form.status == 'submitted', (step, form.status, form.errors)\n"
            "    print(step, '->', run.status)\n"
            'assert run.status == "completed", (run.status, run.error)\n'
            "run.output",
        ),
        (
            "code",
            "steps = run.steps()\n"
            'assert (steps["status"].isin(["completed", "skipped"])).all()\n'
            'steps[["step_id", "step_type", "status", "attempt", "duration_ms"]]',
        ),
        (
            "code",
            "trace = run.trace()\n"
            'assert trace["event"].iloc[-1] == "run_completed"\n'
            'trace.groupby("event", observed=True).size().rename("events").to_frame()',
        ),
        ("code", "wb.close()"),
    ]
    cells: list[dict[str, Any]] = []
    for index, (kind, source) in enumerate(sources):
        cell: dict[str, Any] = {
            "cell_type": kind,
            "id": f"{flow}-{index}",
            "metadata": {},
            "source": source.splitlines(keepends=True),
        }
        if kind == "code":
            cell.update(execution_count=None, outputs=[])
        cells.append(cell)
    notebook = {
        "cells": cells,
        "metadata": {
            "kernelspec": {
                "display_name": "Python 3 (ipykernel)",
                "language": "python",
                "name": "python3",
            },
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    # the layout Jupyter and nbformat write, so a first save in Jupyter changes nothing else
    return json.dumps(notebook, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def product_notebook(
    product: str,
    flow: str,
    *,
    inputs: Mapping[str, Any] | None = None,
    answers: Mapping[str, Mapping[str, Any]] | None = None,
    approver: str = "notebook-test",
) -> NotebookNode:
    """A notebook that runs ``product/flow`` end to end and asserts on its frames.

    Args:
        product: the product's name.
        flow: the flow id.
        inputs: the flow's inputs.
        answers: for each ``user_input`` step id, the values to type into its form.
        approver: who approves each ``hitl`` step.
    """
    import nbformat

    text = product_notebook_text(product, flow, inputs=inputs, answers=answers, approver=approver)
    nb: NotebookNode = nbformat.reads(text, as_version=4)  # type: ignore[no-untyped-call]  # untyped
    return nb


def write_product_notebook(
    root: str | Path,
    product: str,
    flow: str,
    *,
    inputs: Mapping[str, Any] | None = None,
    answers: Mapping[str, Mapping[str, Any]] | None = None,
    execute: bool = True,
) -> Path:
    """Write :func:`product_notebook` to ``<root>/products/<product>/notebooks/<flow>.ipynb``
    and (``execute=True``) execute it once as ``master test --update`` does, so that it
    passes ``master test`` at once.

    Raises:
        FileExistsError: the notebook is already there (it is never overwritten).
        MasterError: executing it failed (a cell raised, a model call tried the network);
            the message carries the report, and the notebook is left without outputs.
    """
    from master_sdk.errors import MasterError
    from master_sdk.notebook_tests.checks import format_report, update_notebook

    path = Path(root) / "products" / product / "notebooks" / f"{flow}.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("x", encoding="utf-8") as handle:
        handle.write(product_notebook_text(product, flow, inputs=inputs, answers=answers))
    if execute:
        result = update_notebook(path)
        if not result.ok:
            raise MasterError(
                f"{path}: the starter notebook does not run:\n" + format_report([result])
            )
    return path


def _literal(value: Mapping[str, Mapping[str, Any]]) -> str:
    return repr({step: dict(fields) for step, fields in value.items()})
