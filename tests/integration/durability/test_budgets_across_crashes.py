"""Budgets hold across crashes: a model request that may have been sent is counted.

A provider that ends its process as soon as a request reaches it (``os._exit``, like
``kill -9``) stands for the worst moment to die: the request left, its answer was never
seen, nothing after it was committed. Each process is a real subprocess; the ledger file
counts the requests that really reached the provider.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

import master_sdk as ms
from master_sdk.errors import ModelCallError
from master_sdk.models.tokens import estimate_prompt_tokens
from master_sdk.models.types import Message, ModelRequest
from master_sdk.orchestrator.crashpoints import CRASH_EXIT_CODE
from master_sdk.testing import FunctionModel, ScriptedModel
from tests.conftest import Project
from tests.support.durability import lines, make_ledger_project, run_driver

AGENT_FLOW = """
id: ask
inputs: {type: object, properties: {text: {type: string}}, required: [text]}
steps:
  - {id: summary, type: agent, agent: summarizer, input: {text: "{{ inputs.text }}"}}
"""

MODELS = """
models:
  default: {provider: fake, max_tokens: 100}
prices:
  default: {input: 1.0, output: 2.0}
"""


def project(tmp_path: Path, policy: str) -> Path:
    """The ledger project with a one-agent flow, a priced fake model and ``policy``."""
    root = make_ledger_project(tmp_path / "project", policy=policy)
    flows = root / "products" / "ledger" / "flows"
    (flows / "ask.yaml").write_text(textwrap.dedent(AGENT_FLOW), encoding="utf-8")
    (root / "configs" / "models.yaml").write_text(textwrap.dedent(MODELS), encoding="utf-8")
    return root


def crash_then_retry(root: Path, store: Path, ledger: Path, retries: int) -> str:
    """Start ``ledger/ask`` in a process that dies as its request reaches the model, then
    retry it ``retries`` times, each in a new process with the same dying model."""
    code, _, err = run_driver("model-crash", root, store, ledger, "ledger/ask", "-")
    assert code == CRASH_EXIT_CODE, err
    with ms.Workbench.open(root, store=store) as wb:
        (run_id,) = list(wb.runs()["run_id"])
    for _ in range(retries):
        code, _, err = run_driver("model-crash", root, store, ledger, "ledger/ask", run_id)
        assert code in (0, CRASH_EXIT_CODE), err
    return str(run_id)


@pytest.mark.slow  # real processes
def test_max_model_calls_holds_when_every_request_kills_its_process(tmp_path: Path) -> None:
    """``max_model_calls: 1``; the first request kills its process; three retries in new
    processes send nothing more (the run is blocked by max_model_calls); the budget shows
    the call and its worst-case tokens and cost, and the trace marks them estimated."""
    root = project(tmp_path, "policy:\n  max_model_calls: 1\n")
    store, ledger = tmp_path / "s.sqlite3", tmp_path / "ledger"
    run_id = crash_then_retry(root, store, ledger, retries=3)
    assert lines(ledger) == ["model"]  # one request in all

    with ms.Workbench.open(root, store=store) as wb:
        run = wb.get_run(run_id)
        assert run.status == "blocked"
        assert "max_model_calls" in (run.error or "")
        budget = run.budget().set_index("budget")
        assert budget.loc["model_calls", "used"] == 1
        tokens = budget.loc["total_tokens", "used"]
        assert tokens > 100  # the prompt's estimate plus the reply cap of 100
        trace = run.trace()
        unconfirmed = trace[trace["event"] == "model_call_unconfirmed"]
        assert len(unconfirmed) == 1
        row = unconfirmed.iloc[0]
        assert row["attrs"]["usage_estimated"] is True
        assert row["tokens_out"] == 100
        assert row["tokens_in"] + row["tokens_out"] == tokens
        # priced at 1 USD per million prompt tokens and 2 per million reply tokens
        expected = (row["tokens_in"] * 1.0 + 100 * 2.0) / 1e6
        assert budget.loc["cost_usd", "used"] == pytest.approx(expected)


@pytest.mark.slow  # real processes
def test_max_cost_usd_holds_across_crashes_and_retries(tmp_path: Path) -> None:
    """A cost budget with room for one worst-case request: after the request that killed
    its process is charged, a retry is refused before anything is sent."""
    # one request's worst case: ~20 prompt tokens at $1/M + 100 reply tokens at $2/M
    root = project(tmp_path, "policy:\n  max_cost_usd: 0.0003\n")
    store, ledger = tmp_path / "s.sqlite3", tmp_path / "ledger"
    run_id = crash_then_retry(root, store, ledger, retries=3)
    assert lines(ledger) == ["model"]
    with ms.Workbench.open(root, store=store) as wb:
        run = wb.get_run(run_id)
        assert run.status == "blocked"
        assert "max_cost_usd" in (run.error or "")
        used = run.budget().set_index("budget").loc["cost_usd", "used"]
        assert 0.0002 < used <= 0.0003


# ------------------------------------------------------------------ in one process

TWICE = """

@agent(model="default")
def twice(ctx: AgentContext, text: str) -> Summary:
    first = ctx.complete(f"First: {text}").text
    return Summary(summary=ctx.complete(f"Second: {first}").text)
"""


@pytest.fixture
def twice(project: Project) -> Project:
    """The demo product with an agent making two model calls in one step."""
    components = project.root / "products" / "demo" / "components.py"
    components.write_text(components.read_text(encoding="utf-8") + TWICE, "utf-8")
    project.flow(
        "twice",
        """
        id: twice
        inputs: {type: object, properties: {text: {type: string}}, required: [text]}
        steps:
          - {id: s, type: agent, agent: twice, input: {text: "{{ inputs.text }}"}}
        """,
    )
    return project


def test_every_model_request_is_durable_in_the_store_before_it_is_sent(twice: Project) -> None:
    """While the provider handles each request, another workbench reading the store sees
    that call counted and marked in flight: the first with the step's start, the second
    with a reservation of its own."""
    seen: list[tuple[int, str, str | None]] = []
    with twice.open() as reader:

        def answer(request: ModelRequest) -> str:
            (run_id, _owner) = reader.store.find_runs(status="running")[0]
            run, _ = reader.store.load(run_id)
            reserved = run.state.get("reserved") or {}
            seen.append((run.model_calls, run.status, reserved.get("step")))
            return "ok"

        with twice.open(providers={"default": FunctionModel(answer)}) as wb:
            run = wb.run("demo/twice", {"text": "hi"})
            assert run.status == "completed"
            assert run.budget().set_index("budget").loc["model_calls", "used"] == 2
    assert seen == [(1, "running", "s"), (2, "running", "s")]


@pytest.mark.parametrize(
    ("error", "charged"),
    [
        (ModelCallError("read timed out", kind="timeout", retryable=True), True),
        (ModelCallError("rate limited", kind="rate_limit", retryable=True, status=429), False),
    ],
    ids=["timeout", "rate_limit"],
)
def test_a_request_whose_answer_was_never_seen_counts_at_its_worst_case(
    twice: Project, error: ModelCallError, charged: bool
) -> None:
    """A timed-out attempt may have been billed: its prompt estimate and reply cap count,
    flagged ``usage_estimated`` on its ``model_retry`` event; an attempt the provider
    answered with an error (a 429) costs no tokens."""
    (twice.root / "configs" / "models.yaml").write_text(
        "models:\n  default: {provider: fake, max_tokens: 64}\n", encoding="utf-8"
    )
    model = ScriptedModel([error, "one", "two"])
    with twice.open(providers={"default": model}) as wb:
        run = wb.run("demo/twice", {"text": "hi"})
        assert run.status == "completed", run.error
        trace = run.trace()
        retry = trace[trace["event"] == "model_retry"].iloc[0]
        assert bool((retry["attrs"] or {}).get("usage_estimated")) is charged
        called = trace[trace["event"] == "model_called"]
        reported = int(called["tokens_in"].sum() + called["tokens_out"].sum())
        used = run.budget().set_index("budget").loc["total_tokens", "used"]
        first = estimate_prompt_tokens((Message("user", "First: hi"),)) + 64
        assert used == reported + (first if charged else 0)
