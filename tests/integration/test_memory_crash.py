"""A process dying while a tool adds to vector memory neither loses nor duplicates entries.

A real subprocess runs ``mem/remember`` (an idempotent tool adding 20 notes) and hard-exits
at a crash point: inside the vector write before its COMMIT, right after that commit, or
after the tool returned but before the step's result was committed. Another process then
opens the store: the run is interrupted, the idempotent step is retried automatically,
and the collection holds each of the 20 entries exactly once, written by the retry.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

import master_sdk as ms
from master_sdk.orchestrator.crashpoints import CRASH_EXIT_CODE
from tests.support.durability import REPO, driver_env
from tests.support.memory_project import make_memory_project

pytestmark = pytest.mark.slow

TEXTS = [f"note number {i} about parcels" for i in range(20)]
SCRIPT = """
import json, sys
import master_sdk as ms
wb = ms.Workbench.open(sys.argv[1])
run = wb.run("mem/remember", inputs={"texts": json.loads(sys.argv[2]), "tag": "crash"})
print(json.dumps({"status": run.status, "id": run.id}))
"""


def run_child(root: Path, crash_point: str | None) -> subprocess.CompletedProcess[str]:
    env = driver_env({"MASTER_CRASH_POINT": crash_point} if crash_point else None)
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, str(root), json.dumps(TEXTS)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def stored_ids(root: Path) -> list[tuple[str, int]]:
    with closing(sqlite3.connect(root / "storage" / "master.sqlite3")) as conn:
        return [(str(r[0]), int(r[1])) for r in conn.execute("SELECT id, attempt FROM vectors")]


@pytest.mark.parametrize(
    ("point", "committed"),
    [("commit:vectors", False), ("after_vectors", True), ("after_tool_return", True)],
)
def test_a_crash_around_the_vector_write_leaves_each_entry_exactly_once(
    tmp_path: Path, point: str, committed: bool
) -> None:
    """Killed at ``point``; the next process retries the step; 20 entries, no copies."""
    root = make_memory_project(tmp_path / "project")
    crashed = run_child(root, point)
    assert crashed.returncode == CRASH_EXIT_CODE, crashed.stderr
    # what the dead process left: nothing (before COMMIT) or every entry (after it)
    assert len(stored_ids(root)) == (len(TEXTS) if committed else 0)

    with ms.Workbench.open(root) as wb:
        (run_id,) = list(wb.runs()["run_id"])
        run = wb.get_run(str(run_id))  # recovers the idempotent step
        assert run.status == "completed", run.error
        assert run.output["count"] == len(TEXTS)
        steps = run.steps().set_index("step_id")
        assert steps.loc["add", "attempt"] == 2
        assert wb.memory("mem/notes").count() == len(TEXTS)
        hits = wb.memory("mem/notes").search("note number 7 about parcels", k=1)
        assert hits[0].text == "note number 7 about parcels"

    rows = stored_ids(root)
    assert sorted(key for key, _ in rows) == sorted(f"{run_id}:add:{i}" for i in range(20))
    assert {attempt for _, attempt in rows} == {2}


def test_a_retry_that_adds_fewer_entries_leaves_none_of_the_first_attempt(
    tmp_path: Path,
) -> None:
    """The step's entries are those of its last attempt: leftovers of the dead attempt go."""
    root = make_memory_project(tmp_path / "project")
    crashed = run_child(root, "after_vectors")
    assert crashed.returncode == CRASH_EXIT_CODE, crashed.stderr
    with ms.Workbench.open(root) as wb:
        (run_id,) = list(wb.runs()["run_id"])
        notes = wb.memory("mem/notes")
        assert notes.count() == len(TEXTS)
        # the retry of this step, as a tool with fewer texts would write it
        run = wb.get_run(str(run_id), recover=False)
        assert run.status == "interrupted"
    # edit the stored flow input the retry will see: a shorter list
    with closing(sqlite3.connect(root / "storage" / "master.sqlite3")) as conn:
        conn.execute(
            "UPDATE runs SET inputs = ? WHERE run_id = ?",
            (json.dumps({"texts": TEXTS[:5], "tag": "crash"}), str(run_id)),
        )
        conn.commit()
    with ms.Workbench.open(root) as wb:
        run = wb.get_run(str(run_id))
        assert run.status == "completed", run.error
        assert wb.memory("mem/notes").count() == 5
