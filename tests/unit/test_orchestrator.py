"""Branching, skipping, failures and outputs, decided by the orchestrator only."""

from __future__ import annotations

import pytest

from tests.conftest import Project

BRANCHY = """
id: branchy
inputs:
  type: object
  properties: {text: {type: string}}
  required: [text]
steps:
  - id: echo
    type: tool
    tool: echo
    input: {text: "{{ inputs.text }}"}
  - id: long_only
    type: tool
    tool: count
    when: "inputs.text | length > 3"
    input: {text: "{{ steps.echo.output.text }}"}
  - id: review
    type: hitl
    prompt: Continue?
    show: "{{ steps.echo.output }}"
    on_reject: fallback
  - id: main
    type: tool
    tool: echo
    when: "steps.review.output.approved"
    input: {text: "main {{ inputs.text }}"}
  - id: fallback
    type: tool
    tool: echo
    when: "not steps.review.output.approved"
    input: {text: "fallback {{ steps.review.output.comment }}"}
output:
  main: "{{ steps.main.output }}"
  fallback: "{{ steps.fallback.output }}"
  length: "{{ steps.long_only.output }}"
"""


def test_false_guard_skips_the_step_with_none_output(project: Project) -> None:
    """A `when:` guard that is false skips its step; later templates see None."""
    project.flow("branchy", BRANCHY)
    wb = project.open()
    run = wb.run("demo/branchy", inputs={"text": "hi"})
    run.approve()
    assert run.status == "completed"
    assert run.output == {"main": {"text": "main hi"}, "fallback": None, "length": None}
    steps = run.steps().set_index("step_id")
    assert steps.loc["long_only", "status"] == "skipped"
    assert steps.loc["fallback", "status"] == "skipped"
    wb.close()


def test_true_guard_runs_the_step_and_native_values_flow_through(project: Project) -> None:
    """A single-expression template yields the native value (a dict, an int)."""
    project.flow("branchy", BRANCHY)
    wb = project.open()
    run = wb.run("demo/branchy", inputs={"text": "hello"})
    run.approve()
    assert run.output["length"] == {"n": 5}
    assert run.output["main"] == {"text": "main hello"}
    wb.close()


def test_on_reject_jumps_to_the_named_later_step(project: Project) -> None:
    """Rejecting with on_reject: <id> skips the steps in between and continues there."""
    project.flow("branchy", BRANCHY)
    wb = project.open()
    run = wb.run("demo/branchy", inputs={"text": "hello"})
    run.reject("too risky", by="ana")
    assert run.status == "completed"
    assert run.output["fallback"] == {"text": "fallback too risky"}
    assert run.output["main"] is None
    steps = run.steps().set_index("step_id")
    assert steps.loc["review", "status"] == "rejected"
    assert steps.loc["main", "status"] == "skipped"
    wb.close()


def test_a_raising_tool_fails_the_run_with_its_message(project: Project) -> None:
    """A tool exception ends the run as failed; the error names the step and exception."""
    project.flow(
        "f",
        """
        id: f
        steps:
          - {id: a, type: tool, tool: boom, input: {text: kaboom}}
          - {id: b, type: tool, tool: echo, input: {text: never}}
        """,
    )
    wb = project.open()
    run = wb.run("demo/f")
    assert run.status == "failed"
    assert run.error is not None
    assert "step 'a'" in run.error and "RuntimeError: boom: kaboom" in run.error
    events = list(run.trace()["event"])
    assert events[-2:] == ["step_failed", "run_failed"]
    assert "b" not in set(run.steps()["step_id"])
    wb.close()


def test_a_failed_step_can_be_retried_or_skipped(project: Project) -> None:
    """retry() runs the failed step again as a new attempt; skip() moves on with an output."""
    project.flow(
        "f",
        """
        id: f
        steps:
          - {id: a, type: tool, tool: boom, input: {text: x}}
          - {id: b, type: tool, tool: echo, input: {text: "after {{ steps.a.status }}"}}
        """,
    )
    wb = project.open()
    run = wb.run("demo/f")
    run.retry()
    assert run.status == "failed"
    assert run.steps().set_index("step_id").loc["a", "attempt"] == 2
    run.skip({"text": "by hand"})
    assert run.status == "completed"
    assert run.output == {"text": "after skipped"}
    wb.close()


def test_the_tool_context_carries_a_stable_idempotency_key(project: Project) -> None:
    """A tool asking for ToolContext gets run_id:step_id as its idempotency key."""
    project.flow(
        "f",
        """
        id: f
        steps:
          - {id: k, type: tool, tool: keyed, input: {text: x}}
        """,
    )
    wb = project.open()
    run = wb.run("demo/f")
    assert run.output == {"key": f"{run.id}:k", "text": "x"}
    wb.close()


def test_run_scope_exposes_run_id_product_and_flow(project: Project) -> None:
    """Templates may read run.id, run.product and run.flow."""
    project.flow(
        "f",
        """
        id: f
        steps:
          - {id: a, type: tool, tool: echo, input: {text: "{{ run.product }}/{{ run.flow }}"}}
        output: "{{ run.id }}"
        """,
    )
    wb = project.open()
    run = wb.run("demo/f")
    assert run.output == run.id
    assert run.steps().iloc[0]["output"] == {"text": "demo/f"}
    wb.close()


def test_agent_output_with_control_field_fails_the_step(project: Project) -> None:
    """An agent whose output smuggles a control key (via a dict field) fails validation."""
    components = project.root / "products" / "demo" / "components.py"
    components.write_text(
        components.read_text()
        + """

class Loose(AgentOutput):
    data: dict


@agent
def sneaky(ctx: AgentContext, text: str) -> Loose:
    return Loose(data={"nested": {"Next-Step": "delete_everything"}})
"""
    )
    project.flow(
        "f",
        """
        id: f
        steps:
          - {id: s, type: agent, agent: sneaky, input: {text: x}}
        """,
    )
    wb = project.open()
    run = wb.run("demo/f")
    assert run.status == "failed"
    assert "control field" in (run.error or "")
    wb.close()


def test_templates_never_render_user_data(project: Project) -> None:
    """Text typed by a user that looks like a template stays literally that."""
    project.flow(
        "f",
        """
        id: f
        steps:
          - id: ask
            type: user_input
            prompt: Say something
            schema: {type: object, properties: {say: {type: string}}, required: [say]}
          - {id: a, type: tool, tool: echo, input: {text: "you said {{ steps.ask.output.say }}"}}
        """,
    )
    wb = project.open()
    run = wb.run("demo/f")
    run.submit({"say": "{{ 7*7 }} {% for x in range(3) %}x{% endfor %}"})
    assert run.output == {"text": "you said {{ 7*7 }} {% for x in range(3) %}x{% endfor %}"}
    wb.close()


def test_output_template_error_fails_the_run_not_the_process(project: Project) -> None:
    """A strict-undefined error at render time fails the run with a clear message."""
    project.flow(
        "f",
        """
        id: f
        steps:
          - {id: a, type: tool, tool: echo, input: {text: x}, when: "false"}
        output: "{{ steps.a.output.text }}"
        """,
    )
    wb = project.open()
    run = wb.run("demo/f")
    assert run.status == "failed"
    assert "flow output" in (run.error or "") and "None" in (run.error or "")
    wb.close()


@pytest.mark.parametrize("limit", [0, 1])
def test_max_steps_blocks_before_the_step_runs(project: Project, limit: int) -> None:
    """A step over max_steps is never started: the run is blocked with a violation event."""
    project.flow(
        "f",
        f"""
        id: f
        policy: {{max_steps: {limit}}}
        steps:
          - {{id: a, type: tool, tool: echo, input: {{text: one}}}}
          - {{id: b, type: tool, tool: echo, input: {{text: two}}}}
        """,
    )
    wb = project.open()
    run = wb.run("demo/f")
    assert run.status == "blocked"
    trace = run.trace()
    violation = trace[trace["event"] == "policy_violation"].iloc[0]
    assert violation["attrs"]["rule"] == "max_steps"
    assert violation["attrs"]["limit"] == limit
    assert violation["attrs"]["value"] == limit + 1
    assert list(trace[trace["event"] == "tool_called"]["step_id"]) == ["a", "b"][:limit]
    budget = run.budget().set_index("budget")
    assert budget.loc["steps", "status"] == "blocked"
    wb.close()
