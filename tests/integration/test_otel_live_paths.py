"""The live export's two paths send the same spans to a real receiver on 127.0.0.1.

Normally the exporter process writes spans straight as OTLP bytes (``direct.DirectSpanBuilder``).
Where the OTLP exporter's HTTP client cannot be reached (another SDK version), it builds
span records and hands them to the SDK's public ``export()``. The same runs — a tool, an
approval, an agent's model call, a failing tool — go through both, and the receiver must
decode the same spans: names, kinds, statuses, the tree, and every attribute but the run
id and sequence numbers.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from master_sdk.config.telemetry import TelemetrySettings
from master_sdk.governance.redaction import Redactor
from master_sdk.tracing.otel.hook import TelemetryHook
from master_sdk.tracing.otel.process import ExportProcess
from tests.support.otlp_receiver import OtlpReceiver, ReceivedSpan

FLOW = """
id: paths
inputs: {type: object, properties: {text: {type: string}}}
steps:
  - {id: a, type: tool, tool: echo, input: {text: "{{ inputs.text }}"}}
  - {id: ok, type: hitl, prompt: "Go on?"}
  - {id: s, type: agent, agent: summarizer, input: {text: "{{ steps.a.output.text }}"}}
"""

FAILS = """
id: fails
inputs: {type: object, properties: {text: {type: string}}}
steps:
  - {id: b, type: tool, tool: boom, input: {text: "{{ inputs.text }}"}}
"""

PER_RUN = {"master.run_id", "master.event.seq"}


def shape(spans: list[ReceivedSpan]) -> list[tuple[Any, ...]]:
    """What must not depend on the path: everything but ids, times and per-run values."""
    names = {span.span_id: span.name for span in spans}
    out = []
    for span in spans:
        attributes = {k: v for k, v in span.attributes.items() if k not in PER_RUN}
        out.append(
            (
                span.name,
                span.kind,
                span.status_code,
                span.status_message,
                names.get(span.parent_span_id, ""),
                sorted(attributes.items()),
                sorted(span.resource.items()),
                span.scope,
            )
        )
    return sorted(out, key=repr)


def exported(project: Any, *, direct: bool) -> list[Any]:
    with OtlpReceiver() as receiver:
        settings = {"endpoint": receiver.url, "flush_interval_s": 0.05}
        if direct:
            wb = project.open(telemetry=settings)
            telemetry: Any = wb
        else:
            # the same export, told to hand span records to the SDK's public export()
            wb = project.open(telemetry=False)
            exporter = ExportProcess(
                TelemetrySettings(enabled=True, **settings),
                scrub=Redactor().value,  # the project has no secrets: the detectors alone
                sdk_export=True,
            )
            exporter.start()
            hook = TelemetryHook(exporter)
            wb.add_hook(hook)
            telemetry = SimpleNamespace(
                flush_telemetry=hook.flush, telemetry_status=hook.status
            )
        run = wb.run("demo/paths", inputs={"text": "mail bob@example.org"})
        assert run.status == "waiting_approval"
        again = wb.get_run(run.id)
        again.approve(by="ana")
        assert again.status == "completed"
        assert wb.run("demo/fails", inputs={"text": "x"}).status == "failed"
        assert telemetry.flush_telemetry(10.0)
        status = telemetry.telemetry_status()
        wb.close()
        if not direct:
            hook.close()
    assert status["exported"] == len(receiver.spans) and status["dropped"] == 0
    return shape(receiver.spans)


def test_direct_bytes_and_sdk_records_send_the_same_spans(project: Any) -> None:
    """Same runs, both paths: the same spans, attribute for attribute."""
    project.flow("paths", FLOW)
    project.flow("fails", FAILS)
    direct = exported(project, direct=True)
    records = exported(project, direct=False)
    assert direct == records
    names = [span[0] for span in direct]
    assert len(direct) == 10, names  # 7 for the first run, 3 for the failing one
    assert {"execute_tool echo", "pause ok", "chat default", "execute_tool boom"} <= set(names)
