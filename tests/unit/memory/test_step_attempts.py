"""Every attempt of a step is kept: retries, recoveries and a manual skip each add one."""

from __future__ import annotations

import pytest

from tests.conftest import Project

FLOW = """
id: shaky
steps:
  - {id: a, type: tool, tool: boom, input: {text: kaboom}}
  - {id: b, type: tool, tool: echo, input: {text: after}}
"""


@pytest.mark.parametrize("store", ["sqlite:///s.sqlite3", "memory://"])
def test_a_retried_then_skipped_step_keeps_each_attempt(project: Project, store: str) -> None:
    """A step that fails, fails again on retry, then is skipped by hand: steps() shows its
    latest attempt (3, skipped), steps(attempts=True) all three with the first two
    failures and their errors, and the next step once."""
    project.flow("shaky", FLOW)
    with project.open(store=store) as wb:
        run = wb.run("demo/shaky", {})
        assert run.status == "failed"
        run.retry(by="ana")
        assert run.status == "failed"
        run.skip({"text": "by hand"}, by="ana")
        assert run.status == "completed"
        latest = run.steps()
        assert list(zip(latest["step_id"], latest["attempt"], latest["status"], strict=True)) == [
            ("a", 3, "skipped"),
            ("b", 1, "completed"),
        ]
        every = run.steps(attempts=True)
        assert list(zip(every["step_id"], every["attempt"], every["status"], strict=True)) == [
            ("a", 1, "failed"),
            ("a", 2, "failed"),
            ("a", 3, "skipped"),
            ("b", 1, "completed"),
        ]
        assert every["error"].iloc[0].endswith("RuntimeError: boom: kaboom")
        assert every["error"].iloc[1].endswith("RuntimeError: boom: kaboom")
        assert every["output"].iloc[2] == {"text": "by hand"}
        assert list(wb.steps(run.id, attempts=True)["attempt"]) == [1, 2, 3, 1]
