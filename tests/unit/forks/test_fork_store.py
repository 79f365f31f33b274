"""Forks and the store: a store of schema version 3 migrates and forks; a fork whose first
commit fails leaves nothing behind."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import master_sdk as ms
from master_sdk.memory.store import Commit

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "stores"


def test_a_run_of_a_version_3_store_is_forked_after_migration(tmp_path: Path) -> None:
    """The completed run of the released v3 store reads with no lineage, and forks at its
    summary step: the human steps before it are copied, not asked again."""
    project = tmp_path / "project"
    shutil.copytree(FIXTURES / "v3_project", project)
    store = tmp_path / "v3.sqlite3"
    shutil.copyfile(FIXTURES / "v3.sqlite3", store)
    with ms.Workbench.open(project, store=store) as wb:
        runs = wb.runs().set_index("status")
        assert runs["parent_run_id"].isna().all() and runs["forked_at"].isna().all()
        parent = wb.get_run(runs.loc["completed", "run_id"])
        fork = parent.fork(at="summary")
        assert fork.status == "completed"
        assert fork.output["audience"] == "the board"
        assert wb.runs().set_index("run_id").loc[fork.id, "parent_run_id"] == parent.id


class FailForks:
    """A hook refusing the commit that creates a fork (a disk filling up, say)."""

    def before_commit(self, commit: Commit) -> None:
        if commit.run.parent_run_id is not None:
            raise ms.StoreError("refused by the test")

    def after_commit(self, commit: Commit) -> None:
        pass


def test_a_fork_whose_first_commit_fails_writes_nothing(hello_root: Path) -> None:
    """The new run row, the copied steps and their trace are one transaction: refused, none
    of them is stored, and the parent is unchanged."""
    with ms.Workbench.open(hello_root, hooks=[FailForks()]) as wb:
        run = wb.run("hello_world/greet", {"text": "hi"}).approve().submit({"audience": "x"})
        events = len(wb.traces())
        with pytest.raises(ms.StoreError):
            run.fork(at="summary")
        assert list(wb.runs()["run_id"]) == [run.id]
        assert len(wb.traces()) == events
        assert wb.store.count_events() == events
