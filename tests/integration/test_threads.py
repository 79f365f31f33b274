"""One Workbench used from many threads at once, and only MasterErrors crossing the API.

Batch runners, widget callbacks and users' own thread pools share one workbench: every
run must complete, none may be left ``running``, and a store that fails under a call
reports a :class:`~master_sdk.errors.MasterError`, never a raw driver exception.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import master_sdk as ms
from tests.conftest import Project

THREADS = 8
RUNS_EACH = 100

THREE_TOOLS = """
id: three
inputs: {type: object, properties: {text: {type: string}}, required: [text]}
steps:
  - {id: a, type: tool, tool: echo, input: {text: "{{ inputs.text }}"}}
  - {id: b, type: tool, tool: count, input: {text: "{{ steps.a.output.text }}"}}
  - {id: c, type: tool, tool: echo, input: {text: "{{ steps.a.output.text }}"}}
output: {text: "{{ steps.c.output.text }}", n: "{{ steps.b.output.n }}"}
"""


def in_threads(work: Callable[[int], None], threads: int = THREADS) -> Counter[str]:
    """Run ``work(i)`` in ``threads`` threads released together; the errors, by kind."""
    errors: Counter[str] = Counter()
    lock = threading.Lock()
    barrier = threading.Barrier(threads)

    def body(index: int) -> None:
        barrier.wait()
        try:
            work(index)
        except BaseException as exc:  # counted and reported by the test
            with lock:
                errors[f"{type(exc).__module__}.{type(exc).__name__}: {exc}"] += 1

    pool = [threading.Thread(target=body, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(300)
    return errors


@pytest.mark.slow
def test_eight_threads_running_a_hundred_runs_each_on_one_workbench_all_complete(
    project: Project,
) -> None:
    """8 threads x 100 runs of a three-tool flow on one Workbench: zero errors, every run
    completed with its own output, no run left running, the store's integrity ok."""
    project.flow("three", THREE_TOOLS)
    statuses: Counter[str] = Counter()
    outputs: dict[str, Any] = {}
    lock = threading.Lock()
    with project.open() as wb:

        def work(index: int) -> None:
            for n in range(RUNS_EACH):
                text = f"t{index}-{n}"
                run = wb.run("demo/three", {"text": text})
                with lock:
                    statuses[run.status] += 1
                    outputs[text] = run.output

        errors = in_threads(work)
        assert errors == Counter(), errors.most_common(3)
        total = THREADS * RUNS_EACH
        assert statuses == {"completed": total}
        assert all(out == {"text": text, "n": len(text)} for text, out in outputs.items())
        info = wb.store_info()
        assert info["runs_by_status"] == {"completed": total}
        assert info["integrity"] == "ok"
        assert wb.store.find_runs(status="running") == []


def test_threads_mixing_runs_decisions_and_reads_on_one_workbench_see_no_error(
    wb: ms.Workbench,
) -> None:
    """Threads that start hello_world runs, approve and submit them through fresh
    handles, and read frames at the same time: no error, every run completed."""
    done: list[str] = []
    lock = threading.Lock()

    def work(index: int) -> None:
        for n in range(10):
            run = wb.run("hello_world/greet", {"text": f"from thread {index}, run {n}"})
            wb.get_run(run.id).approve(by=f"t{index}")
            wb.get_run(run.id).submit({"audience": "board"}, by=f"t{index}")
            assert len(wb.runs()) >= 1
            assert len(run.refresh().trace()) > 0
            with lock:
                done.append(run.id)

    errors = in_threads(work, threads=4)
    assert errors == Counter(), errors.most_common(3)
    assert len(done) == 40
    assert set(wb.runs()["status"]) == {"completed"}
    assert len(wb.approvals()) == 40


def test_one_run_handle_shared_by_threads_is_decided_once(wb: ms.Workbench) -> None:
    """Eight threads approving the same handle: one approval is recorded, the others get
    NotWaiting or AlreadyResumed (MasterErrors), and the handle shows the stored state."""
    run = wb.run("hello_world/greet", {"text": "shared"})
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()

    def work(index: int) -> None:
        try:
            run.approve(by=f"t{index}")
            outcome = "ok"
        except ms.NotWaiting as exc:
            outcome = type(exc).__name__
        with lock:
            outcomes[outcome] += 1

    assert in_threads(work) == Counter()
    assert outcomes["ok"] == 1 and sum(outcomes.values()) == THREADS
    assert run.status == "waiting_input"
    assert len(wb.approvals()) == 1


def test_a_store_broken_under_an_open_workbench_raises_master_errors_only(
    wb: ms.Workbench,
) -> None:
    """With the store's tables dropped by another connection, every public call that
    touches them raises a MasterError (a StoreError naming the store), never a raw
    sqlite3 exception; nothing is left half-written."""
    paused = wb.run("hello_world/greet", {"text": "before"})
    path = Path(wb.store_info()["path"])
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("DROP TABLE approvals")
        other.execute("DROP TABLE runs")
    finally:
        other.close()
    calls: dict[str, Callable[[], object]] = {
        "run": lambda: wb.run("hello_world/greet", {"text": "after"}),
        "get_run": lambda: wb.get_run(paused.id),
        "approve": lambda: paused.approve(by="ana"),
        "runs": wb.runs,
        "traces": wb.traces,
        "approvals": wb.approvals,
        "steps": lambda: wb.steps(paused.id),
    }
    for name, call in calls.items():
        with pytest.raises(ms.MasterError) as caught:
            call()
        assert not isinstance(caught.value, sqlite3.Error), name
        assert isinstance(caught.value, (ms.StoreError, ms.NotFound)), (name, caught.value)
