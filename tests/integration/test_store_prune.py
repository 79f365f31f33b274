"""``master store prune --older-than DURATION [--status S] [--dry-run]`` on a SQLite file and
on a PostgreSQL database: old ended runs go with every row they own, paused runs stay unless
named, a dry run shows the same counts and changes nothing."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

import master_sdk as ms
from tests.support import postgres

DAY_US = 86_400_000_000


def master(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "master_sdk.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def aged_store(root: Path, target: str) -> dict[str, str]:
    """``target`` holding two runs 100 days old (one completed, one paused) and one
    completed today; returns their ids by name."""
    with ms.Workbench.open(root, store=root / "made.sqlite3") as wb:
        old = wb.run("hello_world/greet", {"text": "old"})
        old.approve(by="ana")
        old.submit({"audience": "board"}, by="ana")
        paused = wb.run("hello_world/greet", {"text": "waiting"})
        new = wb.run("hello_world/greet", {"text": "new"})
        new.approve(by="ana")
        new.submit({"audience": "board"}, by="ana")
        stored = list(wb.store.read_runs())
        flows = wb.store.flow_sources()
    ids = {"old": old.id, "paused": paused.id, "new": new.id}
    for s in stored:
        if s.run.run_id != new.id:
            s.run = replace(s.run, updated_us=s.run.updated_us - 100 * DAY_US)
    with ms.Workbench.open(root, store=target) as wb:
        wb.store.write_runs(stored, flows)
    assert old.status == "completed" and paused.status == "waiting_approval"
    return ids


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_prune_removes_old_ended_runs_and_a_dry_run_changes_nothing(
    hello_root: Path, kind: str
) -> None:
    """A dry run reports one old completed run and removes nothing; the prune removes it
    with its steps, trace and approvals; the old paused run goes only with --status."""
    target = str(hello_root / "team.sqlite3") if kind == "sqlite" else postgres.fresh_url()
    ids = aged_store(hello_root, target)

    def remaining() -> set[str]:
        with ms.Workbench.open(hello_root, store=target) as wb:
            return {r for r, _ in wb.store.find_runs()}

    dry = master("--store", target, "store", "prune", "--older-than", "90d", "--dry-run",
                 cwd=hello_root)  # fmt: skip
    assert dry.returncode == 0, dry.stderr
    assert (
        "would remove 1 run(s) (1 completed) with 4 step attempt(s), 16 trace event(s), "
        "1 approval(s) and 1 input(s)" in dry.stdout
    ), dry.stdout
    assert remaining() == set(ids.values())

    done = master("--store", target, "store", "prune", "--older-than", "90d", cwd=hello_root)
    assert done.returncode == 0, done.stderr
    assert "removed 1 run(s) (1 completed)" in done.stdout, done.stdout
    assert remaining() == {ids["paused"], ids["new"]}
    with ms.Workbench.open(hello_root, store=target) as wb:
        assert set(wb.traces()["run_id"]) == {ids["paused"], ids["new"]}
        assert set(wb.approvals()["run_id"]) == {ids["new"]}

    paused = master("--store", target, "store", "prune", "--older-than", "90d", "--status",
                    "waiting_approval", cwd=hello_root)  # fmt: skip
    assert paused.returncode == 0, paused.stderr
    assert "removed 1 run(s) (1 waiting_approval)" in paused.stdout, paused.stdout
    assert remaining() == {ids["new"]}


def test_prune_refuses_a_bad_duration_or_status_naming_the_flag(hello_root: Path) -> None:
    """A duration without a unit, or an unknown status, is refused with what to give."""
    bad = master("store", "prune", "--older-than", "90", cwd=hello_root)
    assert bad.returncode != 0
    assert "--older-than '90'" in bad.stderr and "90d" in bad.stderr
    unknown = master("store", "prune", "--older-than", "1d", "--status", "done", cwd=hello_root)
    assert unknown.returncode != 0
    assert "--status done: not a run status" in unknown.stderr
