"""Nothing declares a run interrupted while its executor lives; a dead executor's runs are
found at once; a run given up after a failed commit can be acted on by others.

The executor is a process *and* an engine (one per workbench): a second workbench in the
same kernel must not take over a run the first is executing. The blocking tool waits on a
``threading.Event`` of its own components module, which the test sets.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

import master_sdk as ms
from tests.conftest import Project
from tests.support.durability import (
    REPO,
    driver_env,
    last_json,
    lines,
    make_ledger_project,
    spawn,
    tally,
    wait_for,
)

BLOCKING = """
from __future__ import annotations

import threading

from pydantic import BaseModel

from master_sdk.authoring import tool

STARTED = threading.Event()
RELEASE = threading.Event()
CALLS: list[str] = []


class Out(BaseModel):
    text: str


@tool
def block(text: str) -> Out:
    CALLS.append(text)
    STARTED.set()
    if not RELEASE.wait(60):
        raise TimeoutError("never released")
    return Out(text=text)


@tool
def echo(text: str) -> Out:
    return Out(text=text)
"""

FLOW = """
id: blocking
inputs: {type: object, properties: {text: {type: string}}, required: [text]}
steps:
  - {id: before, type: tool, tool: echo, input: {text: "{{ inputs.text }}"}}
  - {id: slow, type: tool, tool: block, input: {text: "{{ inputs.text }}"}}
  - {id: after, type: tool, tool: echo, input: {text: "{{ steps.slow.output.text }}"}}
"""


@pytest.fixture
def blocking(project: Project) -> Project:
    """The demo product with a ``block`` tool that waits for its module's RELEASE event."""
    product = project.root / "products" / "demo"
    (product / "components.py").write_text(BLOCKING, encoding="utf-8")
    project.flow("blocking", FLOW)
    return project


def components(wb: ms.Workbench) -> ModuleType:
    """The components module this workbench imported (each workbench imports its own)."""
    wb.flow("demo/blocking")
    # each loaded version of a product is its own private package (products/imports.py)
    return sys.modules[f"{wb.catalog.product('demo').package}.components"]


@pytest.fixture
def executing(blocking: Project) -> Iterator[tuple[ms.Workbench, ModuleType, list[object]]]:
    """A workbench whose run of ``demo/blocking`` is inside the ``slow`` step, in a thread.

    Yields the workbench, its components module and a list that receives the finished
    ``Run`` (or the exception) once RELEASE is set.
    """
    wb = blocking.open()
    module = components(wb)
    outcome: list[object] = []

    def execute() -> None:
        try:
            outcome.append(wb.run("demo/blocking", {"text": "once"}))
        except BaseException as exc:  # reported to the test, which fails on it
            outcome.append(exc)

    thread = threading.Thread(target=execute)
    thread.start()
    try:
        assert module.STARTED.wait(30), "the slow step never started"
        yield wb, module, outcome
    finally:
        module.RELEASE.set()
        thread.join(30)
        wb.close()


def running_run(wb: ms.Workbench) -> str:
    (found,) = wb.store.find_runs(status="running")
    return found[0]


def test_a_second_workbench_never_interrupts_a_run_the_first_is_executing(
    executing: tuple[ms.Workbench, ModuleType, list[object]], blocking: Project
) -> None:
    """While workbench 1 executes a step, workbench 2 in the same process (opening the
    store, ``get_run`` with recovery, ``abort``) sees the run ``running`` and leaves it
    alone; the step runs exactly once and the run completes in workbench 1."""
    _wb1, module, outcome = executing
    with blocking.open() as wb2:
        run_id = running_run(wb2)
        seen = wb2.get_run(run_id)
        assert seen.status == "running"
        with pytest.raises(ms.RunError, match="executing a step"):
            seen.abort("mine now", by="bo")
        with blocking.open() as wb3:  # opening marks abandoned runs: this one is not
            assert wb3.get_run(run_id, recover=False).status == "running"
        module.RELEASE.set()
        wait_for(lambda: bool(outcome), what="workbench 1 to finish")
        (run,) = outcome
        assert isinstance(run, ms.Run), run
        assert run.status == "completed"
        assert wb2.get_run(run_id).status == "completed"
    assert module.CALLS == ["once"]


def test_a_closed_workbench_no_longer_counts_as_the_executor(blocking: Project) -> None:
    """A run left ``running`` by a workbench of this process that was closed reads as
    interrupted in another workbench at once (no waiting for the process to end)."""
    wb1 = blocking.open()
    module = components(wb1)
    outcome: list[object] = []

    def execute() -> None:
        try:
            outcome.append(wb1.run("demo/blocking", {"text": "x"}))
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=execute)
    thread.start()
    assert module.STARTED.wait(30)
    run_id = running_run(wb1)
    wb1.engine.close()  # the executor stops counting (what Workbench.close does first)
    try:
        with blocking.open() as wb2:
            run = wb2.get_run(run_id, recover=False)
            assert run.status == "interrupted"
            assert "retry, skip or abort" in (run.error or "")
    finally:
        module.RELEASE.set()
        thread.join(30)
        wb1.close()
    # the executor's own result commit then loses the compare-and-set: nothing overwritten
    assert len(outcome) == 1 and isinstance(outcome[0], ms.RunError), outcome


def test_another_process_executing_a_step_is_never_interrupted_from_here(tmp_path: Path) -> None:
    """A run executing in another live process is ``running`` here (get_run, abort
    refused, opening a workbench), and its step runs once; once that process is killed the
    run is interrupted here at once."""
    root = make_ledger_project(tmp_path / "project")
    store, ledger, gate = tmp_path / "s.sqlite3", tmp_path / "ledger", tmp_path / "gate"
    inputs = json.dumps({"ledger": str(ledger), "gate": str(gate)})
    proc = spawn("start", root, store, "ledger/gated", inputs)
    try:
        wait_for(lambda: "slow" in lines(ledger), what="the slow step")
        with ms.Workbench.open(root, store=store) as wb:
            (run_id, owner) = wb.store.find_runs(status="running")[0]
            assert owner is not None and owner.count(":") == 3  # host:pid:start:engine
            run = wb.get_run(run_id)
            assert run.status == "running"
            with pytest.raises(ms.RunError, match="executing a step"):
                run.abort(by="bo")
            gate.touch()
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
            assert (last_json(out) or {}).get("status") == "completed"
            assert run.refresh().status == "completed"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)
    assert tally(ledger) == {"before": 1, "slow": 1, "after": 1}


# ------------------------------------------------------------------ StoreBusy mid-run

LOCKER = textwrap.dedent(
    """
    import sqlite3, sys
    conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=10)
    conn.execute("BEGIN IMMEDIATE")
    print("locked", flush=True)
    sys.stdin.readline()
    conn.execute("ROLLBACK")
    """
)


def test_a_store_locked_mid_run_leaves_the_run_interrupted_for_others_to_act_on(
    blocking: Project,
) -> None:
    """Another process holds the write lock beyond the busy timeout while a step runs:
    ``wb.run`` raises StoreBusy saying the step ran and its result was not stored and the
    run shows as interrupted; in this process it reads interrupted at once; once the lock
    is gone the interruption is in the store, and another process can abort the run."""
    (blocking.root / "configs" / "app.yaml").write_text("busy_timeout_ms: 300\n", encoding="utf-8")
    wb = blocking.open()
    module = components(wb)
    outcome: list[object] = []

    def execute() -> None:
        try:
            outcome.append(wb.run("demo/blocking", {"text": "x"}))
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=execute)
    thread.start()
    locker: subprocess.Popen[str] | None = None
    try:
        assert module.STARTED.wait(30)
        run_id = running_run(wb)
        store = Path(wb.store_info()["path"])
        locker = subprocess.Popen(
            [sys.executable, "-c", LOCKER, str(store)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert locker.stdout is not None and locker.stdout.readline().strip() == "locked"
        module.RELEASE.set()
        thread.join(30)
        (error,) = outcome
        assert isinstance(error, ms.StoreBusy), error
        message = str(error)
        assert f"run {run_id}: step 'slow' ran; its result was not stored" in message
        assert "the run shows as interrupted — retry or abort it" in message
        assert "busy timeout" in message
        with blocking.open() as other:  # same process, lock still held: reads interrupted
            assert other.get_run(run_id, recover=False).status == "interrupted"
        locker.communicate("\n", timeout=30)
        # the executor writes the interruption as soon as the lock is gone
        wait_for(
            lambda: wb.store.load(run_id)[0].status == "interrupted",
            what="the interruption to be stored",
        )
        done = subprocess.run(
            [sys.executable, "-m", "master_sdk.cli", "--root", str(blocking.root),
             "abort", run_id, "--reason", "locked out"],
            env=driver_env(),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert wb.get_run(run_id).status == "aborted"
    finally:
        module.RELEASE.set()
        if locker is not None and locker.poll() is None:
            locker.kill()
            locker.communicate(timeout=30)
        thread.join(30)
        wb.close()
    assert module.CALLS == ["x"]
