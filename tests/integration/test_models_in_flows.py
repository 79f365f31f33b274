"""Real models in flows: a product whose agents use ``provider: openai`` pointed at a
loopback OpenAI-compatible server, run through the public Workbench API.

The official SDK sends real HTTP requests to ``FakeOpenAIServer``; what the tests read
back is what a user reads: ``run.status``, ``run.error``, ``run.trace()``, ``run.budget()``.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import master_sdk as ms
from master_sdk.pytest_plugin import block_network_models  # noqa: F401  # fixture, used below
from tests.support.openai_server import FakeOpenAIServer, Reply

API_KEY = "sk-flows-0123456789abcdefSECRET"
SECRET_IN_REPLY = "hunter2-very-secret-value"

COMPONENTS = """
from __future__ import annotations

from typing import Literal

from pydantic import Field

from master_sdk.authoring import AgentContext, AgentOutput, agent


class Summary(AgentOutput):
    summary: str


@agent(model="gpt")
def summarize(ctx: AgentContext, text: str) -> Summary:
    return Summary(summary=ctx.complete(f"Summarise: {text}", system="Be brief.").text)


class Triage(AgentOutput):
    category: Literal["billing", "bug", "other"]
    urgency: int = Field(ge=1, le=5)


@agent(model="gpt")
def triage(ctx: AgentContext, text: str) -> Triage:
    return ctx.complete(f"Triage: {text}", output=Triage).output
"""

MODELS = """
models:
  gpt: {{provider: openai, model: gpt-4o-mini, base_url: "{url}", api_key_ref: openai.api_key,
        max_tokens: 256, timeout_s: 5}}
  gpt_slow: {{provider: openai, model: gpt-4o-mini, base_url: "{url}", timeout_s: 0.3}}
  gpt_uncapped: {{provider: openai, model: gpt-4o-mini, base_url: "{url}"}}
  mystery: {{provider: openai, model: mystery-model, base_url: "{url}", max_tokens: 64}}
prices:
  gpt-4o-mini: {{input: 0.15, cached_input: 0.075, output: 0.60}}
"""

POLICY = """
policy:
  max_total_tokens: 100000
  model_retries: {max_attempts: 3, backoff_s: 0.01, max_backoff_s: 0.05}
"""

FLOWS = {
    "summary": """
        id: summary
        steps:
          - {id: summarize, type: agent, agent: summarize, input: {text: "{{ inputs.text }}"}}
        output: "{{ steps.summarize.output }}"
    """,
    "two_summaries": """
        id: two_summaries
        steps:
          - {id: first, type: agent, agent: summarize, input: {text: "{{ inputs.text }}"}}
          - {id: second, type: agent, agent: summarize, input: {text: "again"}}
    """,
    "triage": """
        id: triage
        steps:
          - {id: triage, type: agent, agent: triage, input: {text: "{{ inputs.text }}"}}
        output: "{{ steps.triage.output }}"
    """,
    "slow": """
        id: slow
        policy:
          model_retries: {max_attempts: 2, backoff_s: 0, max_backoff_s: 0.05}
        steps:
          - {id: summarize, type: agent, agent: summarize, model: gpt_slow,
             input: {text: "{{ inputs.text }}"}}
    """,
    "unpriced_budgeted": """
        id: unpriced_budgeted
        policy: {max_cost_usd: 1.0}
        steps:
          - {id: summarize, type: agent, agent: summarize, model: mystery,
             input: {text: "{{ inputs.text }}"}}
    """,
    "unpriced": """
        id: unpriced
        steps:
          - {id: summarize, type: agent, agent: summarize, model: mystery,
             input: {text: "{{ inputs.text }}"}}
    """,
    "uncapped": """
        id: uncapped
        steps:
          - {id: summarize, type: agent, agent: summarize, model: gpt_uncapped,
             input: {text: "{{ inputs.text }}"}}
    """,
    "tight": """
        id: tight
        policy: {max_total_tokens: 600}
        steps:
          - {id: summarize, type: agent, agent: summarize, model: gpt_uncapped,
             input: {text: "{{ inputs.text }}"}}
    """,
}


def write_project(root: Path, server: FakeOpenAIServer) -> None:
    product = root / "products" / "desk"
    (product / "flows").mkdir(parents=True)
    (product / "manifest.yaml").write_text("name: desk\nversion: '1.0'\n", encoding="utf-8")
    (product / "components.py").write_text(COMPONENTS, encoding="utf-8")
    for name, text in FLOWS.items():
        (product / "flows" / f"{name}.yaml").write_text(textwrap.dedent(text), encoding="utf-8")
    (root / "configs").mkdir()
    (root / "configs" / "models.yaml").write_text(
        MODELS.format(url=server.base_url), encoding="utf-8"
    )
    (root / "configs" / "policy.yaml").write_text(POLICY, encoding="utf-8")
    (root / "secrets").mkdir()
    (root / "secrets" / "secrets.yaml").write_text(
        f"openai: {{api_key: {API_KEY}}}\nother: {{token: {SECRET_IN_REPLY}}}\n", encoding="utf-8"
    )


@pytest.fixture(scope="module")
def shared_server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as srv:
        yield srv


@pytest.fixture
def server(shared_server: FakeOpenAIServer) -> Iterator[FakeOpenAIServer]:
    """The module's server, emptied; a scripted reply left unconsumed fails the test."""
    shared_server.reset()
    yield shared_server
    assert shared_server.pending == 0, f"{shared_server.pending} scripted replies never requested"


@pytest.fixture(scope="module")
def shared_wb(
    shared_server: FakeOpenAIServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ms.Workbench]:
    # One workbench (one SDK client per model) for the module: runs are independent.
    root = tmp_path_factory.mktemp("desk")
    write_project(root, shared_server)
    bench = ms.Workbench.open(root)
    yield bench
    bench.close()


@pytest.fixture
def wb(
    shared_wb: ms.Workbench,
    server: FakeOpenAIServer,
    block_network_models: Any,  # noqa: F811  # the fixture imported above
) -> ms.Workbench:
    """The module's workbench, with its server emptied and non-loopback calls blocked."""
    return shared_wb


def model_events(run: ms.Run) -> pd.DataFrame:
    trace = run.trace()
    events = trace[trace["event"].isin(["model_called", "model_retry"])]
    return events.reset_index(drop=True)


def budget_used(run: ms.Run, name: str) -> float:
    frame = run.budget().set_index("budget")
    return float(frame.loc[name, "used"])


# --- success, usage and cost ------------------------------------------------------------


def test_text_reply_completes_the_step_with_usage_and_cost_in_trace_and_budget(
    wb: ms.Workbench, server: FakeOpenAIServer
) -> None:
    """A plain reply completes the flow; the model_called event and the budget carry the
    server's token counts and their price."""
    server.script(Reply.text("Short.", prompt_tokens=1000, completion_tokens=200))

    run = wb.run("desk/summary", inputs={"text": "a long memo"})

    assert run.status == "completed", run.error
    assert run.output == {"summary": "Short."}
    [event] = model_events(run).to_dict("records")
    assert event["event"] == "model_called"
    assert event["status"] == "ok"
    assert (event["tokens_in"], event["tokens_out"]) == (1000, 200)
    expected = (1000 * 0.15 + 200 * 0.60) / 1e6
    assert event["cost_usd"] == pytest.approx(expected)
    assert event["attrs"]["provider"] == "openai"
    assert event["attrs"]["model"] == "gpt-4o-mini"
    assert budget_used(run, "total_tokens") == 1200
    assert budget_used(run, "cost_usd") == pytest.approx(expected)
    assert budget_used(run, "model_calls") == 1
    [sent] = server.completions
    assert sent.headers["authorization"] == f"Bearer {API_KEY}"
    assert sent.body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Summarise: a long memo"},
    ]
    assert sent.body["max_tokens"] == 256


def test_cached_prompt_tokens_are_priced_at_the_cached_rate_per_call_and_per_run(
    wb: ms.Workbench, server: FakeOpenAIServer
) -> None:
    """Cached prompt tokens cost the cached_input price; each call's cost is in its trace
    event and the run's budget holds their sum."""
    server.script(
        Reply.text("One.", prompt_tokens=1000, completion_tokens=200, cached_tokens=400),
        Reply.text("Two.", prompt_tokens=2000, completion_tokens=100, cached_tokens=0),
    )

    run = wb.run("desk/two_summaries", inputs={"text": "memo"})

    assert run.status == "completed", run.error
    first, second = model_events(run).to_dict("records")
    first_cost = (600 * 0.15 + 400 * 0.075 + 200 * 0.60) / 1e6
    second_cost = (2000 * 0.15 + 100 * 0.60) / 1e6
    assert first["cost_usd"] == pytest.approx(first_cost)
    assert first["attrs"]["cached_tokens"] == 400
    assert second["cost_usd"] == pytest.approx(second_cost)
    assert "cached_tokens" not in second["attrs"]
    assert budget_used(run, "cost_usd") == pytest.approx(first_cost + second_cost)
    assert budget_used(run, "total_tokens") == 1000 + 200 + 2000 + 100
    assert wb.runs(flow="two_summaries").set_index("run_id").loc[run.id, "cost_usd"] == (
        pytest.approx(first_cost + second_cost)
    )


def test_structured_output_sends_the_strict_schema_and_stores_the_validated_output(
    wb: ms.Workbench, server: FakeOpenAIServer
) -> None:
    """An agent asking for a pydantic output gets it from the JSON reply; the request
    carried the strict JSON Schema as response_format."""
    server.script(Reply.json({"category": "billing", "urgency": 4}))

    run = wb.run("desk/triage", inputs={"text": "I was charged twice"})

    assert run.status == "completed", run.error
    assert run.output == {"category": "billing", "urgency": 4}
    [sent] = server.completions
    response_format = sent.body["response_format"]
    assert response_format["type"] == "json_schema"
    assert response_format["json_schema"]["name"] == "Triage"
    assert response_format["json_schema"]["strict"] is True
    assert response_format["json_schema"]["schema"]["required"] == ["category", "urgency"]


# --- retries ----------------------------------------------------------------------------


def test_rate_limit_then_success_traces_two_attempts_and_counts_tokens_once(
    wb: ms.Workbench, server: FakeOpenAIServer
) -> None:
    """A 429 then a reply: one model_retry event (kind, status, the Retry-After wait) and
    one ok model_called event with attempts=2; tokens and cost are counted once, and both
    attempts count as model calls."""
    server.script(
        Reply.error(429, "Rate limit reached", headers={"Retry-After": "0.03"}),
        Reply.text("Fine.", prompt_tokens=50, completion_tokens=5),
    )

    run = wb.run("desk/summary", inputs={"text": "memo"})

    assert run.status == "completed", run.error
    retry, called = model_events(run).to_dict("records")
    assert retry["event"] == "model_retry"
    assert retry["status"] == "error"
    assert retry["attrs"]["kind"] == "rate_limit"
    assert retry["attrs"]["status"] == 429
    assert retry["attrs"]["attempt"] == 1
    assert retry["attrs"]["retry_after_s"] == pytest.approx(0.03)
    assert retry["attrs"]["wait_s"] == pytest.approx(0.03)  # above backoff_s 0.01
    assert pd.isna(retry["tokens_in"])
    assert called["status"] == "ok"
    assert called["attrs"]["attempts"] == 2
    assert (called["tokens_in"], called["tokens_out"]) == (50, 5)
    assert budget_used(run, "total_tokens") == 55
    assert budget_used(run, "model_calls") == 2
    assert len(server.completions) == 2


def test_retry_after_longer_than_policy_allows_fails_without_retrying(
    wb: ms.Workbench, server: FakeOpenAIServer
) -> None:
    """A server asking to wait longer than model_retries.max_backoff_s is not retried
    early; the step fails saying why."""
    server.script(Reply.error(429, "Slow down", headers={"Retry-After": "30"}))

    run = wb.run("desk/summary", inputs={"text": "memo"})

    assert run.status == "failed"
    assert "asked to wait 30s" in (run.error or "")
    assert "max_backoff_s" in (run.error or "")
    [called] = model_events(run).to_dict("records")
    assert called["event"] == "model_called"
    assert called["status"] == "error"
    assert called["attrs"]["kind"] == "rate_limit"
    assert len(server.completions) == 1


def test_server_errors_exhaust_the_retries_and_fail_the_step_with_every_attempt_traced(
    wb: ms.Workbench, server: FakeOpenAIServer
) -> None:
    """Three 500s (max_attempts 3): two model_retry events and a final model_called error;
    the step and run fail with a message naming the model, the status and the attempts."""
    server.script(*(Reply.error(500, "The server had an error") for _ in range(3)))

    run = wb.run("desk/summary", inputs={"text": "memo"})

    assert run.status == "failed"
    error = run.error or ""
    assert error.startswith("step 'summarize': ")
    assert "gpt-4o-mini" in error
    assert "HTTP 500" in error
    assert "gave up after 3 attempts" in error
    events = model_events(run).to_dict("records")
    assert [e["event"] for e in events] == ["model_retry", "model_retry", "model_called"]
    assert [e["attrs"]["attempt"] for e in events] == [1, 2, 3]
    assert all(e["status"] == "error" and e["attrs"]["status"] == 500 for e in events)
    assert "The server had an error" in events[-1]["attrs"]["raw"]
    steps = run.steps().set_index("step_id")
    assert steps.loc["summarize", "status"] == "failed"
    assert budget_used(run, "model_calls") == 3
    assert budget_used(run, "total_tokens") == 0
    assert len(server.completions) == 3


def test_timeouts_are_retried_as_policy_allows_then_fail_the_step(
    wb: ms.Workbench, server: FakeOpenAIServer
) -> None:
    """A server slower than timeout_s: each attempt times out; the flow's policy allows two
    attempts, both traced, and the step fails naming the timeout."""
    server.script(Reply.slow(5), Reply.slow(5))

    run = wb.run("desk/slow", inputs={"text": "memo"})

    assert run.status == "failed"
    assert "no reply within 0.3s" in (run.error or "")
    assert "gave up after 2 attempts" in (run.error or "")
    events = model_events(run).to_dict("records")
    assert [(e["event"], e["attrs"]["kind"]) for e in events] == [
        ("model_retry", "timeout"),
        ("model_called", "timeout"),
    ]
    assert len(server.completions) == 2


def test_authentication_error_is_not_retried_and_the_key_is_never_stored(
    wb: ms.Workbench, server: FakeOpenAIServer
) -> None:
    """A 401 ends the step at once (one request, no model_retry), with a message that
    says to check the key; the key the server echoed is redacted everywhere stored."""
    server.script(Reply.error(401, f"Incorrect API key provided: {API_KEY}"))

    run = wb.run("desk/summary", inputs={"text": "memo"})

    assert run.status == "failed"
    assert "not authorised (HTTP 401)" in (run.error or "")
    assert "api_key_ref" in (run.error or "")
    assert API_KEY not in (run.error or "")
    [called] = model_events(run).to_dict("records")
    assert called["event"] == "model_called"
    assert called["attrs"]["kind"] == "auth"
    assert API_KEY not in repr(run.trace().to_dict("records"))
    assert len(server.completions) == 1


def test_bad_request_is_not_retried(wb: ms.Workbench, server: FakeOpenAIServer) -> None:
    """A 400 is the request's fault: one attempt, the step fails with the server's reason."""
    server.script(Reply.error(400, "max_tokens is too large", code="invalid_value"))

    run = wb.run("desk/summary", inputs={"text": "memo"})

    assert run.status == "failed"
    assert "max_tokens is too large" in (run.error or "")
    assert [e["event"] for e in model_events(run).to_dict("records")] == ["model_called"]


# --- replies that cannot be used --------------------------------------------------------


def test_invalid_structured_output_fails_the_step_and_keeps_the_raw_reply_redacted(
    wb: ms.Workbench, server: FakeOpenAIServer
) -> None:
    """A reply that fails the output model's validation is not retried: the step fails
    naming the field; the model_called event (status error) keeps the raw reply, with
    secrets redacted, and the tokens it cost are counted."""
    server.script(
        Reply.json(
            {"category": "refund", "urgency": 9, "note": SECRET_IN_REPLY},
            prompt_tokens=80,
            completion_tokens=20,
        )
    )

    run = wb.run("desk/triage", inputs={"text": "I was charged twice"})

    assert run.status == "failed"
    error = run.error or ""
    assert "does not match Triage" in error
    assert "category" in error and "urgency" in error
    assert SECRET_IN_REPLY not in error
    [called] = model_events(run).to_dict("records")
    assert called["status"] == "error"
    assert called["attrs"]["kind"] == "invalid_response"
    raw = called["attrs"]["raw"]
    assert '"category": "refund"' in raw
    assert SECRET_IN_REPLY not in raw
    assert "<SECRET>" in raw
    assert (called["tokens_in"], called["tokens_out"]) == (80, 20)
    assert budget_used(run, "total_tokens") == 100
    assert len(server.completions) == 1


def test_malformed_json_reply_fails_the_step_with_the_raw_body_in_the_trace(
    wb: ms.Workbench, server: FakeOpenAIServer
) -> None:
    """A 200 whose body is not JSON is an invalid response: not retried, raw body kept."""
    server.script(Reply.raw(b'{"choices": [ this is not json'))

    run = wb.run("desk/summary", inputs={"text": "memo"})

    assert run.status == "failed"
    assert "not valid JSON" in (run.error or "")
    [called] = model_events(run).to_dict("records")
    assert called["attrs"]["kind"] == "invalid_response"
    assert "this is not json" in called["attrs"]["raw"]
    assert len(server.completions) == 1


def test_reply_cut_at_max_tokens_says_so_when_it_breaks_structured_output(
    wb: ms.Workbench, server: FakeOpenAIServer
) -> None:
    """Structured output truncated by the cap (finish_reason length) fails with a hint to
    raise max_tokens, and the finish reason is in the trace."""
    server.script(Reply.text('{"category": "bi', finish_reason="length"))

    run = wb.run("desk/triage", inputs={"text": "charged twice"})

    assert run.status == "failed"
    assert "raise max_tokens" in (run.error or "")
    [called] = model_events(run).to_dict("records")
    assert called["attrs"]["finish_reason"] == "length"


# --- prices and budgets -----------------------------------------------------------------


def test_model_without_price_is_blocked_under_a_cost_budget_before_any_request(
    wb: ms.Workbench, server: FakeOpenAIServer
) -> None:
    """With max_cost_usd set, a model missing from the price table is refused: the run is
    blocked by max_cost_usd and the server sees no request at all."""
    run = wb.run("desk/unpriced_budgeted", inputs={"text": "memo"})

    assert run.status == "blocked"
    assert "has no price" in (run.error or "")
    trace = run.trace()
    violation = trace[trace["event"] == "policy_violation"].iloc[0]
    assert violation["attrs"]["rule"] == "max_cost_usd"
    assert model_events(run).empty
    assert server.requests == []


def test_model_without_price_runs_without_a_cost_budget_and_its_cost_is_unknown(
    wb: ms.Workbench, server: FakeOpenAIServer
) -> None:
    """Without a cost budget an unpriced model is called; its cost in the trace is empty
    (not zero) and flagged price_unknown, and the run's cost stays 0."""
    server.script(Reply.text("ok", prompt_tokens=10, completion_tokens=2))

    run = wb.run("desk/unpriced", inputs={"text": "memo"})

    assert run.status == "completed", run.error
    [called] = model_events(run).to_dict("records")
    assert pd.isna(called["cost_usd"])
    assert called["attrs"]["price_unknown"] is True
    assert budget_used(run, "cost_usd") == 0.0
    assert budget_used(run, "total_tokens") == 12


def test_roomy_budget_sends_no_invented_cap_for_a_model_without_max_tokens(
    wb: ms.Workbench, server: FakeOpenAIServer
) -> None:
    """With no max_tokens configured and plenty of budget left, the request carries no
    max_tokens (a huge budget-derived one would be refused by real servers)."""
    run = wb.run("desk/uncapped", inputs={"text": "memo"})

    assert run.status == "completed", run.error
    [sent] = server.completions
    assert "max_tokens" not in sent.body


def test_tight_token_budget_caps_the_reply_to_what_is_left(
    wb: ms.Workbench, server: FakeOpenAIServer
) -> None:
    """When little of max_total_tokens is left, the request's max_tokens is what remains
    after a worst-case prompt estimate, so the reply cannot overrun the budget."""
    run = wb.run("desk/tight", inputs={"text": "memo"})

    assert run.status == "completed", run.error
    [sent] = server.completions
    assert 0 < sent.body["max_tokens"] < 600
