"""Diffing two runs of one flow on real SQLite files: statuses, output paths, tokens,
cost and duration deltas, redaction, and the highlighted display."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

import master_sdk as ms
from master_sdk.diffing import DIFF_COLUMNS
from master_sdk.testing import FunctionModel
from tests.support.forks import ForkProject, answer, make_project


@pytest.fixture
def project(tmp_path: Path) -> ForkProject:
    return make_project(tmp_path)


@pytest.fixture
def wb(project: ForkProject) -> Iterator[ms.Workbench]:
    bench = project.open(FunctionModel(answer))
    yield bench
    bench.close()


def test_a_fork_diff_has_one_row_per_step_with_what_changed(
    wb: ms.Workbench, project: ForkProject
) -> None:
    """After a prompt edit: the copied step is unchanged and marked copied; the summary and
    the publish step changed, with their paths and old → new values; deltas are b - a."""
    run = wb.run("news/report", {"text": "rates rose"})
    project.set_prompt("Tell me, in a great many more words than before, about:")
    fork = run.fork(at="summary")
    diff = run.diff(fork)
    assert list(diff.columns) == DIFF_COLUMNS
    assert list(diff["step_id"]) == ["clean", "summary", "publish"]
    rows = diff.set_index("step_id")
    assert not rows.loc["clean", "output_changed"] and rows.loc["clean", "copied_b"]
    assert rows.loc["summary", "changed_paths"] == ["$.summary"]
    (change,) = rows.loc["summary", "changes"]
    assert change.startswith("$.summary: [default] Summarise: rates rose → [default] Tell me")
    assert change.endswith("…")  # the new summary is longer than shown
    assert rows.loc["publish", "changed_paths"] == ["$.url"]
    assert (rows["status_a"] == "completed").all() and (rows["status_b"] == "completed").all()
    assert rows.loc["summary", "tokens_b"] > rows.loc["summary", "tokens_a"] > 0
    assert rows.loc["summary", "tokens_delta"] == (
        rows.loc["summary", "tokens_b"] - rows.loc["summary", "tokens_a"]
    )
    # the fork spent nothing on the copied step
    assert rows.loc["clean", "tokens_b"] == 0 and rows.loc["clean", "duration_ms_b"] == 0.0
    assert rows.loc["clean", "duration_ms_delta"] == -rows.loc["clean", "duration_ms_a"]
    assert ms.diff(run, fork).equals(diff)


def test_two_unrelated_runs_of_one_flow_diff_too(wb: ms.Workbench) -> None:
    """Runs that were never forked are aligned by step id; nothing is marked copied."""
    a = wb.run("news/report", {"text": "one"})
    b = wb.run("news/report", {"text": "one two"})
    diff = a.diff(b).set_index("step_id")
    assert not diff["copied_a"].any() and not diff["copied_b"].any()
    assert diff.loc["clean", "changed_paths"] == ["$.text", "$.words"]
    assert diff.loc["clean", "changes"] == ["$.text: one → one two", "$.words: 1 → 2"]


def test_a_step_only_one_run_reached_has_a_row_with_the_other_side_empty(
    wb: ms.Workbench,
) -> None:
    """A paused fork against the completed parent: steps it has not reached show no status
    on its side and count as changed (their output is absent)."""
    run = wb.run("news/reviewed", {"text": "x"}).approve().approve()
    fork = run.fork(at="summary")
    diff = run.diff(fork).set_index("step_id")
    assert diff.loc["check", "status_b"] == "waiting_approval"
    assert pd.isna(diff.loc["publish", "status_b"])
    assert diff.loc["publish", "output_changed"]
    assert pd.isna(diff.loc["publish", "tokens_b"])
    html = run.diff(fork)._repr_html_() or ""
    bold = next(rule for rule in html.split("}") if "font-weight: bold" in rule)
    assert "_row4_col3," in bold or "_row4_col3 " in bold  # publish's status_b: moved


def test_values_in_a_diff_are_redacted(wb: ms.Workbench) -> None:
    """An e-mail address in a step output never appears in the diff's changes."""
    a = wb.run("news/report", {"text": "write to ana@example.com, ref 1"})
    b = wb.run("news/report", {"text": "write to ana@example.com, ref 2"})
    changes = " ".join(a.diff(b).set_index("step_id").loc["clean", "changes"])
    assert "@example.com" not in changes
    assert "<EMAIL>" in changes


def test_runs_of_different_flows_are_not_diffed(wb: ms.Workbench) -> None:
    """A diff aligns one flow's steps: two flows are refused with both named."""
    a = wb.run("news/report", {"text": "x"})
    b = wb.run("news/reviewed", {"text": "x"})
    with pytest.raises(ms.RunError, match=r"news/report.*news/reviewed"):
        a.diff(b)


def test_the_display_highlights_what_changed(wb: ms.Workbench, project: ForkProject) -> None:
    """The HTML display colours changed rows and cells and escapes values; a selection
    keeping output_changed is still highlighted, one without it is a plain table."""
    run = wb.run("news/report", {"text": "<b>bold</b>"})
    project.set_prompt("Other:")
    diff = run.diff(run.fork(at="summary"))
    html = diff._repr_html_()
    assert html is not None
    assert "#ffd6a5" in html and "#fff4ce" in html
    assert "<b>bold</b>" not in html and "&lt;b&gt;bold&lt;/b&gt;" in html
    selected = diff[diff["output_changed"]][["step_id", "output_changed", "changes"]]
    assert "#ffd6a5" in (selected._repr_html_() or "")
    plain = diff[["step_id", "tokens_delta"]]._repr_html_()
    assert plain is not None and "#ffd6a5" not in plain
