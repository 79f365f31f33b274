"""OpenTelemetry export against a real OTLP/HTTP receiver on 127.0.0.1: what the spans say.

The receiver decodes the protobuf payloads the SDK's exporter sends; every test checks
spans as a backend would see them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import master_sdk as ms
from master_sdk.tracing.otel import ids
from tests.support.otlp_receiver import OtlpReceiver, ReceivedSpan

REPO = Path(__file__).resolve().parents[2]
PRICES = "  default: {input: 2.0, output: 8.0}\n"


def telemetry_project(root: Path, endpoint: str, **extra: Any) -> Path:
    """hello_world with telemetry on (configs/telemetry.yaml) and a price for the fake model."""
    settings = {"enabled": True, "endpoint": endpoint, "flush_interval_s": 0.05, **extra}
    (root / "configs" / "telemetry.yaml").write_text(
        json.dumps({"telemetry": settings}), encoding="utf-8"
    )
    models = root / "configs" / "models.yaml"
    text = models.read_text(encoding="utf-8").replace("prices:\n", "prices:\n" + PRICES)
    models.write_text(text, encoding="utf-8")
    return root


def python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run code in a fresh interpreter (another process, as a kernel days later would be)."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def by_name(spans: list[ReceivedSpan]) -> dict[str, ReceivedSpan]:
    named = {span.name: span for span in spans}
    assert len(named) == len(spans), sorted(s.name for s in spans)
    return named


def us_ns(ts: Any) -> int:
    return int(ts.value)  # pandas Timestamp, ns


def test_a_paused_run_resumed_in_another_process_is_one_trace_with_every_attribute(
    hello_root: Path,
) -> None:
    """Process 1 runs hello_world to its approval and exits; process 2 approves and
    submits. Every span lands in one trace derived from the run id, in one tree, with
    the GenAI attributes, tokens, cost, ids and the events' own times."""
    with OtlpReceiver() as receiver:
        root = telemetry_project(hello_root, receiver.url)
        first = python(
            """
            import master_sdk as ms
            wb = ms.Workbench.open()
            run = wb.run("hello_world/greet", inputs={"text": "Hello from ana@example.com"})
            assert run.status == "waiting_approval", run.status
            wb.close()
            print(run.id)
            """,
            root,
        )
        assert first.returncode == 0, first.stderr
        run_id = first.stdout.strip()
        before = receiver.wait_for(lambda s: {"step echo", "pause review"} <= {x.name for x in s})
        assert "invoke_workflow hello_world/greet" not in {s.name for s in before}
        second = python(
            f"""
            import master_sdk as ms
            wb = ms.Workbench.open()
            run = wb.get_run("{run_id}")
            run.approve(comment="fine", by="ana")
            run.submit({{"audience": "the board"}}, by="ana")
            assert run.status == "completed", run.status
            wb.close()
            """,
            root,
        )
        assert second.returncode == 0, second.stderr
        spans = receiver.wait_for(
            lambda s: any(x.name.startswith("invoke_workflow") for x in s)
        )

    wb = ms.Workbench.open(root)
    trace = wb.traces(run_id=run_id)
    runs = wb.runs()
    wb.close()
    run_row = runs[runs["run_id"] == run_id].iloc[0]
    named = by_name(spans)
    assert set(named) == {
        "invoke_workflow hello_world/greet",
        "step echo",
        "execute_tool echo",
        "pause review",
        "step review",
        "pause audience",
        "step audience",
        "invoke_agent summarizer",
        "chat default",
    }
    trace_hex = f"{ids.trace_id(run_id):032x}"
    assert {span.trace_id for span in spans} == {trace_hex}
    root_span = named["invoke_workflow hello_world/greet"]
    root_hex = f"{ids.root_span_id(run_id):016x}"
    assert root_span.span_id == root_hex and root_span.parent_span_id == ""
    for name in ("step echo", "step review", "step audience", "invoke_agent summarizer"):
        assert named[name].parent_span_id == root_hex, name
    assert named["execute_tool echo"].parent_span_id == named["step echo"].span_id
    assert named["chat default"].parent_span_id == named["invoke_agent summarizer"].span_id
    assert {span.resource["service.name"] for span in spans} == {"master-sdk"}
    assert {span.scope for span in spans} == {"master_sdk"}

    run_attrs = {"master.run_id": run_id, "master.product": "hello_world", "master.flow": "greet"}
    model = trace[trace["event"] == "model_called"].iloc[0]
    tokens_in, tokens_out = int(model["tokens_in"]), int(model["tokens_out"])
    cost = (tokens_in * 2.0 + tokens_out * 8.0) / 1_000_000
    assert model["cost_usd"] == pytest.approx(cost)
    usage = {
        "gen_ai.usage.input_tokens": tokens_in,
        "gen_ai.usage.output_tokens": tokens_out,
        "gen_ai.usage.cost": pytest.approx(cost),
    }
    assert root_span.attributes == {
        **run_attrs,
        "gen_ai.operation.name": "invoke_workflow",
        "gen_ai.workflow.name": "hello_world/greet",
        "master.status": "completed",
        "master.steps": int(run_row["steps"]),
        "master.tool_calls": 1,
        "master.model_calls": 1,
        **usage,
    }
    assert root_span.kind == "SPAN_KIND_INTERNAL" and root_span.status_code == "STATUS_CODE_UNSET"

    def step(step_id: str, kind: str) -> dict[str, Any]:
        return {**run_attrs, "master.step_id": step_id, "master.step.type": kind,
                "master.step.attempt": 1, "master.step.status": "completed"}

    assert named["step echo"].attributes == step("echo", "tool")
    assert named["step review"].attributes == {
        **step("review", "hitl"), "master.approval.decision": "approved"
    }
    assert named["step audience"].attributes == step("audience", "user_input")
    seq = {row.event: int(row.seq) for row in trace.itertuples() if row.event in
           ("tool_called", "model_called")}
    assert named["execute_tool echo"].attributes == {
        **run_attrs, "master.step_id": "echo", "master.step.type": "tool",
        "master.step.attempt": 1, "master.event.seq": seq["tool_called"],
        "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "echo",
        "gen_ai.tool.type": "function",
    }
    genai_model = {
        "gen_ai.provider.name": "fake",
        "gen_ai.request.model": "default",
        "gen_ai.response.model": "default",
    }
    assert named["invoke_agent summarizer"].attributes == {
        **step("summary", "agent"), "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.name": "summarizer", **genai_model, **usage,
    }
    chat = named["chat default"]
    assert chat.kind == "SPAN_KIND_CLIENT"
    assert chat.attributes == {
        **run_attrs, "master.step_id": "summary", "master.step.type": "agent",
        "master.step.attempt": 1, "master.event.seq": seq["model_called"],
        "gen_ai.operation.name": "chat", "master.model": "default", **genai_model, **usage,
    }
    # times are the events' own
    ts = {(row.event, row.step_id): us_ns(row.ts) for row in trace.itertuples()}
    assert named["step review"].end_ns == ts[("step_completed", "review")]
    # the wait began in process 1: its start is the store's step record (microseconds
    # after the step_started event), handed to process 2's commit hook
    assert abs(named["step review"].start_ns - ts[("step_started", "review")]) < 1_000_000
    assert named["pause review"].start_ns == ts[("approval_requested", "review")]
    assert named["step echo"].start_ns == ts[("step_started", "echo")]
    assert named["step echo"].end_ns == ts[("step_completed", "echo")]
    assert root_span.start_ns == us_ns(run_row["created_at"])
    assert root_span.end_ns == max(us_ns(t) for t in trace["ts"])
    assert chat.end_ns == ts[("model_called", "summary")]
    assert chat.end_ns - chat.start_ns == pytest.approx(model["duration_ms"] * 1e6, abs=1000)
    # no content by default: neither the inputs nor the e-mail address
    assert not any("example.com" in json.dumps(s.attributes) for s in spans)


def test_failures_are_error_spans_with_the_redacted_message(project: Any) -> None:
    """A tool that raises: its tool span, step span and root span have status ERROR, the
    message is redacted, and error.type names the exception."""
    project.flow(
        "fails",
        """
        id: fails
        inputs: {type: object, properties: {text: {type: string}}}
        steps:
          - {id: b, type: tool, tool: boom, input: {text: "{{ inputs.text }}"}}
        """,
    )
    with OtlpReceiver() as receiver:
        wb = project.open(telemetry={"endpoint": receiver.url, "flush_interval_s": 0.05})
        run = wb.run("demo/fails", inputs={"text": "mail bob@example.org"})
        assert run.status == "failed"
        spans = receiver.wait_for(lambda s: any(x.name.startswith("invoke_workflow") for x in s))
        wb.close()
    named = by_name(spans)
    tool, step = named["execute_tool boom"], named["step b"]
    root = named["invoke_workflow demo/fails"]
    for span in (tool, step, root):
        assert span.status_code == "STATUS_CODE_ERROR", span.name
        assert "<EMAIL>" in span.status_message and "bob@example.org" not in span.status_message
    assert tool.attributes["error.type"] == "RuntimeError"
    assert step.attributes["error.type"] == "failed"
    assert root.attributes["error.type"] == "failed"
    assert root.attributes["master.status"] == "failed"


def test_content_capture_adds_redacted_inputs_and_outputs(project: Any) -> None:
    """capture_content: true puts the run's inputs and output on the root span, redacted."""
    project.flow(
        "echo",
        """
        id: echo
        inputs: {type: object, properties: {text: {type: string}}}
        steps:
          - {id: e, type: tool, tool: echo, input: {text: "{{ inputs.text }}"}}
        """,
    )
    with OtlpReceiver() as receiver:
        wb = project.open(
            telemetry={"endpoint": receiver.url, "capture_content": True, "flush_interval_s": 0.05}
        )
        wb.run("demo/echo", inputs={"text": "write to bob@example.org"})
        spans = receiver.wait_for(lambda s: any(x.name.startswith("invoke_workflow") for x in s))
        wb.close()
    root = by_name(spans)["invoke_workflow demo/echo"]
    assert json.loads(root.attributes["master.run.inputs"]) == {"text": "write to <EMAIL>"}
    assert json.loads(root.attributes["master.run.output"]) == {"text": "write to <EMAIL>"}


@pytest.mark.parametrize(
    ("mode", "present", "absent"),
    [
        ("latest", {"gen_ai.provider.name", "gen_ai.usage.input_tokens"},
         {"gen_ai.system", "gen_ai.usage.prompt_tokens"}),
        ("legacy", {"gen_ai.system", "gen_ai.usage.prompt_tokens",
                    "gen_ai.usage.completion_tokens", "gen_ai.usage.input_tokens"},
         {"gen_ai.provider.name"}),
        ("both", {"gen_ai.system", "gen_ai.provider.name", "gen_ai.usage.prompt_tokens"}, set()),
    ],
)
def test_semconv_setting_chooses_the_attribute_set(
    project: Any, mode: str, present: set[str], absent: set[str]
) -> None:
    """semconv: latest | legacy | both decides the provider and token attribute names."""
    project.flow(
        "ask",
        """
        id: ask
        inputs: {type: object, properties: {text: {type: string}}}
        steps:
          - {id: s, type: agent, agent: summarizer, input: {text: "{{ inputs.text }}"}}
        """,
    )
    with OtlpReceiver() as receiver:
        wb = project.open(
            telemetry={"endpoint": receiver.url, "semconv": mode, "flush_interval_s": 0.05}
        )
        wb.run("demo/ask", inputs={"text": "hi"})
        spans = receiver.wait_for(lambda s: any(x.name.startswith("chat") for x in s))
        wb.close()
    chat = next(s for s in spans if s.name.startswith("chat"))
    assert present <= set(chat.attributes), sorted(chat.attributes)
    assert not absent & set(chat.attributes)


def test_sample_ratio_zero_exports_nothing_and_headers_come_from_secrets(project: Any) -> None:
    """A run outside the sample sends nothing; a header named by secret reference is
    sent with the secret's value (and the value is redacted everywhere else)."""
    (project.root / "secrets").mkdir()
    (project.root / "secrets" / "secrets.yaml").write_text(
        "otel: {authorization: Bearer s3cr3t-token-value}\n", encoding="utf-8"
    )
    project.flow(
        "echo",
        """
        id: echo
        inputs: {type: object, properties: {text: {type: string}}}
        steps:
          - {id: e, type: tool, tool: echo, input: {text: "{{ inputs.text }}"}}
        """,
    )
    with OtlpReceiver() as receiver:
        settings = {
            "endpoint": receiver.url,
            "headers_ref": {"Authorization": "otel.authorization"},
            "flush_interval_s": 0.05,
        }
        wb = project.open(telemetry={**settings, "sample_ratio": 0.0})
        wb.run("demo/echo", inputs={"text": "a"})
        assert wb.flush_telemetry(5.0)
        assert wb.telemetry_status()["exported"] == 0
        wb.close()
        assert receiver.requests == 0
        wb = project.open(telemetry=settings)
        run = wb.run("demo/echo", inputs={"text": "Bearer s3cr3t-token-value"})
        receiver.wait_for(lambda s: len(s) >= 3)
        wb.close()
    sent = {key.lower(): value for key, value in receiver.headers[0].items()}
    assert sent["authorization"] == "Bearer s3cr3t-token-value"
    assert "s3cr3t" not in json.dumps(run.output)


def test_a_wait_resumed_in_another_process_starts_when_the_run_paused(hello_root: Path) -> None:
    """The approval step's span, ended by process 2, starts when process 1 paused (the
    store's step record, which the commit hook sees, says when)."""
    with OtlpReceiver() as receiver:
        root = telemetry_project(hello_root, receiver.url)
        first = python(
            """
            import master_sdk as ms
            wb = ms.Workbench.open()
            print(wb.run("hello_world/greet", inputs={"text": "Hello"}).id)
            wb.close()
            """,
            root,
        )
        run_id = first.stdout.strip()
        second = python(
            f"""
            import master_sdk as ms
            wb = ms.Workbench.open()
            wb.get_run("{run_id}").approve(by="ana")
            wb.close()
            """,
            root,
        )
        assert second.returncode == 0, second.stderr
        spans = receiver.wait_for(lambda s: any(x.name == "step review" for x in s))
    wb = ms.Workbench.open(root)
    trace = wb.traces(run_id=run_id)
    wb.close()
    started = trace[(trace["event"] == "step_started") & (trace["step_id"] == "review")]
    review = next(s for s in spans if s.name == "step review")
    # the store's step record, taken microseconds after the step_started event
    assert abs(review.start_ns - us_ns(started["ts"].iloc[0])) < 1_000_000
    ended = trace[(trace["event"] == "step_completed") & (trace["step_id"] == "review")]
    assert review.end_ns == us_ns(ended["ts"].iloc[0])
    assert review.end_ns - review.start_ns > 0
