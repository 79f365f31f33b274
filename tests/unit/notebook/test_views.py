"""The run view and flow diagrams: states, forms driven from code, in-place updates."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import master_sdk as ms
from master_sdk.notebook.forms import ApprovalForm, SchemaForm
from master_sdk.notebook.recovery import RecoveryForm
from master_sdk.notebook.views import RunView
from tests.conftest import REPO, Project

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def start(wb: ms.Workbench, text: str = "Hello") -> ms.Run:
    return wb.run("hello_world/greet", inputs={"text": text})


def html_of(view: RunView) -> str:
    return view.header.value + view.steps.value + view.result.value


# ------------------------------------------------------------------ states and forms


def test_paused_run_shows_header_steps_and_the_approval_form(wb: ms.Workbench) -> None:
    """Waiting for approval: flow, id and status in the header, every step listed, and the
    approval form showing the step's show: value."""
    run = start(wb, "Hello there")
    view = run.view()
    assert "hello_world/greet" in view.header.value
    assert run.id in view.header.value and "waiting_approval" in view.header.value
    for step in ("echo", "review", "audience", "summary"):
        assert f"<code>{step}</code>" in view.steps.value
    assert view.steps.value.count("not reached") == 2
    form = run.form()
    assert isinstance(form, ApprovalForm)
    assert view.form_box.children == (form.widget,)
    assert "Hello there" in form.shown_html.value
    assert form.approve_button.description == "Approve"
    assert form.reject_button.description == "Reject"


def test_view_and_form_are_the_same_objects_while_the_pause_lasts(wb: ms.Workbench) -> None:
    """run.view() and run.form() return the same objects on every call at one pause."""
    run = start(wb)
    assert run.view() is run.view()
    form = run.form()
    form.comment.value = "typed before the click"
    assert run.form() is form
    run.view().update()
    assert run.form() is form and form.comment.value == "typed before the click"


def test_clicks_continue_the_run_and_redraw_the_same_view(wb: ms.Workbench) -> None:
    """Approve then Submit, clicked from code, continue the run; the one view shows each
    new state in place and finally the output."""
    run = start(wb, "Hello there")
    view = run.view()
    approval = run.form()
    assert isinstance(approval, ApprovalForm)
    approval.comment.value = "fine"
    approval.approve_button.click()
    assert approval.status == "approved"
    assert run.status == "waiting_input"
    assert run.view() is view
    assert "waiting_input" in view.header.value
    assert "approved by" in view.steps.value

    form = run.form()
    assert isinstance(form, SchemaForm)
    assert view.form_box.children == (form.widget,)
    assert form.submit_button.description == "Submit"
    assert form.fields["audience"].control.placeholder == "audience"
    form.fields["audience"].value = "the board"
    form.submit_button.click()
    assert form.status == "submitted"
    assert run.status == "completed"
    assert view.form_box.children == ()
    assert "completed" in view.header.value
    assert "Summarise for the board: Hello there" in view.result.value


def test_invalid_input_is_shown_at_its_field_and_nothing_is_submitted(wb: ms.Workbench) -> None:
    """Submit with a missing required field marks the field; the stored run is unchanged
    until the value is corrected."""
    run = start(wb)
    run.form().approve_button.click()
    events = len(run.trace())
    form = run.form()
    assert isinstance(form, SchemaForm)
    form.submit_button.click()
    assert form.status == "invalid"
    assert form.fields["audience"].error is not None
    assert wb.get_run(run.id).status == "waiting_input"
    assert len(run.trace()) == events
    assert run.form() is form
    form.fields["audience"].value = "everyone"
    form.submit_button.click()
    assert form.status == "submitted" and form.fields["audience"].error is None
    assert run.output["audience"] == "everyone"


def test_decisions_record_who_when_and_the_comment(wb: ms.Workbench) -> None:
    """The decider defaults to the workbench user, can be changed in the form, and lands in
    wb.approvals() with the comment."""
    wb.user = "ana"
    first = start(wb, "one")
    form = first.form()
    assert isinstance(form, ApprovalForm)
    assert form.user.value == "ana"
    form.comment.value = "ship it"
    form.approve_button.click()
    second = start(wb, "two")
    other = second.form()
    assert isinstance(other, ApprovalForm)
    other.user.value = "ben"
    other.comment.value = "not this"
    other.reject_button.click()
    audit = wb.approvals()
    assert audit["by"].tolist() == ["ana", "ben"]
    assert audit["decision"].tolist() == ["approved", "rejected"]
    assert audit["comment"].tolist() == ["ship it", "not this"]
    assert audit["at"].notna().all()


def test_rejected_run_has_no_form_and_says_why(wb: ms.Workbench) -> None:
    """After Reject the view shows the run rejected; run.form() raises NotWaiting."""
    run = start(wb)
    run.form().reject_button.click()
    assert run.status == "rejected"
    view = run.view()
    assert view.form_box.children == ()
    assert "rejected" in view.header.value
    with pytest.raises(ms.NotWaiting, match="only a run waiting"):
        run.form()


def test_direct_api_calls_also_redraw_a_displayed_view(wb: ms.Workbench) -> None:
    """run.approve() in code, not a click, redraws the view already on screen."""
    run = start(wb)
    view = run.view()
    run.approve("from code", by="ana")
    assert "waiting_input" in view.header.value
    assert isinstance(view.form(), SchemaForm)


def test_stale_form_reports_that_another_kernel_answered_first(
    wb: ms.Workbench, hello_root: Path
) -> None:
    """A pause answered through another workbench: clicking this kernel's form changes
    nothing, says so in the form and the view, and the view shows the stored state."""
    run = start(wb)
    form = run.form()
    assert isinstance(form, ApprovalForm)
    with ms.Workbench.open(hello_root) as other:
        other.get_run(run.id).approve("first", by="ben")
    form.approve_button.click()
    assert form.status.startswith("error:") and "waiting_input" in form.status
    view = run.view()
    # the handle acted on the pause it showed: the store's compare-and-set refused it
    assert "AlreadyResumed" in view.notice.value
    assert "already resumed elsewhere" in view.notice.value
    assert run.status == "waiting_input"
    assert isinstance(view.form(), SchemaForm)
    assert wb.approvals()["by"].tolist() == ["ben"]


def test_refresh_shows_what_another_process_did(wb: ms.Workbench, hello_root: Path) -> None:
    """The Refresh button re-reads the run moved elsewhere and replaces the form."""
    run = start(wb)
    view = run.view()
    with ms.Workbench.open(hello_root) as other:
        moved = other.get_run(run.id)
        moved.approve(by="ben")
        moved.submit({"audience": "ops"}, by="ben")
    assert "waiting_approval" in view.header.value
    view.refresh_button.click()
    assert "completed" in view.header.value
    assert view.form_box.children == ()
    assert "ops" in view.result.value


def test_reopened_run_shows_the_same_form_and_resumes_the_same_run(
    wb: ms.Workbench, hello_root: Path
) -> None:
    """A run paused by one workbench, opened by id in a fresh one, offers the same form
    and continues the same run."""
    run = start(wb, "kept across restarts")
    with ms.Workbench.open(hello_root) as fresh:
        again = fresh.get_run(run.id)
        form = again.form()
        assert isinstance(form, ApprovalForm)
        assert "kept across restarts" in form.shown_html.value
        form.approve_button.click()
        again.form().fields["audience"].value = "the team"
        again.form().submit_button.click()
        assert again.id == run.id and again.status == "completed"
    assert run.refresh().status == "completed"


def test_run_displays_as_a_widget_with_a_text_summary(wb: ms.Workbench) -> None:
    """The view's bundle holds the widget and a plain-text summary of the run."""
    run = start(wb)
    bundle = run.view()._repr_mimebundle_()
    assert WIDGET_MIME in bundle
    text = bundle["text/plain"]
    assert text.splitlines()[0] == f"hello_world/greet · run {run.id} · waiting_approval"
    assert "Waiting for approval at step 'review'" in text
    assert "audience  user_input  not reached" in text


# ------------------------------------------------------------------ escaping


def test_values_from_the_run_are_html_escaped(project: Project) -> None:
    """Markup in a shown value, a prompt or an output reaches the page as text."""
    project.flow(
        "shout",
        """
        id: shout
        inputs: {type: object, properties: {text: {type: string}}}
        steps:
          - id: echo
            type: tool
            tool: echo
            input: {text: "{{ inputs.text }}"}
          - id: check
            type: hitl
            prompt: "Really <b>send</b>?"
            show: "{{ steps.echo.output }}"
        output: "{{ steps.echo.output }}"
        """,
    )
    with project.open() as wb:
        run = wb.run("demo/shout", inputs={"text": "<script>alert(1)</script>"})
        form = run.form()
        assert isinstance(form, ApprovalForm)
        assert "<script>" not in form.shown_html.value
        assert "&lt;script&gt;" in form.shown_html.value
        form.approve_button.click()
        view = run.view()
        assert "<script>" not in html_of(view)
        assert "&lt;script&gt;" in view.result.value


def test_secrets_are_redacted_in_what_the_view_and_form_show(hello_root: Path) -> None:
    """A secret value in the text to approve is shown as <SECRET> in the form and the view."""
    secret = "sk-live-0123456789abcdef"
    (hello_root / "secrets").mkdir()
    (hello_root / "secrets" / "secrets.yaml").write_text(f"openai: {{api_key: {secret}}}\n")
    with ms.Workbench.open(hello_root) as wb:
        run = start(wb, f"the key is {secret}")
        form = run.form()
        assert isinstance(form, ApprovalForm)
        assert secret not in form.shown_html.value and "&lt;SECRET&gt;" in form.shown_html.value
        form.approve_button.click()
        run.form().fields["audience"].value = "ops"
        run.form().submit_button.click()
        view = run.view()
        assert run.status == "completed"
        assert secret not in html_of(view) + view.text
        assert "&lt;SECRET&gt;" in view.result.value


# ------------------------------------------------------------------ interrupted runs


@pytest.fixture(scope="module")
def crashed_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A hello_world store whose run died right after its echo step started (a real
    process ended with os._exit), and that run's id."""
    root = tmp_path_factory.mktemp("crashed")
    shutil.copytree(REPO / "products", root / "products")
    shutil.copytree(REPO / "configs", root / "configs")
    script = textwrap.dedent(
        """
        import sys
        import master_sdk as ms
        wb = ms.Workbench.open(sys.argv[1])
        wb.run("hello_world/greet", inputs={"text": "cut short"})
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "MASTER_CRASH_POINT": "after_step_start"}
    done = subprocess.run(
        [sys.executable, "-c", script, str(root)], env=env, capture_output=True, timeout=120
    )
    assert done.returncode == 86, done.stderr.decode()
    with ms.Workbench.open(root) as wb:
        run_id = str(wb.runs()["run_id"].iloc[0])
    return root, run_id


@pytest.fixture
def interrupted(crashed_store: tuple[Path, str], tmp_path: Path) -> tuple[ms.Workbench, ms.Run]:
    """A private copy of the crashed store, opened, and its interrupted run."""
    source, run_id = crashed_store
    root = tmp_path / "copy"
    shutil.copytree(source, root)
    wb = ms.Workbench.open(root)
    run = wb.get_run(run_id)
    assert run.status == "interrupted"
    return wb, run


def test_interrupted_run_offers_retry_skip_and_abort(
    interrupted: tuple[ms.Workbench, ms.Run],
) -> None:
    """An interrupted run's view names the step and holds Retry, Skip and Abort buttons."""
    wb, run = interrupted
    with wb:
        form = run.form()
        assert isinstance(form, RecoveryForm)
        assert run.view().form_box.children == (form.widget,)
        labels = [form.retry_button.description, form.skip_button.description]
        assert [*labels, form.abort_button.description] == ["Retry", "Skip", "Abort"]
        assert "interrupted" in run.view().header.value
        assert "Interrupted" in run.view().text


def test_retry_runs_the_step_again_and_the_view_moves_on(
    interrupted: tuple[ms.Workbench, ms.Run],
) -> None:
    """Retry reruns the interrupted step; the view then shows the approval form."""
    wb, run = interrupted
    with wb:
        form = run.form()
        assert isinstance(form, RecoveryForm)
        form.retry_button.click()
        assert form.status == "retried"
        assert run.status == "waiting_approval"
        approval = run.form()
        assert isinstance(approval, ApprovalForm)
        assert "cut short" in approval.shown_html.value
        assert run.steps()["attempt"].iloc[0] == 2


def test_skip_uses_the_typed_output_and_refuses_broken_json(
    interrupted: tuple[ms.Workbench, ms.Run],
) -> None:
    """Skip with bad JSON changes nothing; with valid JSON that output stands for the step."""
    wb, run = interrupted
    with wb:
        form = run.form()
        assert isinstance(form, RecoveryForm)
        form.output.value = "{not json"
        form.skip_button.click()
        assert form.status == "invalid" and run.status == "interrupted"
        form.output.value = '{"text": "typed by hand"}'
        form.skip_button.click()
        assert form.status == "skipped"
        assert run.status == "waiting_approval"
        approval = run.form()
        assert isinstance(approval, ApprovalForm)
        assert "typed by hand" in approval.shown_html.value


def test_abort_ends_the_run_as_aborted_with_the_reason(
    interrupted: tuple[ms.Workbench, ms.Run],
) -> None:
    """Abort ends the run as aborted (an ended status); the view says so and offers no
    form."""
    wb, run = interrupted
    with wb:
        form = run.form()
        assert isinstance(form, RecoveryForm)
        form.reason.value = "not worth it"
        form.abort_button.click()
        assert form.status == "aborted"
        assert run.status == "aborted"
        assert run.ended
        assert "not worth it" in (run.error or "")
        assert run.view().form_box.children == ()
        assert "not worth it" in run.view().result.value


# ------------------------------------------------------------------ flow diagrams


def test_flow_diagram_shows_steps_guards_and_reject_branches(project: Project) -> None:
    """Mermaid text names each step with its kind, each guard as a decision with a skip
    branch, and reject edges to the end or to the step on_reject names."""
    project.flow(
        "branching",
        """
        id: branching
        inputs: {type: object, properties: {text: {type: string}}}
        steps:
          - id: echo
            type: tool
            tool: echo
            input: {text: "{{ inputs.text }}"}
          - id: review
            type: hitl
            prompt: "Go on?"
            on_reject: fallback
          - id: count
            type: tool
            tool: count
            when: "steps.review.output.approved and inputs.text | length > 3"
            input: {text: "{{ inputs.text }}"}
          - id: final
            type: hitl
            prompt: "Last check"
          - id: fallback
            type: tool
            tool: echo
            input: {text: "fallback"}
        """,
    )
    with project.open() as wb:
        flow = wb.flow("demo/branching")
        text = flow.mermaid()
    lines = text.splitlines()
    assert lines[0] == "flowchart TD"
    assert '  s0["echo<br/>tool: echo"]' in lines
    assert '  s1{{"review<br/>approval"}}' in lines
    assert '  s2["count<br/>tool: count"]' in lines
    guard = next(line for line in lines if line.startswith("  g2{"))
    assert "steps.review.output.approved and inputs.text #124; length #62; 3" in guard
    assert "  s1 -->|approved| g2" in lines
    assert "  s1 -.->|rejected| s4" in lines
    assert "  g2 -->|yes| s2" in lines
    assert "  g2 -.->|no: skip| s3" in lines
    assert "  s3 -.->|rejected| rejected" in lines
    assert "  s4 --> done" in lines
    bundle = flow._repr_mimebundle_()
    assert bundle["text/markdown"] == f"```mermaid\n{text}\n```\n"
    assert bundle["text/plain"].startswith("FlowView('demo/branching'")


def test_flow_labels_escape_quotes_and_markup(project: Project) -> None:
    """A guard with quotes and angle brackets cannot end a Mermaid label or inject markup,
    and the SVG drawing is well-formed XML with the text escaped."""
    project.flow(
        "quoted",
        """
        id: quoted
        inputs: {type: object, properties: {text: {type: string}}}
        steps:
          - id: echo
            type: tool
            tool: echo
            when: "inputs.text != '\\"<b>x</b>'"
            input: {text: "{{ inputs.text }}"}
        """,
    )
    with project.open() as wb:
        flow = wb.flow("demo/quoted")
        text = flow.mermaid()
        drawing = flow.svg()
    guard = next(line for line in text.splitlines() if line.startswith("  g0{"))
    assert guard.count('"') == 2
    assert "<b>" not in guard and "#60;b#62;" in guard
    root = ET.fromstring(drawing)  # noqa: S314  # our own SVG, built in this test
    texts = "".join(root.itertext())
    assert "<b>x</b>" in texts
    assert "<b>" not in drawing


def test_hello_world_svg_draws_every_step(wb: ms.Workbench) -> None:
    """The SVG drawing of hello_world has one box per step and the reject branch."""
    drawing = wb.flow("hello_world/greet").svg()
    root = ET.fromstring(drawing)  # noqa: S314  # our own SVG, built in this test
    texts = list(root.itertext())
    for step in ("echo", "review", "audience", "summary"):
        assert step in texts
    assert "rejected → end" in texts


# ------------------------------------------------------------------ outside Jupyter

NO_WIDGETS = """
import json, sys
import master_sdk as ms
wb = ms.Workbench.open(sys.argv[1])
run = wb.run("hello_world/greet", inputs={"text": "plain Python"})
repr(run)
bundle = run._repr_mimebundle_()
run.approve("ok", by="cli")
run.submit({"audience": "a terminal"})
run.trace(); run.steps(); run.budget(); wb.runs(); wb.approvals(); wb.traces()
flow = wb.flow("hello_world/greet")
flow.mermaid(); flow._repr_mimebundle_()
print(json.dumps({
    "status": run.status,
    "bundle": sorted(bundle),
    "html": bundle["text/html"],
    "loaded": sorted(m for m in ("ipywidgets", "IPython", "ipykernel") if m in sys.modules),
}))
"""


def test_plain_python_never_imports_ipywidgets_or_ipython(hello_root: Path) -> None:
    """A whole run, its frames, displays and diagram in a plain interpreter leave
    ipywidgets, IPython and ipykernel unimported; the run's display falls back to HTML."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", NO_WIDGETS, str(hello_root)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["status"] == "completed"
    assert result["loaded"] == []
    assert result["bundle"] == ["text/html", "text/plain"]
    assert "<table" in result["html"] and "waiting_approval" in result["html"]
