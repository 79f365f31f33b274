"""wb.fork over many runs: all checked before any is made, the batch named in the trace."""

from __future__ import annotations

from pathlib import Path

import pytest

import master_sdk as ms
from master_sdk.testing import FunctionModel
from tests.support.forks import answer, make_project


def test_many_runs_are_forked_in_order_with_the_batch_name(tmp_path: Path) -> None:
    """Each run gets one fork, in the order given (ids or Run objects), its parent recorded
    and the batch name in its run_started event; no copied step runs again."""
    project = make_project(tmp_path)
    model = FunctionModel(answer)
    with project.open(model) as wb:
        runs = [wb.run("news/report", {"text": f"case {i}"}) for i in range(5)]
        project.set_prompt("Shorter:")
        before = project.calls().count("clean")
        forks = wb.fork([runs[0], *[r.id for r in runs[1:]]], at="summary", name="shorter")
        assert [f.parent_run_id for f in forks] == [r.id for r in runs]
        assert all(f.status == "completed" for f in forks)
        assert project.calls().count("clean") == before
        assert all("Shorter:" in f.steps()["output"][1]["summary"] for f in forks)
        started = wb.traces()
        named = started[(started["event"] == "run_started")]["attrs"]
        assert sum(1 for a in named if a.get("fork") == "shorter") == 5


def test_one_run_that_cannot_be_forked_refuses_the_whole_batch(tmp_path: Path) -> None:
    """A paused run among completed ones cannot be forked past its pause: nothing is
    written for any of them."""
    project = make_project(tmp_path)
    with project.open(FunctionModel(answer)) as wb:
        done = wb.run("news/reviewed", {"text": "a"}).approve().approve()
        paused = wb.run("news/reviewed", {"text": "b"})
        with pytest.raises(ms.RunError, match=paused.id):
            wb.fork([done.id, paused.id], at="summary")
        assert len(wb.runs()) == 2
