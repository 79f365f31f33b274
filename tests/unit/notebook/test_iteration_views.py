"""The run view while a product is being edited: flow changes, notes, skipped steps."""

from __future__ import annotations

from pathlib import Path

import master_sdk as ms
from master_sdk.notebook.forms import ApprovalForm, SchemaForm
from tests.conftest import Project


def _edit_prompt(root: Path) -> None:
    path = root / "products/hello_world/flows/greet.yaml"
    path.write_text(
        path.read_text().replace("Send this text to the summariser?", "Summarise this?"),
        encoding="utf-8",
    )


def test_a_changed_flow_is_offered_once_with_its_diff_and_a_way_on(
    wb: ms.Workbench, hello_root: Path
) -> None:
    """Approving after an edit shows what changed, once, and a Continue button; the
    form itself stays quiet and usable."""
    run = wb.run("hello_world/greet", inputs={"text": "Hi"})
    view = run.view()
    form = run.form()
    assert isinstance(form, ApprovalForm)
    _edit_prompt(hello_root)
    form.comment.value = "fine"
    form.approve_button.click()
    assert run.status == "waiting_approval"
    assert form.status == "" and not form.approve_button.disabled
    assert view.flow_change.layout.display is None
    text = view.flow_change_text.value
    assert "steps changed: review" in text
    assert "-    prompt: &quot;Send this text to the summariser?&quot;" in text
    assert "+    prompt: &quot;Summarise this?&quot;" in text
    assert view.notice.value == ""  # not a second copy of the same error
    view.continue_button.click()
    assert run.status == "waiting_input"
    assert view.flow_change.layout.display == "none"
    assert view.notice.value == ""
    trace = run.trace()
    assert "flow_change_allowed" in set(trace["event"].astype(str))
    assert "approved by" in view.steps.value and "fine" in view.steps.value


def test_a_flow_change_that_cannot_continue_is_shown_as_an_error(
    wb: ms.Workbench, hello_root: Path
) -> None:
    """If the step the run waits at was removed, Continue reports why it cannot."""
    run = wb.run("hello_world/greet", inputs={"text": "Hi"})
    view = run.view()
    path = hello_root / "products/hello_world/flows/greet.yaml"
    text = path.read_text()
    start = text.index("  - id: review")
    end = text.index("  - id: audience")
    path.write_text(text[:start] + text[end:], encoding="utf-8")
    run.form().approve_button.click()
    view.continue_button.click()
    assert run.status == "waiting_approval"
    assert "no longer in it" in view.notice.value
    assert view.flow_change.layout.display == "none"


def test_the_approval_note_carries_the_comment(wb: ms.Workbench) -> None:
    """The step table says who approved and what they wrote."""
    run = wb.run("hello_world/greet", inputs={"text": "Hi"})
    run.approve(comment="looks   fine", by="ana")
    assert "approved by ana: “looks fine”" in run.view().steps.value
    assert "approved by ana: “looks fine”" in run.view().text


def test_a_step_skipped_by_its_guard_says_why_and_has_no_attempt(project: Project) -> None:
    """A `when:` that was false is the note; no attempt or duration is shown."""
    project.flow(
        "f",
        """
        id: f
        inputs: {type: object, properties: {text: {type: string}}}
        steps:
          - {id: a, type: tool, tool: echo, input: {text: "{{ inputs.text }}"}}
          - id: b
            type: tool
            tool: echo
            when: "inputs.text | length > 3"
            input: {text: "{{ inputs.text }}"}
        """,
    )
    wb = project.open()
    run = wb.run("demo/f", {"text": "ab"})
    text = run.view().text
    line = next(row for row in text.splitlines() if row.strip().startswith("b "))
    assert "skipped: when inputs.text | length > 3 was false" in line
    assert " ms" not in line
    assert (
        "<td style='padding:2px 10px 2px 0'></td><td style='padding:2px 10px 2px 0'>"
        "</td><td style='padding:2px 10px 2px 0'>skipped: when" in run.view().steps.value
    )
    wb.close()


def test_invalid_input_points_up_to_the_fields(wb: ms.Workbench) -> None:
    """The status line sits under the fields, so it says 'marked above'."""
    run = wb.run("hello_world/greet", inputs={"text": "Hi"}).approve()
    form = run.form()
    assert isinstance(form, SchemaForm)
    form.fields["audience"].value = ""
    form.submit_button.click()
    assert "marked above" in form.widget.children[-1].value
