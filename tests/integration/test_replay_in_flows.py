"""Cassettes in flows: record a product's model calls against the loopback OpenAI server,
then replay the same flow offline, through the public Workbench API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import master_sdk as ms
from master_sdk.errors import ConfigError
from master_sdk.testing import ScriptedModel, no_network_models
from tests.support.openai_server import FakeOpenAIServer, Reply

SECRET = "tok-0123456789-very-secret"

COMPONENTS = """
from __future__ import annotations

from typing import Literal

from master_sdk.authoring import AgentContext, AgentOutput, agent


class Summary(AgentOutput):
    summary: str


@agent(model="default")
def summarize(ctx: AgentContext, text: str) -> Summary:
    return Summary(summary=ctx.complete(f"Summarise: {text}").text)


class Label(AgentOutput):
    label: Literal["good", "bad"]


@agent(model="default")
def classify(ctx: AgentContext, text: str) -> Label:
    return ctx.complete(f"Classify: {text}", output=Label).output
"""

FLOW = """
id: review
steps:
  - {id: summarize, type: agent, agent: summarize, input: {text: "{{ inputs.text }}"}}
  - {id: classify, type: agent, agent: classify, input: {text: "{{ inputs.text }}"}}
output:
  summary: "{{ steps.summarize.output.summary }}"
  label: "{{ steps.classify.output.label }}"
"""

LIVE = """
  live: {{provider: openai, model: gpt-4o-mini, base_url: "{url}", max_tokens: 256}}
"""
PRICES = """
prices:
  gpt-4o-mini: {input: 0.15, cached_input: 0.075, output: 0.60}
"""


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


class Project:
    """A project folder whose ``default`` model is a replay of ``live``."""

    def __init__(self, root: Path, server: FakeOpenAIServer) -> None:
        self.root = root
        self.server = server
        product = root / "products" / "desk"
        (product / "flows").mkdir(parents=True)
        (product / "manifest.yaml").write_text("name: desk\nversion: '1.0'\n", encoding="utf-8")
        (product / "components.py").write_text(COMPONENTS, encoding="utf-8")
        (product / "flows" / "review.yaml").write_text(FLOW, encoding="utf-8")
        (root / "configs").mkdir()
        (root / "secrets").mkdir()
        (root / "secrets" / "secrets.yaml").write_text(f"svc: {{token: {SECRET}}}\n")
        self.cassette = root / "cassettes" / "desk.jsonl"

    def configure(self, models: str) -> None:
        text = "models:\n" + LIVE.format(url=self.server.base_url) + models
        (self.root / "configs" / "models.yaml").write_text(text + PRICES, encoding="utf-8")

    def open(self, mode: str, **kwargs: Any) -> ms.Workbench:
        self.configure(
            f"  default: {{provider: replay, mode: {mode}, wraps: live, "
            "cassette: cassettes/desk.jsonl}\n"
        )
        return ms.Workbench.open(self.root, **kwargs)

    def entries(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.cassette.read_text("utf-8").splitlines()]


@pytest.fixture
def project(tmp_path: Path, server: FakeOpenAIServer) -> Project:
    return Project(tmp_path / "proj", server)


def model_called(run: ms.Run) -> list[dict[str, Any]]:
    trace = run.trace()
    return list(trace[trace["event"] == "model_called"].to_dict("records"))


def test_a_recorded_flow_replays_offline_with_the_same_outputs_tokens_and_cost(
    project: Project, server: FakeOpenAIServer
) -> None:
    """Recorded once against the server, the flow replays with no request at all (network
    model calls blocked, loopback included) and the same output, usage and cost."""
    server.script(
        Reply.text("A fine memo.", prompt_tokens=30, completion_tokens=4, cached_tokens=10),
        Reply.json({"label": "good"}, prompt_tokens=90, completion_tokens=6),
    )
    with project.open("record") as wb:
        recorded = wb.run("desk/review", inputs={"text": "the memo"})
        assert recorded.status == "completed", recorded.error
        recorded_calls = model_called(recorded)
    assert len(server.completions) == 2
    assert len(project.entries()) == 2
    server.reset()

    with project.open("replay") as wb, no_network_models(allow_loopback=False) as guard:
        replayed = wb.run("desk/review", inputs={"text": "the memo"})
        replayed_calls = model_called(replayed)
        budget = replayed.budget().set_index("budget")

    assert replayed.status == "completed", replayed.error
    assert replayed.output == recorded.output == {"summary": "A fine memo.", "label": "good"}
    assert server.requests == []
    assert guard.blocked == []
    for before, after in zip(recorded_calls, replayed_calls, strict=True):
        assert (after["tokens_in"], after["tokens_out"]) == (
            before["tokens_in"],
            before["tokens_out"],
        )
        assert after["cost_usd"] == pytest.approx(before["cost_usd"])
        assert after["attrs"]["model"] == "gpt-4o-mini"
        assert after["attrs"]["provider"] == "replay"
    assert replayed_calls[0]["attrs"]["cached_tokens"] == 10
    assert replayed_calls[0]["cost_usd"] == pytest.approx((20 * 0.15 + 10 * 0.075 + 4 * 0.6) / 1e6)
    assert budget.loc["total_tokens", "used"] == 30 + 4 + 90 + 6


def test_the_cassette_holds_what_was_sent_with_the_wrapped_models_settings(
    project: Project, server: FakeOpenAIServer
) -> None:
    """Each entry's request is what went over the wire: the wrapped model's provider name
    and max_tokens, and for structured output the strict schema and its name."""
    with project.open("record") as wb:
        assert wb.run("desk/review", inputs={"text": "memo"}).status == "completed"

    summary, label = project.entries()
    assert summary["request"]["model"] == "gpt-4o-mini"
    assert summary["request"]["max_tokens"] == 256
    assert summary["request"]["messages"] == [{"content": "Summarise: memo", "role": "user"}]
    assert label["request"]["output_name"] == "Label"
    assert label["request"]["output_schema"]["properties"]["label"]["enum"] == ["good", "bad"]
    sent = server.completions[1].body
    assert sent["response_format"]["json_schema"]["schema"] == label["request"]["output_schema"]


def test_a_request_missing_from_the_cassette_fails_the_step_naming_it(
    project: Project, server: FakeOpenAIServer
) -> None:
    """Replaying with other inputs fails the first agent step with replay_miss: the message
    names the step and the cassette and shows the closest recorded request; nothing is
    sent and nothing retried."""
    with project.open("record") as wb:
        assert wb.run("desk/review", inputs={"text": "the memo"}).status == "completed"
    server.reset()

    with project.open("replay") as wb:
        run = wb.run("desk/review", inputs={"text": "another memo"})
        [called] = model_called(run)
        retried = (run.trace()["event"] == "model_retry").any()

    assert run.status == "failed"
    error = run.error or ""
    assert "model 'default' in step 'summarize'" in error
    assert "cassette 'cassettes/desk.jsonl' (2 recorded)" in error
    assert '-messages[0].content: "Summarise: the memo"' in error
    assert '+messages[0].content: "Summarise: another memo"' in error
    assert called["attrs"]["kind"] == "replay_miss"
    assert not retried
    assert server.requests == []


def test_secrets_are_redacted_before_the_cassette_is_written(
    project: Project, server: FakeOpenAIServer
) -> None:
    """A secrets-file value in the prompt and in the reply is never written to the
    cassette, and the same inputs still replay."""
    server.script(Reply.text(f"Token {SECRET} noted."), Reply.json({"label": "bad"}))
    with project.open("record") as wb:
        assert wb.run("desk/review", inputs={"text": f"use {SECRET}"}).status == "completed"

    text = project.cassette.read_text(encoding="utf-8")
    assert SECRET not in text
    assert "<SECRET>" in text
    server.reset()
    with project.open("replay") as wb:
        run = wb.run("desk/review", inputs={"text": f"use {SECRET}"})
    assert run.status == "completed", run.error
    assert run.output == {"summary": "Token <SECRET> noted.", "label": "bad"}


def test_a_scripted_model_can_be_recorded_into_a_cassette(project: Project) -> None:
    """``wraps`` may name a model given to Workbench.open: a cassette can be built from a
    ScriptedModel, with no server at all, and then replayed."""
    project.configure(
        "  default: {provider: replay, mode: record, wraps: scripted, "
        "cassette: cassettes/desk.jsonl}\n"
    )
    script = ScriptedModel(["Scripted summary.", {"label": "good"}])
    with script, ms.Workbench.open(project.root, providers={"scripted": script}) as wb:
        assert wb.run("desk/review", inputs={"text": "x"}).status == "completed"

    # replaying needs no model to wrap: the entry names the model the requests were for
    project.configure(
        "  default: {provider: replay, mode: replay, model: scripted, "
        "cassette: cassettes/desk.jsonl}\n"
    )
    with ms.Workbench.open(project.root) as wb:
        run = wb.run("desk/review", inputs={"text": "x"})
    assert run.status == "completed", run.error
    assert run.output == {"summary": "Scripted summary.", "label": "good"}


def test_a_replay_model_without_a_cassette_path_uses_cassettes_by_its_name(
    project: Project, server: FakeOpenAIServer
) -> None:
    """With no ``cassette`` configured, recordings go to cassettes/<logical name>.jsonl
    under the project root."""
    project.configure("  default: {provider: replay, mode: record, wraps: live}\n")
    with ms.Workbench.open(project.root) as wb:
        assert wb.run("desk/review", inputs={"text": "x"}).status == "completed"

    assert (project.root / "cassettes" / "default.jsonl").is_file()


@pytest.mark.parametrize(
    ("entry", "key", "message"),
    [
        ("{provider: replay, wraps: nowhere}", "models.default.wraps", "not a model"),
        ("{provider: replay, mode: record}", "models.default.wraps", "needs 'wraps'"),
        (
            "{provider: replay, wraps: other}\n  other: {provider: replay, wraps: live}",
            "models.default.wraps",
            "another replay model",
        ),
        (
            '{provider: replay, wraps: live, base_url: "http://x"}',
            "models.default.base_url",
            "does not take base_url",
        ),
    ],
    ids=["unknown-wraps", "record-without-wraps", "replay-of-replay", "foreign-field"],
)
def test_a_broken_replay_entry_is_refused_when_the_workbench_opens(
    project: Project, entry: str, key: str, message: str
) -> None:
    """Replay entries are checked up front; the error names models.yaml and the key."""
    project.configure(f"  default: {entry}\n")

    with pytest.raises(ConfigError) as info:
        ms.Workbench.open(project.root)

    assert info.value.key == key
    assert info.value.file == "configs/models.yaml"
    assert message in str(info.value)
