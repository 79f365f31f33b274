"""master_sdk.testing: the scripted and function-backed models users put in their own
tests, and the block on network model calls (context manager and pytest fixture)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel

import master_sdk as ms
import master_sdk.testing as testing
from master_sdk.errors import ModelCallError
from master_sdk.testing import (
    FunctionModel,
    ModelRequest,
    ScriptedModel,
    UnconsumedResponses,
    UnexpectedModelCall,
    no_network_models,
)
from tests.conftest import REPO, Project
from tests.support.openai_server import FakeOpenAIServer, Reply

UNROUTABLE = "http://192.0.2.1:9/v1"  # TEST-NET-1: reserved, never routed anywhere

TRIAGE_COMPONENTS = """

class Label(AgentOutput):
    label: str
    score: int


@agent(model="default")
def labeller(ctx: AgentContext, text: str) -> Label:
    return ctx.complete(f"Label: {text}", output=Label).output
"""


@pytest.fixture
def demo(project: Project) -> Project:
    """The demo product with a one-step summary flow, a structured-output flow, and no
    waiting between model retries."""
    components = project.root / "products" / "demo" / "components.py"
    components.write_text(components.read_text() + TRIAGE_COMPONENTS, encoding="utf-8")
    project.flow(
        "summary",
        """
        id: summary
        steps:
          - {id: summary, type: agent, agent: summarizer, input: {text: "{{ inputs.text }}"}}
        output: "{{ steps.summary.output.summary }}"
        """,
    )
    project.flow(
        "label",
        """
        id: label
        steps:
          - {id: label, type: agent, agent: labeller, input: {text: "{{ inputs.text }}"}}
        output: "{{ steps.label.output }}"
        """,
    )
    (project.root / "configs" / "policy.yaml").write_text(
        "policy: {model_retries: {max_attempts: 2, backoff_s: 0, max_backoff_s: 0}}\n"
    )
    return project


def run_flow(project: Project, ref: str, text: str, **providers: object) -> ms.Run:
    with project.open(providers=providers) as wb:
        run = wb.run(ref, inputs={"text": text})
        run.trace_rows = run.trace()  # type: ignore[attr-defined]  # read before closing
    return run


# --- ScriptedModel ----------------------------------------------------------------------


def test_scripted_model_answers_in_order_and_records_each_request(demo: Project) -> None:
    """Replies come back in order through a flow; ``calls`` holds every ModelRequest the
    router sent, and ``prompts`` their user messages."""
    model = ScriptedModel(["First summary."])

    run = run_flow(demo, "demo/summary", "hello", default=model)

    assert run.status == "completed", run.error
    assert run.output == "First summary."
    [request] = model.calls
    assert isinstance(request, ModelRequest)
    assert request.messages[-1].content == "Summarise: hello"
    assert model.prompts == ["Summarise: hello"]
    model.assert_consumed()


def test_a_call_beyond_the_script_fails_the_step_and_the_assertion(demo: Project) -> None:
    """With no reply left the call raises UnexpectedModelCall (the step fails, naming it)
    and assert_consumed() fails too, so a test that only checks the model still fails."""
    model = ScriptedModel([])

    run = run_flow(demo, "demo/summary", "hello", default=model)

    assert run.status == "failed"
    assert "unexpected model call #1" in (run.error or "")
    with pytest.raises(UnexpectedModelCall, match="'Summarise: hello'"):
        model.assert_consumed()


def test_replies_never_asked_for_fail_assert_consumed_and_the_with_block() -> None:
    """Unconsumed replies fail ``assert_consumed()`` and the end of a ``with`` block,
    which lists them."""
    model = ScriptedModel(["used", "left over", {"a": 1}])
    model.complete(ModelRequest(model="m", messages=(testing.Message("user", "x"),)))

    with pytest.raises(UnconsumedResponses, match=r"2 scripted replies were never asked for"):
        model.assert_consumed()
    with pytest.raises(UnconsumedResponses, match=r"'left over', '\{\"a\": 1\}'"), model:
        pass


def test_more_responses_can_be_scripted_later_by_keyword_or_add() -> None:
    """``responses=`` queues replies; ``add()`` appends after them, answered in order."""
    model = ScriptedModel(responses=["one"])
    model.add("two", "three")
    request = ModelRequest(model="m", messages=(testing.Message("user", "x"),))

    assert [model.complete(request).text for _ in range(3)] == ["one", "two", "three"]
    model.assert_consumed()


def test_the_with_block_does_not_hide_the_error_that_ended_it() -> None:
    """Leaving the block by an exception re-raises that exception, not a consumption
    complaint."""
    with pytest.raises(KeyError), ScriptedModel(["never used"]):
        raise KeyError("the real problem")


def test_data_replies_become_json_for_structured_output(demo: Project) -> None:
    """A mapping or pydantic model reply is sent as JSON text and parsed into the agent's
    output model."""

    class Label(BaseModel):
        label: str
        score: int

    model = ScriptedModel([{"label": "spam", "score": 3}, Label(label="ham", score=1)])

    first = run_flow(demo, "demo/label", "buy now", default=model)
    second = run_flow(demo, "demo/label", "hi mum", default=model)

    assert first.output == {"label": "spam", "score": 3}
    assert second.output == {"label": "ham", "score": 1}
    assert model.calls[0].output_name == "Label"
    model.assert_consumed()


def test_a_scripted_provider_error_is_retried_as_policy_allows(demo: Project) -> None:
    """An exception in the script is raised by that call: a retryable ModelCallError is
    retried by the router (traced) and the next reply completes the step."""
    model = ScriptedModel(
        [ModelCallError("rate limited", kind="rate_limit", retryable=True), "After a retry."]
    )

    run = run_flow(demo, "demo/summary", "hello", default=model)

    assert run.status == "completed", run.error
    assert run.output == "After a retry."
    events = list(run.trace_rows["event"])  # type: ignore[attr-defined]
    assert events.count("model_retry") == 1
    assert len(model.calls) == 2


# --- FunctionModel ----------------------------------------------------------------------


def test_function_model_answers_with_a_function_of_the_request(demo: Project) -> None:
    """The function sees each request and its return value is the reply."""

    def shout(request: ModelRequest) -> str:
        return request.messages[-1].content.upper()

    model = FunctionModel(shout)

    run = run_flow(demo, "demo/summary", "quiet words", default=model)

    assert run.output == "SUMMARISE: QUIET WORDS"
    assert len(model.calls) == 1


# --- the network block ------------------------------------------------------------------


def write_models(project: Project, base_url: str) -> None:
    (project.root / "configs" / "models.yaml").write_text(
        f'models:\n  default: {{provider: openai, model: m, base_url: "{base_url}", '
        "timeout_s: 0.5}\n",
        encoding="utf-8",
    )


def test_no_network_models_blocks_a_real_endpoint_before_anything_is_sent(
    demo: Project,
) -> None:
    """Inside the block, a model configured with a non-loopback base_url fails its step
    with NetworkModelCallBlocked (not retried, traced); the guard lists the call."""
    write_models(demo, UNROUTABLE)

    with no_network_models() as guard:
        run = run_flow(demo, "demo/summary", "hello")

    assert run.status == "failed"
    # the stored error is redacted: the address reads <IP> there
    assert "openai model call to http://<IP>:9/v1 blocked: network model calls are not" in (
        run.error or ""
    )
    assert guard.blocked == ["openai -> http://192.0.2.1:9/v1"]
    trace = run.trace_rows  # type: ignore[attr-defined]
    called = trace[trace["event"] == "model_called"]
    assert list(called["status"]) == ["error"]
    assert not (trace["event"] == "model_retry").any()


@pytest.fixture(scope="module")
def loopback() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as srv:
        yield srv


def test_loopback_servers_stay_reachable_unless_refused_too(
    demo: Project, loopback: FakeOpenAIServer
) -> None:
    """A local test server is not the network: it is reached inside the block, unless
    allow_loopback=False."""
    write_models(demo, loopback.base_url)
    loopback.script(Reply.text("local reply"))

    with no_network_models():
        allowed = run_flow(demo, "demo/summary", "hello")
    with no_network_models(allow_loopback=False) as strict:
        refused = run_flow(demo, "demo/summary", "hello")

    assert allowed.output == "local reply"
    assert refused.status == "failed"
    assert strict.blocked == [f"openai -> {loopback.base_url}"]


def test_the_block_ends_with_its_with_statement(demo: Project, loopback: FakeOpenAIServer) -> None:
    """After the block, calls it refused go through again."""
    write_models(demo, loopback.base_url)
    loopback.script(Reply.text("after the block"))
    with no_network_models(allow_loopback=False):
        pass

    run = run_flow(demo, "demo/summary", "hello")

    assert run.status == "completed", run.error
    assert run.output == "after the block"


PLUGIN_TEST = """
from master_sdk.models.providers.openai import OpenAIProvider
from master_sdk.models.types import Message, ModelRequest


def test_swallows_a_blocked_call(block_network_models):
    provider = OpenAIProvider(base_url="http://192.0.2.1:9/v1", model="m", timeout_s=0.5)
    try:
        provider.complete(ModelRequest(model="m", messages=(Message("user", "x"),)))
    except Exception:
        pass  # a flow would turn it into a failed step the test may never look at


def test_without_network_calls_passes(block_network_models):
    assert block_network_models.blocked == []
"""


def test_pytest_fixture_fails_a_test_whose_model_call_was_blocked(tmp_path: Path) -> None:
    """With the plugin loaded (``-p master_sdk.pytest_plugin``), ``block_network_models``
    fails a test at teardown when a network model call was attempted, even if the test
    swallowed the error; a test without such calls passes."""
    test_file = tmp_path / "test_guarded.py"
    test_file.write_text(textwrap.dedent(PLUGIN_TEST), encoding="utf-8")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",  # an installed copy would register it twice
    }

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "master_sdk.pytest_plugin",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(tmp_path),
            "-c",
            os.devnull,
            str(test_file),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )

    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    # the swallowing test passes its body, then errors at the fixture's teardown
    assert "2 passed, 1 error" in output
    assert "ERROR test_guarded.py::test_swallows_a_blocked_call" in output
    assert "network model calls were attempted in this test" in output
    assert "openai -> http://192.0.2.1:9/v1" in output


def test_the_helpers_import_without_pytest() -> None:
    """master_sdk.testing is usable in a notebook: importing it does not import pytest."""
    code = "import sys, master_sdk.testing; print('pytest' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == "False"


def test_public_names_are_sorted_and_complete() -> None:
    """``__all__`` lists the module's public names, sorted."""
    public = {
        name
        for name, value in vars(testing).items()
        if not name.startswith("_")
        and getattr(value, "__module__", None) in ("master_sdk.testing",)
        and callable(value)
    }
    assert testing.__all__ == sorted(testing.__all__)
    assert public <= set(testing.__all__)
