"""Forking runs on real SQLite stores: copied steps never run again, the rest runs on the
flow as it is now, human steps ask again, a broken upstream is refused, lineage and
budgets are right."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

import master_sdk as ms
from master_sdk.memory.store import Commit
from master_sdk.testing import FunctionModel
from tests.support.forks import REVIEWED, ForkProject, answer, make_project


@pytest.fixture
def project(tmp_path: Path) -> ForkProject:
    return make_project(tmp_path)


@pytest.fixture
def model() -> FunctionModel:
    return FunctionModel(answer)


@pytest.fixture
def wb(project: ForkProject, model: FunctionModel) -> Iterator[ms.Workbench]:
    bench = project.open(model)
    yield bench
    bench.close()


def completed(wb: ms.Workbench, text: str = " the quarterly numbers ") -> ms.Run:
    run = wb.run("news/report", {"text": text})
    assert run.status == "completed"
    return run


def test_copied_steps_are_not_executed_again(
    wb: ms.Workbench, project: ForkProject, model: FunctionModel
) -> None:
    """Forking at the last step runs only that step: no tool before it is called again and
    no model request is sent."""
    run = completed(wb)
    assert project.calls() == ["clean", "summarizer", "publish"]
    calls = len(model.calls)
    fork = run.fork(at="publish")
    assert fork.status == "completed"
    assert project.calls() == ["clean", "summarizer", "publish", "publish"]
    assert len(model.calls) == calls
    assert fork.output == run.output


def test_a_fork_runs_from_its_step_on_the_flow_as_it_is_now(
    wb: ms.Workbench, project: ForkProject, model: FunctionModel
) -> None:
    """An edited prompt is used by the fork's summary step; the cleaned text it reads is the
    parent's, copied; the parent keeps its own output."""
    run = completed(wb)
    project.set_prompt("In one line:")
    fork = run.fork(at="summary")
    assert project.calls() == ["clean", "summarizer", "publish", "summarizer", "publish"]
    assert model.calls[-1].messages[-1].content == "In one line: the quarterly numbers"
    steps = fork.steps().set_index("step_id")
    assert steps.loc["clean", "output"] == run.steps().set_index("step_id").loc["clean", "output"]
    assert "In one line:" in steps.loc["summary", "output"]["summary"]
    assert "Summarise:" in run.steps().set_index("step_id").loc["summary", "output"]["summary"]


def test_the_copy_is_marked_in_the_trace(wb: ms.Workbench) -> None:
    """The fork's trace starts with run_started naming its parent, then one step_copied
    event per copied step (attrs.copied_from), then the steps that ran."""
    run = completed(wb)
    fork = run.fork(at="summary", by="ben")
    trace = fork.trace()
    assert list(trace["event"][:3]) == ["run_started", "step_copied", "step_started"]
    started = trace.iloc[0]["attrs"]
    assert started == {"by": "ben", "parent_run_id": run.id, "forked_at": "summary"}
    copied = trace[trace["event"] == "step_copied"]
    assert list(copied["step_id"]) == ["clean"]
    assert copied.iloc[0]["attrs"] == {"copied_from": run.id}
    assert list(copied["status"]) == ["completed"]


def test_lineage_is_recorded_and_listed(wb: ms.Workbench) -> None:
    """wb.runs() shows parent_run_id and forked_at; run.lineage() lists ancestors, the run
    and its descendants with their depth."""
    root = completed(wb)
    child = root.fork(at="summary")
    grandchild = child.fork(at="publish")
    sibling = root.fork(at="publish")
    runs = wb.runs().set_index("run_id")
    assert runs.loc[child.id, "parent_run_id"] == root.id
    assert runs.loc[child.id, "forked_at"] == "summary"
    assert runs.loc[grandchild.id, "parent_run_id"] == child.id
    assert (child.parent_run_id, child.forked_at) == (root.id, "summary")
    lineage = child.lineage()
    assert list(lineage["run_id"]) == [root.id, child.id, grandchild.id]
    assert list(lineage["relation"]) == ["ancestor", "self", "descendant"]
    assert list(lineage["depth"]) == [-1, 0, 1]
    whole = root.lineage()
    assert list(whole["run_id"]) == [root.id, child.id, sibling.id, grandchild.id]
    assert list(whole["depth"]) == [0, 1, 1, 2]
    assert wb.get_run(child.id).parent_run_id == root.id


def test_copied_steps_are_not_charged_to_the_fork(wb: ms.Workbench) -> None:
    """The fork's counters hold only what it executed: forked at publish, one step and one
    tool call, no model call or tokens."""
    run = completed(wb)
    fork = run.fork(at="publish")
    row = wb.runs().set_index("run_id").loc[fork.id]
    assert (row["steps"], row["tool_calls"], row["model_calls"], row["total_tokens"]) == (
        1,
        1,
        0,
        0,
    )
    budget = fork.budget().set_index("budget")
    assert budget.loc["model_calls", "used"] == 0


def test_a_forks_budget_covers_what_it_executes(project: ForkProject, tmp_path: Path) -> None:
    """Under max_model_calls: 1, a fork at the summary step of a run that already made its
    one model call may make its own."""
    project.write_flow(
        "report",
        (project.product / "flows" / "report.yaml").read_text() + "policy: {max_model_calls: 1}\n",
    )
    model = FunctionModel(answer)
    with project.open(model) as wb:
        run = completed(wb)
        fork = run.fork(at="summary")
        assert fork.status == "completed"
        assert len(model.calls) == 2


def test_inputs_override_the_flow_inputs_of_the_steps_that_run_again(
    wb: ms.Workbench, project: ForkProject
) -> None:
    """inputs= is merged over the parent's inputs and validated; copied steps keep what
    they computed from the old inputs."""
    project.write_flow(
        "report",
        (project.product / "flows" / "report.yaml")
        .read_text()
        .replace('{text: "{{ steps.clean.output.text }}"}', '{text: "{{ inputs.text }}"}'),
    )
    run = completed(wb, "old text")
    fork = run.fork(at="summary", inputs={"text": "new text"})
    assert fork.inputs == {"text": "new text"}
    steps = fork.steps().set_index("step_id")
    assert steps.loc["clean", "output"]["text"] == "old text"
    assert steps.loc["summary", "output"]["summary"].endswith("Summarise: new text")
    with pytest.raises(ms.InputInvalid):
        run.fork(at="summary", inputs={"text": ""})
    assert len(wb.runs()) == 2


def test_model_overrides_the_agent_steps_of_this_fork_only(
    wb: ms.Workbench, model: FunctionModel
) -> None:
    """model= sends the fork's agent requests to another configured model; the parent and
    later runs keep the flow's model."""
    run = completed(wb)
    fork = run.fork(at="summary", model="other")
    assert fork.status == "completed"
    assert (
        fork.steps().set_index("step_id").loc["summary", "output"]["summary"].startswith("[other]")
    )
    assert (
        completed(wb)
        .steps()
        .set_index("step_id")
        .loc["summary", "output"]["summary"]
        .startswith("[default]")
    )
    assert fork.trace().iloc[0]["attrs"]["model"] == "other"


def test_a_model_outside_the_allow_list_or_unknown_is_refused_before_anything_is_written(
    tmp_path: Path,
) -> None:
    """allowed_models applies to a fork's model=; an unknown model is refused too."""
    project = make_project(tmp_path, policy="allowed_models: [default, other]\n")
    with project.open(FunctionModel(answer)) as wb:
        run = completed(wb)
        with pytest.raises(ms.PolicyViolation, match="banned"):
            run.fork(at="summary", model="banned")
        with pytest.raises(ms.PolicyViolation, match="nope"):
            run.fork(at="summary", model="nope")
        with pytest.raises(ms.RunError, match="no agent step"):
            run.fork(at="publish", model="other")
        assert len(wb.runs()) == 1


def test_human_decisions_at_or_after_the_fork_step_are_asked_again(
    wb: ms.Workbench, project: ForkProject
) -> None:
    """A run with approvals before and after the summary: the fork copies the first
    decision and pauses at the second, which it never reuses."""
    run = wb.run("news/reviewed", {"text": "a report"})
    run.approve(by="ana")
    run.approve(by="ana")
    assert run.status == "completed"
    fork = run.fork(at="summary")
    assert fork.status == "waiting_approval"
    assert fork.waiting_for is not None and fork.waiting_for["step"] == "check"
    assert project.calls() == ["clean", "summarizer", "publish", "summarizer"]
    fork.reject(by="ben")
    assert fork.status == "rejected"
    at_review = run.fork(at="review")
    assert at_review.status == "waiting_approval"
    assert at_review.waiting_for is not None and at_review.waiting_for["step"] == "review"
    audit = wb.approvals()
    assert audit["run_id"].value_counts().to_dict() == {run.id: 2, fork.id: 1}


def test_a_paused_fork_survives_a_restart_with_its_model_override(
    project: ForkProject, tmp_path: Path
) -> None:
    """The model override is stored with the run: after reopening the store the approved
    fork's agent step still uses it."""
    project.write_flow(
        "reviewed",
        REVIEWED.replace(
            '  - id: check\n    type: hitl\n    prompt: "Publish this summary?"\n', ""
        ).replace(
            "  - id: summary", "  - id: gate\n    type: hitl\n    prompt: go?\n  - id: summary"
        ),
    )
    with project.open(FunctionModel(answer)) as wb:
        run = wb.run("news/reviewed", {"text": "a report"}).approve().approve()
        assert run.status == "completed"
        fork_id = run.fork(at="gate", model="other").id
    with project.open(FunctionModel(answer)) as wb:
        fork = wb.get_run(fork_id).approve()
        assert fork.status == "completed"
        summary = fork.steps().set_index("step_id").loc["summary", "output"]["summary"]
        assert summary.startswith("[other]")


def test_a_fork_whose_upstream_no_longer_fits_the_flow_is_refused(
    wb: ms.Workbench, project: ForkProject
) -> None:
    """Renamed output field read downstream, a renamed step, an unknown fork step: each is
    refused naming the step and field, and nothing is written."""
    run = completed(wb)
    flow = (project.product / "flows" / "report.yaml").read_text()
    components = (project.product / "components.py").read_text()
    (project.product / "components.py").write_text(
        components.replace(
            "    text: str\n    words: int", "    body: str\n    words: int"
        ).replace("Cleaned(text=text.strip()", "Cleaned(body=text.strip()")
    )
    project.write_flow("report", flow.replace("steps.clean.output.text", "steps.clean.output.body"))
    with project.open(FunctionModel(answer)) as fresh:
        with pytest.raises(ms.RunError, match=r"step 'clean'.*field 'body'") as info:
            fresh.get_run(run.id).fork(at="summary")
        assert info.value.step == "clean"
    (project.product / "components.py").write_text(components)
    project.write_flow(
        "report", flow.replace("id: clean", "id: tidy").replace("steps.clean", "steps.tidy")
    )
    with project.open(FunctionModel(answer)) as fresh:
        with pytest.raises(ms.RunError, match=r"step 'tidy'.*not in that run"):
            fresh.get_run(run.id).fork(at="summary")
        with pytest.raises(ms.RunError, match="has no such step"):
            fresh.get_run(run.id).fork(at="nowhere")
        assert len(fresh.runs()) == 1


ASKED = """
id: asked
steps:
  - id: ask
    type: user_input
    prompt: "What should be summarised?"
    schema:
      type: object
      properties: {topic: {type: string}, angle: {type: string}}
      required: [topic]
  - id: summary
    type: agent
    agent: summarizer
    input: {text: "{{ steps.ask.output.topic }}"}
"""


def test_a_field_a_rerun_step_reads_but_the_copied_output_lacks_refuses_the_fork(
    wb: ms.Workbench, project: ForkProject
) -> None:
    """A human's copied input without the optional field the edited summary step now reads:
    refused, naming the step and field (the flow itself compiles)."""
    project.write_flow("asked", ASKED)
    with project.open(FunctionModel(answer)) as fresh:
        run = fresh.run("news/asked").submit({"topic": "rates"})
        assert run.status == "completed"
    project.write_flow("asked", ASKED.replace("steps.ask.output.topic", "steps.ask.output.angle"))
    with project.open(FunctionModel(answer)) as fresh:
        with pytest.raises(ms.RunError, match=r"step 'summary' reads steps\.ask\.output\.angle"):
            fresh.get_run(run.id).fork(at="summary")
        assert len(fresh.runs()) == 1


def test_a_step_the_flow_removed_upstream_refuses_the_fork(
    wb: ms.Workbench, project: ForkProject
) -> None:
    """The parent ran a step before the fork point that the flow no longer has: refused,
    naming it; forking before the removed step is fine."""
    run = wb.run("news/reviewed", {"text": "x"}).approve().approve()
    project.write_flow(
        "reviewed",
        REVIEWED.replace('  - id: review\n    type: hitl\n    prompt: "Summarise this?"\n', ""),
    )
    with project.open(FunctionModel(answer)) as fresh:
        parent = fresh.get_run(run.id)
        with pytest.raises(ms.RunError, match=r"step 'review' ran before it.*no longer has it"):
            parent.fork(at="summary")
        assert parent.fork(at="clean").waiting_for == {
            "step": "check",
            "kind": "hitl",
            "prompt": "Publish this summary?",
        }


def test_a_step_that_did_not_finish_in_the_parent_cannot_be_copied(wb: ms.Workbench) -> None:
    """Forking a paused run past its pause is refused: that step has no output to copy."""
    run = wb.run("news/reviewed", {"text": "x"})
    assert run.status == "waiting_approval"
    with pytest.raises(ms.RunError, match=r"step 'review' did not finish"):
        run.fork(at="summary")
    assert run.fork(at="review").status == "waiting_approval"


def test_the_copy_is_one_commit_with_the_new_run(project: ForkProject) -> None:
    """Counting commits with a hook: a fork at the publish step of a completed run makes
    the same commits as running that one step (the copy rides on the first)."""

    class Count:
        def __init__(self) -> None:
            self.labels: list[str] = []

        def before_commit(self, commit: object) -> None:
            pass

        def after_commit(self, commit: Commit) -> None:
            self.labels.append(commit.label)

    counter = Count()
    with project.open(FunctionModel(answer), hooks=[counter]) as wb:
        run = completed(wb)
        counter.labels.clear()
        run.fork(at="publish")
        assert counter.labels == ["step_start", "end"]


def test_a_fork_lives_in_a_real_sqlite_file(wb: ms.Workbench, project: ForkProject) -> None:
    """The store file holds the fork's lineage columns (read with sqlite3 directly)."""
    run = completed(wb)
    fork = run.fork(at="summary")
    path = Path(wb.store_info()["path"])
    copy = project.root / "copy.sqlite3"
    shutil.copyfile(path, copy)
    for suffix in ("-wal", "-shm"):
        if Path(str(path) + suffix).exists():
            shutil.copyfile(str(path) + suffix, str(copy) + suffix)
    conn = sqlite3.connect(copy)
    try:
        row = conn.execute(
            "SELECT parent_run_id, forked_at FROM runs WHERE run_id = ?", (fork.id,)
        ).fetchone()
    finally:
        conn.close()
    assert row == (run.id, "summary")


def test_a_prompt_edited_while_a_fork_waits_is_used_when_it_resumes(
    wb: ms.Workbench, project: ForkProject, model: FunctionModel
) -> None:
    """Forked at the first approval, the fork waits; the prompt is edited meanwhile; once
    approved, its summary uses the prompt as it is then, and nothing copied ran again."""
    run = wb.run("news/reviewed", {"text": "a report"}).approve().approve()
    fork = run.fork(at="review")
    assert fork.status == "waiting_approval"
    assert project.calls() == ["clean", "summarizer", "publish"]
    project.set_prompt("Edited while waiting:")
    fork.approve(by="ben")
    assert fork.status == "waiting_approval"  # the second approval, asked again too
    assert model.calls[-1].messages[-1].content == "Edited while waiting: a report"
    fork.approve(by="ben")
    assert fork.status == "completed"
    assert project.calls() == ["clean", "summarizer", "publish", "summarizer", "publish"]
