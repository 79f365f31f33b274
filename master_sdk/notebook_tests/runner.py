"""Executing a notebook in isolation: a fresh kernel, a throwaway store, no network models.

Each notebook runs top to bottom in a new kernel started in the notebook's folder (so
``Workbench.open()`` finds the project root as usual), with:

- ``MASTER_STORE`` pointing into a temporary folder made for this notebook alone: the
  project's ``storage/`` is never opened (a notebook that passes its own ``store=`` keeps it);
- ``MASTER_DETERMINISTIC=1``: seeded run ids, a test clock (see
  :mod:`master_sdk.orchestrator.determinism`);
- network model calls blocked (:func:`master_sdk.testing.no_network_models`, entered in the
  kernel before the first cell): a flow that tries a real provider fails at that step, and
  the execution lists the refused calls with the step that made them. Replay cassettes and
  the fake provider answer as usual.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    import nbformat
    from jupyter_core.utils import run_sync
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError
    from nbformat import NotebookNode
except ImportError as exc:  # an optional extra: say how to get it
    raise ImportError(
        f"notebook tests need nbclient and ipykernel ({exc.name} is missing): "
        "pip install 'master-sdk[notebook-tests]'"
    ) from exc

from master_sdk.notebook_tests.compare import CellMismatch, first_line, strip_ansi

__all__ = ["CELL_TIMEOUT_S", "Execution", "execute_notebook"]

CELL_TIMEOUT_S = 300
"""How long one cell may run before the execution fails."""

_SETUP = """\
from master_sdk.testing import no_network_models as __master_no_network
__master_guard_cm = __master_no_network()
__master_guard = __master_guard_cm.__enter__()
"""
_TEARDOWN = """\
import json as __master_json
print(__master_json.dumps(__master_guard.blocked))
"""


@dataclass
class Execution:
    """What executing one notebook gave.

    Attributes:
        notebook: the executed notebook (outputs, execution counts, widget state).
        error: the cell that raised, if one did (execution stopped there).
        blocked: network model calls refused, ``"<provider> -> <url>"``, with the step that
            tried when the store tells (``... in step 'summary' of demo/triage``).
        seconds: wall time of the execution, kernel start included.
    """

    notebook: NotebookNode
    error: CellMismatch | None = None
    blocked: list[str] = field(default_factory=list)
    seconds: float = 0.0


class _IsolatedClient(NotebookClient):
    """Runs hidden set-up code before the first cell and reads the guard after the last,
    without counting them as executions (the notebook's counts start at 1 as in Jupyter)."""

    blocked_json: str = ""

    async def async_execute(self, reset_kc: bool = False, **kwargs: Any) -> NotebookNode:
        self.reset_execution_trackers()
        async with self.async_setup_kernel(**kwargs):
            msg_id = await self._async_kernel_info()
            info = await self.async_wait_for_reply(msg_id)
            if info is not None and "language_info" in info["content"]:
                self.nb.metadata["language_info"] = info["content"]["language_info"]
            await self._hidden(_SETUP)
            self.code_cells_executed = 0
            try:
                for index, cell in enumerate(self.nb.cells):
                    await self.async_execute_cell(
                        cell, index, execution_count=self.code_cells_executed + 1
                    )
            finally:
                probe = await self._hidden(_TEARDOWN)
                self.blocked_json = "".join(
                    str(o.get("text", "")) for o in probe.outputs if o.get("name") == "stdout"
                )
            self.set_widgets_metadata()
        return self.nb

    # the base class binds ``execute`` to its own ``async_execute``
    execute = run_sync(async_execute)

    async def _async_kernel_info(self) -> str:
        from jupyter_core.utils import ensure_async

        assert self.kc is not None  # noqa: S101  # set up by async_setup_kernel
        msg_id: str = await ensure_async(self.kc.kernel_info())
        return msg_id

    async def _hidden(self, code: str) -> NotebookNode:
        cell: NotebookNode = nbformat.v4.new_code_cell(code)  # type: ignore[no-untyped-call]  # nbformat is untyped
        # nbclient routes some outputs by index into the notebook: give the cell a real one
        self.nb.cells.append(cell)
        try:
            await self.async_execute_cell(cell, len(self.nb.cells) - 1, store_history=False)
        finally:
            self.nb.cells.pop()
        return cell


def execute_notebook(
    path: Path,
    *,
    root: Path | None = None,
    timeout: int = CELL_TIMEOUT_S,
    deterministic: bool = True,
) -> Execution:
    """Execute a copy of the notebook at ``path`` in isolation (see the module docstring).

    The file is not written. The temporary folder holding the throwaway store is removed
    afterwards.

    Args:
        path: the notebook.
        root: the project folder, only to name the step of a refused network call
            (default: found upward from the notebook, as ``Workbench.open()`` does).
        timeout: seconds one cell may run.
        deterministic: turn deterministic mode on in the kernel.
    """
    from master_sdk.config.loader import child_environment, find_root

    nb: NotebookNode = nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]  # untyped
    scratch = Path(tempfile.mkdtemp(prefix="master-test-"))
    store = scratch / "master.sqlite3"
    env = child_environment(
        {"MASTER_STORE": str(store), "MASTER_DETERMINISTIC": "1" if deterministic else "0"}
    )
    client = _IsolatedClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
        record_timing=False,
    )
    started = time.perf_counter()
    result = Execution(nb)
    try:
        try:
            client.execute(env=env, cwd=str(path.parent))
        except CellTimeoutError as exc:
            result.error = _running_cell(nb, f"no reply within {timeout} s: {exc}")
        except DeadKernelError as exc:
            result.error = _running_cell(nb, f"the kernel died: {exc}")
        except CellExecutionError as exc:
            result.error = _failed_cell(nb, exc)
        result.blocked = _blocked(client.blocked_json)
        if result.blocked and store.exists():
            where = root if root is not None else find_root(path.parent)
            result.blocked = _with_steps(result.blocked, where, store)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result.seconds = time.perf_counter() - started
    return result


def _failed_cell(nb: NotebookNode, exc: CellExecutionError) -> CellMismatch:
    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                trace = strip_ansi("\n".join(output.get("traceback", [])))
                return CellMismatch(index, first_line(cell.source), "error", trace)
    return CellMismatch(-1, "(unknown cell)", "error", strip_ansi(str(exc)))


def _running_cell(nb: NotebookNode, message: str) -> CellMismatch:
    """The cell that was running when execution stopped: the last code cell with a count."""
    ran = [
        (index, cell)
        for index, cell in enumerate(nb.cells)
        if cell.get("cell_type") == "code" and cell.get("execution_count")
    ]
    if not ran:
        return CellMismatch(-1, "(kernel start)", "error", message)
    index, cell = ran[-1]
    return CellMismatch(index, first_line(cell.source), "error", message)


def _blocked(text: str) -> list[str]:
    try:
        calls = json.loads(text.strip() or "[]")
    except json.JSONDecodeError:
        return []
    return [str(c) for c in calls] if isinstance(calls, list) else []


def _with_steps(blocked: list[str], root: Path, store: Path) -> list[str]:
    """Name the steps whose model calls were refused, from the throwaway store's trace."""
    import master_sdk as ms

    try:
        with ms.Workbench.open(root, store=store) as wb:
            trace = wb.traces()
    except ms.MasterError:
        return blocked
    failed = trace[(trace["event"] == "step_failed")]
    steps = [
        f"step '{row.step_id}' of {row.product}/{row.flow} (run {row.run_id})"
        for row in failed.itertuples()
        if "blocked" in json.dumps(row.attrs, default=str)
    ]
    if not steps:
        return blocked
    return [f"{call} in {', '.join(steps)}" for call in blocked]
