"""Budgets through real flows: worst cases before the call, high counts for silent
providers, unpriced models under a cost budget, and usage that survives a restart."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import master_sdk as ms
from master_sdk.models.tokens import estimate_prompt_tokens
from master_sdk.models.types import Message, ModelResponse, Usage
from master_sdk.testing import ScriptedModel
from tests.conftest import Project
from tests.support.openai_server import FakeOpenAIServer, Reply

EXTRA_COMPONENTS = """

@agent(model="default")
def chooser(ctx: AgentContext, text: str, model: str) -> Summary:
    return Summary(summary=ctx.complete(f"Summarise: {text}", model=model).text)


@agent(model="default")
def stubborn(ctx: AgentContext, text: str) -> Summary:
    try:
        ctx.complete(f"Summarise: {text}", model="gpt")
    except Exception:
        pass  # swallowing the refusal must not let the step complete
    return Summary(summary="carried on regardless")
"""

PROMPT_BOUND = estimate_prompt_tokens((Message("user", "Summarise: hello"),))


@pytest.fixture
def project(project: Project) -> Project:
    """The demo product plus agents that pick their model, and two configured models."""
    components = project.root / "products" / "demo" / "components.py"
    components.write_text(components.read_text(encoding="utf-8") + EXTRA_COMPONENTS, "utf-8")
    (project.root / "configs" / "models.yaml").write_text(
        "models:\n"
        "  default: {provider: fake}\n"
        "  capped: {provider: fake, max_tokens: 50}\n"
        "  gpt: {provider: fake}\n",
        encoding="utf-8",
    )
    return project


def summary_flow(project: Project, policy: str, *, model: str | None = None) -> None:
    choose = f", model: {model}" if model else ""
    project.flow(
        "f",
        f"""
        id: f
        policy: {policy}
        steps:
          - {{id: s, type: agent, agent: summarizer{choose}, input: {{text: hello}}}}
          - {{id: after, type: tool, tool: echo, input: {{text: never}}}}
        """,
    )


def violation(run: ms.Run) -> dict[str, object]:
    trace = run.trace()
    events = trace[trace["event"] == "policy_violation"]
    assert len(events) == 1, list(trace["event"])
    row = events.iloc[0]
    return {"step": row["step_id"], **row["attrs"]}


def assert_nothing_after(run: ms.Run, step: str) -> None:
    """The blocked step is the last: no later step started, the run ended blocked."""
    assert run.status == "blocked"
    steps = run.steps()
    assert list(steps["step_id"])[-1] == step
    assert steps.iloc[-1]["status"] == "blocked"
    events = list(run.trace()["event"])
    assert events[-2:] == ["policy_violation", "run_blocked"]


@pytest.mark.parametrize("spare", [0, -1])
def test_worst_case_with_a_configured_max_tokens(project: Project, spare: int) -> None:
    """prompt bound + max_tokens (50) exactly at max_total_tokens runs; one under is
    refused before the model is called."""
    limit = PROMPT_BOUND + 50 + spare
    summary_flow(project, f"{{max_total_tokens: {limit}}}", model="capped")
    model = ScriptedModel(["short"])
    wb = project.open(providers={"capped": model})
    run = wb.run("demo/f")
    if spare == 0:
        assert run.status == "completed"
        assert model.calls[0].max_tokens == 50
    else:
        assert model.calls == []
        assert violation(run) == {
            "step": "s",
            "rule": "max_total_tokens",
            "limit": limit,
            "value": PROMPT_BOUND + 50,
            "message": violation(run)["message"],
        }
        assert_nothing_after(run, "s")
        budget = run.budget().set_index("budget")
        assert budget.loc["total_tokens", "status"] == "blocked"
        assert budget.loc["total_tokens", "attempted"] == PROMPT_BOUND + 50
        assert budget.loc["total_tokens", "used"] == 0
    wb.close()


def test_without_max_tokens_the_reply_is_capped_to_what_is_left(project: Project) -> None:
    """No configured cap: the request carries max_tokens = what the budget has left after
    the prompt, so the worst case is exactly the limit."""
    summary_flow(project, f"{{max_total_tokens: {PROMPT_BOUND + 7}}}")
    model = ScriptedModel(["ok"])
    wb = project.open(providers={"default": model})
    run = wb.run("demo/f")
    assert run.status == "completed", run.error
    assert model.calls[0].max_tokens == 7
    wb.close()


def test_without_max_tokens_a_budget_with_no_room_for_a_reply_is_refused(
    project: Project,
) -> None:
    """max_total_tokens equal to the prompt bound leaves no token for the reply."""
    summary_flow(project, f"{{max_total_tokens: {PROMPT_BOUND}}}")
    model = ScriptedModel(["never sent"])
    wb = project.open(providers={"default": model})
    run = wb.run("demo/f")
    assert model.calls == []
    assert violation(run)["rule"] == "max_total_tokens"
    assert_nothing_after(run, "s")
    wb.close()


def test_a_provider_that_reports_no_usage_is_counted_high_and_flagged(project: Project) -> None:
    """Usage(0, 0, reported=False) is counted as the prompt bound plus an estimate of the
    reply, never as zero, and the trace says usage_estimated."""
    summary_flow(project, "{max_total_tokens: 10000}")
    reply = ModelResponse(text="x" * 30, usage=Usage(0, 0, reported=False), model="m")
    wb = project.open(providers={"default": ScriptedModel([reply])})
    run = wb.run("demo/f")
    assert run.status == "completed", run.error
    call = run.trace().set_index("event").loc["model_called"]
    assert (call["tokens_in"], call["tokens_out"]) == (PROMPT_BOUND, 10)
    assert call["attrs"]["usage_estimated"] is True
    used = run.budget().set_index("budget").loc["total_tokens", "used"]
    assert used == PROMPT_BOUND + 10
    wb.close()


def test_estimated_usage_that_passes_the_limit_blocks_the_run(project: Project) -> None:
    """A silent provider whose estimated usage passes the limit is stopped after the call."""
    # the request asks for at most 2 reply tokens; the provider ignores that and reports
    # nothing, so its 300-character reply is estimated at 100 tokens
    summary_flow(project, f"{{max_total_tokens: {PROMPT_BOUND + 2}}}")
    reply = ModelResponse(text="y" * 300, usage=Usage(0, 0, reported=False), model="m")
    wb = project.open(providers={"default": ScriptedModel([reply])})
    run = wb.run("demo/f")
    found = violation(run)
    assert found["rule"] == "max_total_tokens"
    assert found["value"] == PROMPT_BOUND + 100
    assert "the provider reported" in str(found["message"])
    assert_nothing_after(run, "s")
    wb.close()


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as srv:
        yield srv


def openai_project(project: Project, server: FakeOpenAIServer) -> None:
    (project.root / "configs" / "models.yaml").write_text(
        textwrap.dedent(
            f"""
            models:
              default: {{provider: fake}}
              mystery: {{provider: openai, model: mystery-model, base_url: "{server.base_url}",
                         max_tokens: 64, timeout_s: 5}}
            prices: {{}}
            """
        ),
        encoding="utf-8",
    )


def test_an_unpriced_model_under_a_cost_budget_never_reaches_the_server(
    project: Project, server: FakeOpenAIServer
) -> None:
    """With max_cost_usd set, a model missing from the price table is refused before any
    request: the loopback server receives nothing."""
    openai_project(project, server)
    summary_flow(project, "{max_cost_usd: 1.0}", model="mystery")
    wb = project.open()
    run = wb.run("demo/f")
    assert server.requests == []
    found = violation(run)
    assert (found["rule"], found["limit"], found["value"]) == ("max_cost_usd", 1.0, None)
    assert "no price" in str(found["message"])
    assert_nothing_after(run, "s")
    wb.close()


def test_the_same_unpriced_model_without_a_cost_budget_is_called_and_flagged(
    project: Project, server: FakeOpenAIServer
) -> None:
    """Without a cost budget the call goes out; its cost is flagged unknown, and a reply
    without usage is counted by estimate."""
    openai_project(project, server)
    summary_flow(project, "{max_total_tokens: 100000}", model="mystery")
    server.script(Reply.no_usage("A summary."))
    wb = project.open()
    run = wb.run("demo/f")
    assert run.status == "completed", run.error
    assert len(server.completions) == 1
    call = run.trace().set_index("event").loc["model_called"]
    assert call["attrs"]["price_unknown"] is True
    assert call["attrs"]["usage_estimated"] is True
    assert call["tokens_in"] > 0 and call["tokens_out"] > 0
    wb.close()


def test_an_overridden_unpriced_model_is_not_free(
    project: Project, server: FakeOpenAIServer
) -> None:
    """A stand-in plugged in for an unpriced configured model costs what that model costs:
    unknown, so refused under a cost budget."""
    openai_project(project, server)
    summary_flow(project, "{max_cost_usd: 1.0}", model="mystery")
    model = ScriptedModel(["never sent"])
    wb = project.open(providers={"mystery": model})
    run = wb.run("demo/f")
    assert model.calls == []
    assert violation(run)["rule"] == "max_cost_usd"
    wb.close()


def test_a_model_asked_for_at_run_time_outside_the_allow_list_blocks_the_run(
    project: Project,
) -> None:
    """The agent asks for 'gpt' while the flow allows 'default' only: blocked, the violation
    names rule, limit, value and step, and run.budget() shows it."""
    project.flow(
        "f",
        """
        id: f
        policy: {allowed_models: [default]}
        steps:
          - {id: s, type: agent, agent: chooser, input: {text: hello, model: gpt}}
          - {id: after, type: tool, tool: echo, input: {text: never}}
        """,
    )
    model = ScriptedModel(["never sent"])
    wb = project.open(providers={"gpt": model})
    run = wb.run("demo/f")
    assert model.calls == []
    found = violation(run)
    assert (found["step"], found["rule"], found["limit"], found["value"]) == (
        "s",
        "allowed_models",
        ["default"],
        "gpt",
    )
    assert_nothing_after(run, "s")
    budget = run.budget().set_index("budget")
    assert budget.loc["allowed_models", "status"] == "blocked"
    assert budget.loc["allowed_models", "attempted"] == "gpt"
    wb.close()


@pytest.mark.parametrize("asked", ["functions.gpt", " gpt", "GPT", "g\u0440t", "openai/gpt"])
def test_a_disguised_model_name_at_run_time_is_a_violation(project: Project, asked: str) -> None:
    """Names an agent builds at run time are refused unless canonical and configured."""
    project.flow(
        "f",
        f"""
        id: f
        steps:
          - {{id: s, type: agent, agent: chooser, input: {{text: hello, model: "{asked}"}}}}
        """,
    )
    wb = project.open()
    run = wb.run("demo/f")
    found = violation(run)
    assert (found["rule"], found["value"]) == ("allowed_models", asked)
    wb.close()


def test_an_agent_that_swallows_a_violation_is_still_blocked(project: Project) -> None:
    """try/except around a refused call does not let the step complete or the flow go on."""
    project.flow(
        "f",
        """
        id: f
        policy: {allowed_models: [default]}
        steps:
          - {id: s, type: agent, agent: stubborn, input: {text: hello}}
          - {id: after, type: tool, tool: echo, input: {text: never}}
        """,
    )
    wb = project.open()
    run = wb.run("demo/f")
    assert violation(run)["value"] == "gpt"
    assert_nothing_after(run, "s")
    assert run.steps().iloc[-1]["output"] is None
    wb.close()


RESTART_FLOW = """
id: f
policy: {max_tool_calls: 2}
steps:
  - {id: one, type: tool, tool: echo, input: {text: "1"}}
  - {id: review, type: hitl, prompt: "go on?"}
  - {id: two, type: tool, tool: echo, input: {text: "2"}}
  - {id: three, type: tool, tool: echo, input: {text: "3"}}
"""


def test_budgets_continue_from_the_store_after_a_restart(project: Project) -> None:
    """A run paused after one tool call is resumed by another process (the CLI): its second
    call fits max_tool_calls 2, its third is refused as call 3."""
    project.flow("f", RESTART_FLOW)
    wb = project.open()
    run = wb.run("demo/f")
    assert run.status == "waiting_approval"
    run_id = run.id
    wb.close()

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path.cwd()), *sys.path])}
    done = subprocess.run(
        [sys.executable, "-m", "master_sdk.cli", "--root", str(project.root), "approve", run_id],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert "blocked" in done.stdout

    wb = project.open()
    run = wb.get_run(run_id)
    found = violation(run)
    assert (found["step"], found["rule"], found["limit"], found["value"]) == (
        "three",
        "max_tool_calls",
        2,
        3,
    )
    budget = run.budget().set_index("budget")
    assert budget.loc["tool_calls", "used"] == 2
    assert budget.loc["steps", "used"] == 4  # the blocked step had started
    assert list(run.steps()["step_id"]) == ["one", "review", "two", "three"]
    wb.close()


@pytest.mark.parametrize("attempts", [1, 3])
def test_model_retries_happen_only_as_policy_allows_and_each_try_is_traced(
    project: Project, attempts: int
) -> None:
    """A retryable failure is tried max_attempts times in all, each try traced, and every
    try counts against max_model_calls."""
    summary_flow(
        project,
        f"{{model_retries: {{max_attempts: {attempts}, backoff_s: 0, max_backoff_s: 0}}}}",
    )
    failure = ms.ModelCallError("upstream 503", kind="server", retryable=True, status=503)
    model = ScriptedModel([failure] * attempts + ["never asked"])
    wb = project.open(providers={"default": model})
    run = wb.run("demo/f")
    events = run.trace()
    retries = events[events["event"] == "model_retry"]
    assert len(retries) == attempts - 1
    assert [a["attempt"] for a in retries["attrs"]] == list(range(1, attempts))
    calls = events[events["event"] == "model_called"]
    assert list(calls["status"].astype(str)) == ["error"]
    assert run.status == "failed"
    assert len(model.calls) == attempts
    assert run.budget().set_index("budget").loc["model_calls", "used"] == attempts
    wb.close()


def test_a_retry_that_would_pass_max_model_calls_is_refused(project: Project) -> None:
    """Retries are model calls: with max_model_calls 2 the third try is a violation."""
    summary_flow(project, "{max_model_calls: 2, model_retries: {max_attempts: 3, backoff_s: 0}}")
    failure = ms.ModelCallError("rate limited", kind="rate_limit", retryable=True, status=429)
    model = ScriptedModel([failure, failure, "never asked"])
    wb = project.open(providers={"default": model})
    run = wb.run("demo/f")
    assert len(model.calls) == 2
    found = violation(run)
    assert (found["rule"], found["limit"], found["value"]) == ("max_model_calls", 2, 3)
    assert_nothing_after(run, "s")
    wb.close()


def test_tool_and_model_outputs_that_look_like_templates_stay_data(project: Project) -> None:
    """A model reply and a tool output holding '{{ 7*7 }}' pass through later templates
    literally."""
    project.flow(
        "f",
        """
        id: f
        steps:
          - {id: s, type: agent, agent: summarizer, input: {text: hello}}
          - id: e
            type: tool
            tool: echo
            input: {text: "model said {{ steps.s.output.summary }}"}
          - {id: t, type: tool, tool: echo, input: {text: "tool said {{ steps.e.output.text }}"}}
        """,
    )
    reply = "{{ 7*7 }} {% for i in range(10**9) %}{% endfor %} {{ ''.__class__ }}"
    wb = project.open(providers={"default": ScriptedModel([reply])})
    run = wb.run("demo/f")
    assert run.output == {"text": f"tool said model said {reply}"}
    wb.close()
