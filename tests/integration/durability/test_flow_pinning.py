"""Flow pinning: a paused run resumes only on the flow it started with, unless allowed.

The flow file is edited under a paused run, and the run is resumed from a fresh CLI
process (``python -m master_sdk.cli``) or from the kernel that kept its workbench open.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import master_sdk as ms
from tests.support.durability import REPO, driver_env, make_ledger_project, run_driver, tally


def cli(root: Path, store: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The ``master`` command in a new process."""
    return subprocess.run(
        [sys.executable, "-m", "master_sdk.cli", "--root", str(root), "--store", str(store), *args],
        env=driver_env(),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path, Path, Path]:
    """A project, its store, a ledger, and the ``pause`` flow file."""
    root = make_ledger_project(tmp_path / "project")
    flow = root / "products" / "ledger" / "flows" / "pause.yaml"
    return root, tmp_path / "s.sqlite3", tmp_path / "ledger", flow


def paused(root: Path, store: Path, ledger: Path) -> str:
    with ms.Workbench.open(root, store=store) as wb:
        run = wb.run("ledger/pause", {"ledger": str(ledger)})
        assert run.status == "waiting_approval"
        return run.id


def edit(flow: Path, old: str, new: str) -> None:
    text = flow.read_text(encoding="utf-8")
    assert old in text
    flow.write_text(text.replace(old, new), encoding="utf-8")


def test_resuming_after_the_flow_changed_fails_naming_the_change_and_changes_nothing(
    setup: tuple[Path, Path, Path, Path],
) -> None:
    """``master approve`` on a run whose flow file changed exits 1 naming the changed step
    and the way out; the run is still waiting and no decision was stored."""
    root, store, ledger, flow = setup
    run_id = paused(root, store, ledger)
    edit(flow, "prompt: Approve?", "prompt: Approve this, please?")

    done = cli(root, store, "approve", run_id, "--by", "ana")
    assert done.returncode == 1
    assert "flow ledger/pause changed since run" in done.stderr
    assert "steps changed: review" in done.stderr
    assert "allow_flow_change=True" in done.stderr
    with ms.Workbench.open(root, store=store) as wb:
        assert wb.get_run(run_id).status == "waiting_approval"
        assert len(wb.approvals()) == 0
    assert tally(ledger) == {}


def test_allow_flow_change_resumes_on_the_new_flow_and_records_it_in_the_trace(
    setup: tuple[Path, Path, Path, Path],
) -> None:
    """``--allow-flow-change`` resumes; the trace has ``flow_change_allowed`` with what
    changed and who allowed it; the run is pinned to the new flow from then on."""
    root, store, ledger, flow = setup
    run_id = paused(root, store, ledger)
    edit(flow, "prompt: Approve?", "prompt: Approve this, please?")

    done = cli(root, store, "approve", run_id, "--by", "ana", "--allow-flow-change")
    assert done.returncode == 0, done.stderr
    assert "waiting_input" in done.stdout
    with ms.Workbench.open(root, store=store) as wb:
        run = wb.get_run(run_id)
        allowed = run.trace().query("event == 'flow_change_allowed'")
        assert len(allowed) == 1
        attrs = allowed.iloc[0]["attrs"]
        assert attrs["by"] == "ana"
        assert attrs["changes"] == "steps changed: review"
        assert attrs["to_hash"] == wb.runs().iloc[0]["flow_hash"] != attrs["from_hash"]

    # a second edit is described against the flow the run now follows, not the first one
    edit(flow, "prompt: Say something", "prompt: Say something nice")
    done = cli(root, store, "submit", run_id, "--data", json.dumps({"say": "hi"}))
    assert done.returncode == 1
    assert "steps changed: ask" in done.stderr and "review" not in done.stderr


def test_a_kernel_that_kept_its_workbench_open_sees_the_edited_flow(
    setup: tuple[Path, Path, Path, Path],
) -> None:
    """Editing the YAML while the same Workbench stays open: resuming is refused just as
    from a new process (the open workbench does not keep running the old text)."""
    root, store, ledger, flow = setup
    with ms.Workbench.open(root, store=store) as wb:
        run = wb.run("ledger/pause", {"ledger": str(ledger)})
        edit(flow, "prompt: Approve?", "prompt: Approve now?")
        with pytest.raises(ms.FlowChanged, match="steps changed: review"):
            run.approve()
        assert run.status == "waiting_approval"
        run.approve(allow_flow_change=True)
        assert run.status == "waiting_input"


def test_a_new_product_version_alone_also_counts_as_a_change(
    setup: tuple[Path, Path, Path, Path],
) -> None:
    """Bumping the manifest's version under a paused run is reported as such."""
    root, store, ledger, _ = setup
    run_id = paused(root, store, ledger)
    manifest = root / "products" / "ledger" / "manifest.yaml"
    manifest.write_text("name: ledger\nversion: '1.1'\n", encoding="utf-8")
    with ms.Workbench.open(root, store=store) as wb:
        assert wb.get_run(run_id).status == "waiting_approval"  # reading is fine
    done = cli(root, store, "approve", run_id)
    assert done.returncode == 1
    assert "product version 1.0 -> 1.1" in done.stderr


def test_steps_inserted_before_the_paused_one_keep_the_run_at_the_same_step(
    setup: tuple[Path, Path, Path, Path],
) -> None:
    """A step added before the paused step: allowed, the run continues at the step it
    waited at (by id, not by position); the new earlier step never runs; the report says
    so; the stored steps sit at their new positions."""
    root, store, ledger, flow = setup
    run_id = paused(root, store, ledger)
    edit(
        flow,
        "steps:\n",
        'steps:\n  - {id: intro, type: tool, tool: mark, input: {ledger: "x", name: intro}}\n',
    )
    with ms.Workbench.open(root, store=store) as wb:
        run = wb.get_run(run_id)
        run.approve(by="ana", allow_flow_change=True)
        assert run.status == "waiting_input"
        run.submit({"say": "hi"})
        assert run.status == "completed"
        steps = run.steps()
        assert list(zip(steps["idx"], steps["step_id"], strict=True)) == [
            (1, "review"),
            (2, "after"),
            (3, "ask"),
            (4, "done"),
        ]
        changes = run.trace().query("event == 'flow_change_allowed'").iloc[0]["attrs"]["changes"]
        assert "steps added: intro" in changes
        assert "steps before the current one that will not run: intro" in changes
    assert tally(ledger) == {"after": 1, "done": 1}


@pytest.mark.parametrize(
    ("old", "new", "why"),
    [
        ("  - id: review\n    type: hitl\n    prompt: Approve?\n", "", "is no longer in it"),
        (
            "  - id: review\n    type: hitl\n    prompt: Approve?\n",
            "  - id: review\n    type: user_input\n    prompt: Approve?\n"
            "    schema: {type: object}\n",
            "is now a user_input step instead of hitl",
        ),
    ],
    ids=["removed", "retyped"],
)
def test_a_run_whose_paused_step_is_gone_or_retyped_cannot_continue_even_if_allowed(
    setup: tuple[Path, Path, Path, Path], old: str, new: str, why: str
) -> None:
    """allow_flow_change cannot resume a run at a step that no longer exists (or is now
    another kind of step); the message says so and suggests aborting; abort still works."""
    root, store, ledger, flow = setup
    run_id = paused(root, store, ledger)
    edit(flow, old, new)
    with ms.Workbench.open(root, store=store) as wb:
        run = wb.get_run(run_id)
        with pytest.raises(ms.FlowChanged) as caught:
            run.approve(allow_flow_change=True)
        assert why in str(caught.value) and "abort it" in str(caught.value)
        assert run.status == "waiting_approval"
        run.abort("the flow moved on", by="ana")
        assert run.status == "aborted"
        assert run.error == "aborted by ana: the flow moved on"


def test_an_interrupted_idempotent_step_is_not_retried_automatically_on_a_changed_flow(
    tmp_path: Path,
) -> None:
    """Automatic recovery never runs a step of a flow that changed since the run started:
    a human must accept the change with retry(allow_flow_change=True)."""
    root = make_ledger_project(tmp_path / "project")
    store, ledger = tmp_path / "s.sqlite3", tmp_path / "ledger"
    code, _, _ = run_driver(
        "drive", root, store, ledger, env={"MASTER_CRASH_POINT": "after_step_start@2"}
    )
    assert code == 86
    flow = root / "products" / "ledger" / "flows" / "ledger.yaml"
    edit(flow, "prompt: Go on?", "prompt: Carry on?")
    with ms.Workbench.open(root, store=store) as wb:
        (run_id,) = list(wb.runs()["run_id"])
        run = wb.get_run(run_id)
        assert run.status == "interrupted"
        with pytest.raises(ms.FlowChanged, match="steps changed: review"):
            run.retry()
        run.retry(allow_flow_change=True)
        assert run.status == "waiting_approval"
    assert tally(ledger) == {"first": 1, "second": 1}
