"""A paused run survives its process: another process resumes it from the store."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import master_sdk as ms


def python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run code in a fresh interpreter (a fresh 'kernel')."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_run_paused_in_one_process_is_finished_by_another(hello_root: Path) -> None:
    """Process 1 starts hello_world and exits at the approval; process 2 approves and submits."""
    first = python(
        """
        import json, master_sdk as ms
        run = ms.Workbench.open().run("hello_world/greet", inputs={"text": "Hello from process 1"})
        print(json.dumps({"id": run.id, "status": run.status}))
        """,
        hello_root,
    )
    assert first.returncode == 0, first.stderr
    started = json.loads(first.stdout)
    assert started["status"] == "waiting_approval"

    second = python(
        f"""
        import json, master_sdk as ms
        run = ms.Workbench.open().get_run("{started["id"]}")
        assert run.status == "waiting_approval", run.status
        run.approve(comment="ok from process 2", by="ana")
        run.submit({{"audience": "the board"}}, by="ana")
        print(json.dumps({{"status": run.status, "output": run.output}}))
        """,
        hello_root,
    )
    assert second.returncode == 0, second.stderr
    finished = json.loads(second.stdout)
    assert finished["status"] == "completed"
    assert "Hello from process 1" in finished["output"]["summary"]
    assert finished["output"]["audience"] == "the board"

    wb = ms.Workbench.open(hello_root)
    run = wb.get_run(started["id"])
    assert run.status == "completed"
    trace = run.trace()
    assert list(trace["seq"]) == list(range(1, len(trace) + 1))
    events = list(trace["event"])
    assert events.count("tool_called") == 1
    assert events.count("model_called") == 1
    assert events[0] == "run_started" and events[-1] == "run_completed"
    approvals = wb.approvals()
    assert list(approvals["comment"]) == ["ok from process 2"]
    wb.close()
