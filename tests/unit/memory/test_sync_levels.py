"""Which commits are fsynced: every step result, pause and end; a bare start record, and a
decision its caller continues at once, ride on the next sync unless sync_step_starts is
set; a decision left for later is synced on its own."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest

import master_sdk as ms
from master_sdk.memory.sqlite import SQLiteStore
from master_sdk.memory.store import Changes, Commit, RunRecord
from master_sdk.testing import FunctionModel
from tests.conftest import Project

FLOW = """
id: f
steps:
  - {id: a, type: tool, tool: echo, input: {text: one}}
  - {id: b, type: tool, tool: echo, input: {text: two}}
  - {id: review, type: hitl, prompt: "ok?"}
  - {id: s, type: agent, agent: summarizer, input: {text: three}}
"""


class SyncWatch:
    """Records, for each commit once it is durable, its label and whether the store synced
    its log for it (the store's count of ``fdatasync`` calls moved)."""

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store
        self.last = store.log_syncs
        self.seen: list[str] = []

    def before_commit(self, commit: Commit) -> None:
        """Nothing."""

    def after_commit(self, commit: Commit) -> None:
        """Note whether a sync happened since the previous commit."""
        now = self.store.log_syncs
        self.seen.append(f"{commit.label}:{'synced' if now > self.last else 'written'}")
        self.last = now


def _open(project: Project, settings: str, **kwargs: Any) -> tuple[ms.Workbench, SyncWatch]:
    (project.root / "configs" / "app.yaml").write_text(settings, encoding="utf-8")
    project.flow("f", FLOW)
    wb = project.open(**kwargs)
    assert isinstance(wb.store, SQLiteStore)
    watch = SyncWatch(wb.store)
    wb.add_hook(watch)
    return wb, watch


def _run(project: Project, settings: str) -> list[str]:
    wb, watch = _open(project, settings)
    run = wb.run("demo/f")
    run.approve()
    assert run.status == "completed"
    wb.close()
    return watch.seen


def test_full_syncs_results_pauses_and_ends_but_not_bare_start_records(project: Project) -> None:
    """Start of a (no result pending) -> written; a's result with b's start, b's result with
    the pause -> synced; the approval, continued at once -> written; s's start -> written;
    s's result with the end -> synced (covering the approval and s's start)."""
    assert _run(project, "synchronous: FULL\n") == [
        "step_start:written",
        "step_start:synced",
        "pause:synced",
        "approval:written",
        "step_start:written",
        "end:synced",
    ]


def test_a_decision_left_for_later_is_synced_on_its_own(project: Project) -> None:
    """``proceed=False`` returns right after the decision: it is synced before that."""
    wb, watch = _open(project, "synchronous: FULL\n")
    run = wb.run("demo/f")
    wb.resume(run.id, "approve", proceed=False)
    assert watch.seen[-1] == "approval:synced"
    assert wb.get_run(run.id).status == "decided"
    wb.close()


def test_a_continuation_that_fails_still_syncs_the_decision(project: Project) -> None:
    """The agent after the approval raises: the run fails with a synced end commit, and
    the decision was made durable no later than that."""
    wb, watch = _open(project, "synchronous: FULL\n", providers={"default": FunctionModel(_broken)})
    run = wb.run("demo/f")
    before = wb.store.log_syncs  # type: ignore[attr-defined]  # SQLiteStore, checked in _open
    run.approve()
    assert run.status == "failed"
    assert watch.seen[-1] == "end:synced"
    assert wb.store.log_syncs > before  # type: ignore[attr-defined]
    wb.close()


def _broken(request: Any) -> Any:
    raise RuntimeError("no model today")


def new_run(run_id: str) -> tuple[RunRecord, Changes]:
    """A new run record and an empty change set."""
    run = RunRecord(
        run_id=run_id,
        product="demo",
        flow="f",
        status="running",
        version=1,
        cursor=0,
        created_us=1,
        updated_us=1,
        flow_hash="h1",
        product_version="1.0",
        created_by="ana",
    )
    return run, Changes()


def test_sync_step_starts_fsyncs_every_commit(project: Project) -> None:
    """With sync_step_starts, every commit is synced (six: the approval is one of its own)."""
    assert _run(project, "synchronous: FULL\nsync_step_starts: true\n") == [
        "step_start:synced",
        "step_start:synced",
        "pause:synced",
        "approval:synced",
        "step_start:synced",
        "end:synced",
    ]


def test_normal_never_syncs_a_commit(project: Project) -> None:
    """NORMAL leaves every commit to SQLite's checkpoints."""
    seen = _run(project, "synchronous: NORMAL\n")
    assert len(seen) == 6
    assert all(s.endswith(":written") for s in seen)


def test_full_is_normal_plus_the_stores_own_sync(project: Project) -> None:
    """The writer connection runs at NORMAL (no sync under the write lock); the store
    reports FULL, which is what it does."""
    wb, _ = _open(project, "synchronous: FULL\n")
    assert wb.store.conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # type: ignore[attr-defined]
    assert wb.store_info()["synchronous"] == "FULL"
    wb.close()


def test_a_synced_commit_calls_fdatasync_on_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sync is a real ``fdatasync`` of the ``-wal`` file, made before commit() returns."""
    synced: list[str] = []
    real = os.fdatasync

    def spy(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fdatasync", spy)
    store = SQLiteStore(tmp_path / "s.sqlite3")
    try:
        store.commit(*new_run("r1"), expect_version=None, label="start", sync=True)
        assert synced == [str(tmp_path / "s.sqlite3-wal")]
        store.commit(*new_run("r2"), expect_version=None, label="start", sync=False)
        assert len(synced) == 1
    finally:
        store.close()


def test_threads_share_syncs(tmp_path: Path) -> None:
    """16 threads x 10 synced commits: every commit durable when it returns, and far fewer
    syncs than commits once they queue behind one another."""
    store = SQLiteStore(tmp_path / "s.sqlite3")
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(10):
                store.commit(*new_run(f"r{n}-{i}"), expect_version=None, label="x")
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert not errors
        assert len(store.find_runs()) == 160
        assert 0 < store.log_syncs <= 160
    finally:
        store.close()
