"""Which commits are fsynced: every step result, pause and end; a bare start record rides
on the next sync unless sync_step_starts is set."""

from __future__ import annotations

from pathlib import Path

import master_sdk as ms
from tests.conftest import Project

FLOW = """
id: f
steps:
  - {id: a, type: tool, tool: echo, input: {text: one}}
  - {id: b, type: tool, tool: echo, input: {text: two}}
  - {id: review, type: hitl, prompt: "ok?"}
  - {id: s, type: agent, agent: summarizer, input: {text: three}}
"""


def _watch(wb: ms.Workbench) -> list[str]:
    """The statements that change the safety level and the commits, in order."""
    seen: list[str] = []

    def trace(statement: str) -> None:
        text = statement.strip().upper()
        if text.startswith("PRAGMA SYNCHRONOUS =") or text == "COMMIT":
            seen.append(" ".join(text.split()))

    wb.store.conn.set_trace_callback(trace)
    return seen


def _run(project: Project, settings: str) -> list[str]:
    (project.root / "configs" / "app.yaml").write_text(settings, encoding="utf-8")
    project.flow("f", FLOW)
    wb = project.open()
    seen = _watch(wb)
    run = wb.run("demo/f")
    run.approve()
    assert run.status == "completed"
    wb.close()
    return seen


RELAXED = ["PRAGMA SYNCHRONOUS = NORMAL", "COMMIT", "PRAGMA SYNCHRONOUS = FULL"]


def test_full_syncs_results_pauses_and_ends_but_not_bare_start_records(project: Project) -> None:
    """Start of a (no result pending) -> relaxed; a's result with b's start, b's result with
    the pause -> synced; the approval, on its own -> synced; s's start -> relaxed; s's result
    with the end -> synced."""
    assert _run(project, "synchronous: FULL\n") == [
        *RELAXED,
        "COMMIT",
        "COMMIT",
        "COMMIT",
        *RELAXED,
        "COMMIT",
    ]


def test_sync_step_starts_fsyncs_every_commit(project: Project) -> None:
    """With sync_step_starts, no commit is relaxed (six: the approval is one of its own)."""
    assert _run(project, "synchronous: FULL\nsync_step_starts: true\n") == ["COMMIT"] * 6


def test_normal_never_switches_the_safety_level(project: Project) -> None:
    """NORMAL is NORMAL for every commit: nothing to switch."""
    assert _run(project, "synchronous: NORMAL\n") == ["COMMIT"] * 6


def test_a_relaxed_commit_leaves_the_connection_at_full(project: Project, tmp_path: Path) -> None:
    """After a run, the store's connection is back at FULL (checked by SQLite itself)."""
    _run(project, "synchronous: FULL\n")
    wb = project.open()
    assert wb.store.conn.execute("PRAGMA synchronous").fetchone()[0] == 2
    wb.close()
