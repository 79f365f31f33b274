"""The crash-point sweep: die at every interesting point, resume elsewhere, compare.

For each point, one process drives a run of ``ledger/ledger`` (tool, idempotent tool,
approval, tool, user input, agent, idempotent tool) and hard-exits there (the point comes
from ``MASTER_CRASH_POINT`` through the config loader); a new process then opens the store
and acts as a human would (retry an interrupted step, approve, submit). Every tool and
the model append a line to a ledger file, so the test counts what really ran across both
processes, and compares the store with an uncrashed run.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import master_sdk as ms
from master_sdk.orchestrator.crashpoints import CRASH_EXIT_CODE
from tests.support.durability import last_json, lines, make_ledger_project, run_driver, tally

pytestmark = pytest.mark.slow  # one driver process forking 36 others

BASE = Counter({"first": 1, "second": 1, "third": 1, "model": 1, "last": 1})

# point -> (status the resuming process sees on opening the run, steps that ran twice,
#           whether a human had to retry). Hits are counted per process (``@n``): see the
#           order of commits in tests/support/durability.py's LEDGER_FLOW.
SWEEP: dict[str, tuple[str | None, tuple[str, ...], bool]] = {
    # nothing committed yet: no run exists, the user starts one again
    "before_step_start@1": (None, (), False),
    "commit:step_start@1": (None, (), False),
    # a non-idempotent tool's start is committed: waits for a human, ran once or twice
    "after_step_start@1": ("interrupted", (), True),
    "after_tool_return@1": ("interrupted", ("first",), True),
    # an idempotent tool: retried on reopening, with the same key
    "after_step_start@2": ("waiting_approval", (), False),
    "after_tool_return@2": ("waiting_approval", ("second",), False),
    "commit:pause@1": ("waiting_approval", ("second",), False),  # its result was in there
    "after_commit@3": ("waiting_approval", (), False),
    # the approval: lost with its transaction, or committed on its own (decided, continued
    # by the next process), then the next step's start in a commit of its own
    "commit:approval@1": ("waiting_approval", (), False),
    "after_commit@4": ("decided", (), False),
    "after_decision@1": ("decided", (), False),
    "after_commit@5": ("interrupted", (), True),
    "after_tool_return@3": ("interrupted", ("third",), True),
    # the user input, the agent (not idempotent: a model call costs money), the end
    "commit:input@1": ("waiting_input", (), False),
    "after_step_start@4": ("interrupted", (), True),
    "after_tool_return@4": ("interrupted", ("model",), True),
    "after_step_start@5": ("completed", (), False),
    "commit:end@1": ("completed", ("last",), False),
    "after_decision@2": ("decided", (), False),  # the input, recorded, not yet continued
    "after_commit@10": ("completed", (), False),
}


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, Any]]:
    """Run the whole sweep once (an uncrashed baseline first) from one driver process."""
    base = tmp_path_factory.mktemp("sweep")
    root = make_ledger_project(base / "project")
    workdir = base / "runs"
    points = ["", *SWEEP]
    code, result, err = run_driver("sweep", root, workdir, json.dumps(points), timeout=120)
    assert code == 0, err
    assert result is not None
    return root, workdir, result["codes"]


@pytest.fixture(scope="module")
def baseline(swept: tuple[Path, Path, dict[str, Any]]) -> dict[str, Any]:
    """The store of the uncrashed run, as :func:`_snapshot` sees it."""
    root, workdir, _ = swept
    return _snapshot(root, _folder(workdir, ""))


def _folder(workdir: Path, point: str) -> Path:
    return workdir / str(["", *SWEEP].index(point))


def _snapshot(root: Path, folder: Path) -> dict[str, Any]:
    """What a user can see of the folder's one run, with its id replaced by ``<run>``."""
    with ms.Workbench.open(root, store=folder / "store.sqlite3") as wb:
        (run_id,) = list(wb.runs()["run_id"])
        run = wb.get_run(run_id, recover=False)
        trace = run.trace()
        steps = run.steps()
        done = trace[trace["event"] == "step_completed"]
        tools = trace[(trace["event"] == "tool_called") & (trace["status"] == "ok")]
        approvals = wb.approvals()
        snapshot = {
            "status": run.status,
            "output": run.output,
            "steps": list(zip(steps["step_id"], steps["status"], strict=True)),
            "completed_events": Counter(done["step_id"]),
            "tool_calls_traced": Counter(tools["step_id"]),
            "model_calls_traced": int((trace["event"] == "model_called").sum()),
            "approvals": list(zip(approvals["step_id"], approvals["decision"], strict=True)),
            "inputs_received": int((trace["event"] == "input_received").sum()),
            "integrity": wb.store_info()["integrity"],
        }
    return _anonymous(snapshot, run_id)


def _anonymous(value: Any, run_id: str) -> Any:
    if isinstance(value, str):
        return value.replace(run_id, "<run>")
    if isinstance(value, dict) and not isinstance(value, Counter):
        return {k: _anonymous(v, run_id) for k, v in value.items()}
    if isinstance(value, list):
        return [_anonymous(v, run_id) for v in value]
    return value


def test_the_uncrashed_baseline_completes_with_one_call_of_everything(
    swept: tuple[Path, Path, dict[str, Any]], baseline: dict[str, Any]
) -> None:
    """Without a crash point the run completes and every tool and the model ran once."""
    _, workdir, codes = swept
    assert codes[""] == [0, 0]
    assert tally(_folder(workdir, "") / "ledger") == BASE
    assert baseline["status"] == "completed"
    assert baseline["integrity"] == "ok"
    assert baseline["completed_events"] == Counter(
        {"first": 1, "second": 1, "review": 1, "third": 1, "ask": 1, "summary": 1, "last": 1}
    )


@pytest.mark.parametrize("point", list(SWEEP))
def test_a_crash_at_each_point_reruns_only_the_step_in_flight(
    swept: tuple[Path, Path, dict[str, Any]], baseline: dict[str, Any], point: str
) -> None:
    """After a hard exit at ``point`` and a resume in a new process: completed steps ran
    once, only the step in flight ran again (or waited for a human), the store equals an
    uncrashed run's, and SQLite's integrity check is ok."""
    root, workdir, codes = swept
    reopened, twice, human = SWEEP[point]
    folder = _folder(workdir, point)
    crash_code, resume_code = codes[point]
    assert crash_code == CRASH_EXIT_CODE, (folder / "crash.txt").read_text()
    assert resume_code == 0, (folder / "resume.txt").read_text()
    resumed = last_json((folder / "resume.txt").read_text())
    assert resumed is not None

    assert resumed["reopened"] == reopened
    assert ("retry" in resumed["actions"]) is human
    assert resumed["status"] == "completed"
    assert resumed["integrity"] == "ok"

    expected = BASE + Counter(twice)
    assert tally(folder / "ledger") == expected
    run_id = resumed["run_id"]
    for line in lines(folder / "ledger"):
        if "key=" in line:  # an idempotent tool always gets run_id:step_id
            name, key = re.match(r"(\w+) key=(\S+)", line).groups()  # type: ignore[union-attr]
            assert key == f"{run_id}:{name}"

    assert _snapshot(root, folder) == baseline


def test_a_crash_while_marking_a_run_interrupted_is_marked_again_by_the_next_process(
    tmp_path: Path,
) -> None:
    """A process that dies inside the transaction marking a dead run ``interrupted``
    leaves it ``running``; the next process marks it (and recovers it) as if nothing
    happened in between."""
    root = make_ledger_project(tmp_path / "project")
    store, ledger = tmp_path / "store.sqlite3", tmp_path / "ledger"
    code, _, _ = run_driver(
        "drive", root, store, ledger, env={"MASTER_CRASH_POINT": "after_step_start@2"}
    )
    assert code == CRASH_EXIT_CODE
    code, _, _ = run_driver(
        "resume", root, store, ledger, env={"MASTER_CRASH_POINT": "commit:interrupted"}
    )
    assert code == CRASH_EXIT_CODE
    with ms.Workbench.open(root, store=store) as wb:
        (run_id,) = list(wb.runs()["run_id"])
        run = wb.get_run(run_id)
        assert run.status == "waiting_approval"
        assert tally(ledger) == Counter({"first": 1, "second": 1})
        assert wb.store_info()["integrity"] == "ok"
