"""Past runs to a collector: ``master trace export --otlp`` and ``wb.export_telemetry``.

A run exported live and the same run exported later from the store must give the same
spans (ids, parents, times, attributes): one construction serves both.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import master_sdk as ms
from tests.support.otlp_receiver import OtlpReceiver, ReceivedSpan


def shape(spans: list[ReceivedSpan]) -> set[tuple[Any, ...]]:
    return {
        (
            s.name,
            s.trace_id,
            s.span_id,
            s.parent_span_id,
            s.kind,
            s.start_ns,
            s.end_ns,
            s.status_code,
            s.status_message,
            tuple(sorted(s.attributes.items())),
        )
        for s in spans
    }


def finished_run(wb: ms.Workbench) -> ms.Run:
    run = wb.run("hello_world/greet", inputs={"text": "Hello"})
    run.approve(by="ana")
    run.submit({"audience": "the board"}, by="ana")
    assert run.status == "completed"
    return run


def test_the_cli_exports_past_runs_with_the_spans_a_live_export_made(hello_root: Path) -> None:
    """Live export to one receiver, then `master trace export --otlp` of the same run to
    another: the two receivers hold identical spans."""
    with OtlpReceiver() as live:
        wb = ms.Workbench.open(hello_root, telemetry={"endpoint": live.url})
        run = finished_run(wb)
        other = wb.run("hello_world/greet", inputs={"text": "Not asked for"})
        live.wait_for(lambda s: any(x.name.startswith("invoke_workflow") for x in s))
        wb.close()
    with OtlpReceiver() as past:
        done = subprocess.run(
            [sys.executable, "-m", "master_sdk.cli", "--root", str(hello_root),
             "trace", "export", "--otlp", past.url, "--run", run.id],
            capture_output=True, text=True, timeout=120, check=False,
        )
        assert done.returncode == 0, done.stderr
    mine = [s for s in live.spans if s.attributes["master.run_id"] == run.id]
    assert done.stdout.startswith(f"exported {len(mine)} span(s) of 1 run(s)")
    assert shape(past.spans) == shape(mine)
    assert other.id not in {s.attributes["master.run_id"] for s in past.spans}


def test_export_since_sends_whole_runs_that_moved_since_then(hello_root: Path) -> None:
    """`since` picks runs with events at or after it, and sends each of them whole."""
    wb = ms.Workbench.open(hello_root)
    run = finished_run(wb)
    trace = run.trace()
    since = trace["ts"].iloc[-1].isoformat()  # only the run's last event is that recent
    with OtlpReceiver() as receiver:
        report = wb.export_telemetry(receiver.url, since=since)
    wb.close()
    assert report == {"runs": 1, "spans": 9, "exported": 9, "failed": 0}
    assert {s.name for s in receiver.spans} >= {"step echo", "invoke_workflow hello_world/greet"}


def test_export_to_a_collector_that_refuses_reports_the_failure(hello_root: Path) -> None:
    """The CLI exits 1 and says how many spans failed when the collector answers 503."""
    wb = ms.Workbench.open(hello_root)
    finished_run(wb)
    wb.close()
    with OtlpReceiver(status=503) as receiver:
        done = subprocess.run(
            [sys.executable, "-m", "master_sdk.cli", "--root", str(hello_root),
             "trace", "export", "--otlp", receiver.url],
            capture_output=True, text=True, timeout=120, check=False,
        )
    assert done.returncode == 1
    assert "9 failed" in done.stdout


def test_the_public_exporter_path_sends_the_same_spans_as_the_direct_encoding() -> None:
    """Spans encoded here and sent through the exporter's HTTP client decode exactly as the
    same records sent through the SDK's public export() (the fallback when the client
    cannot be reached)."""
    from master_sdk.tracing.otel.hook import NamedEvent
    from master_sdk.tracing.otel.sender import SpanSender
    from master_sdk.tracing.otel.spans import RunInfo, SpanBuilder

    run = RunInfo("0123456789abcdef0123456789abcdef", "demo", "f", "failed", 1_000_000,
                  error="step 'a': boom", tokens_in=3, tokens_out=4, cost_usd=0.5)
    events = [
        NamedEvent(1, 1_000_000, "run_started", None, None, None, None, None, None, None,
                   None, None),
        NamedEvent(2, 2_000_000, "step_started", "a", "agent", "writer", None, None, None,
                   None, None, None),
        NamedEvent(3, 3_000_000, "model_called", "a", "agent", "default", "error", 12.5, 3, 4,
                   0.5, {"model": "m-1", "provider": "openai", "kind": "rate_limit",
                         "error": "slow down", "usage_estimated": True}),
        NamedEvent(4, 4_000_000, "step_failed", "a", "agent", "writer", "failed", None, None,
                   None, None, {"error": "boom"}),
        NamedEvent(5, 5_000_000, "run_failed", "a", None, None, "failed", None, None, None,
                   None, None),
    ]
    records = SpanBuilder(semconv="both").build(run, events)
    received = []
    for direct in (True, False):
        with OtlpReceiver() as receiver:
            sender = SpanSender(receiver.url)
            if not direct:
                sender._client = None
            assert sender.send(records) == (True, None)
            sender.shutdown()
        received.append(shape(receiver.spans))
    assert received[0] == received[1]
    assert len(received[0]) == len(records) == 3
