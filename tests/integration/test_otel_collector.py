"""A collector that is down, refusing (503) or slow never slows, fails or blocks a run.

Each test runs the same flows with telemetry pointed at a real loopback endpoint that
misbehaves, and checks that every run completes, that the loss is counted in
``wb.telemetry_status()``, and that the time runs take grows by less than the export
timeout budget.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.support.otlp_receiver import OtlpReceiver, free_port

RUNS = 20
TIMEOUT_S = 1.0

FLOW = """
id: three
inputs: {type: object, properties: {text: {type: string}}}
steps:
  - {id: a, type: tool, tool: echo, input: {text: "{{ inputs.text }}"}}
  - {id: s, type: agent, agent: summarizer, input: {text: "{{ steps.a.output.text }}"}}
  - {id: c, type: tool, tool: count, input: {text: "{{ steps.s.output.summary }}"}}
"""


def timed_runs(project: Any, telemetry: Any) -> tuple[float, float, Any, list[str]]:
    """Run the three-step flow RUNS times; (seconds running, seconds closing, status,
    statuses of the runs)."""
    wb = project.open(telemetry=telemetry)
    wb.run("demo/three", inputs={"text": "warm up"})  # imports and compiles, not measured
    clock = time.perf_counter()
    statuses = [wb.run("demo/three", inputs={"text": f"run {i}"}).status for i in range(RUNS)]
    running = time.perf_counter() - clock
    clock = time.perf_counter()
    wb.flush_telemetry()
    status = wb.telemetry_status()
    wb.close()
    closing = time.perf_counter() - clock
    return running, closing, status, statuses


def settings(endpoint: str, **extra: Any) -> dict[str, Any]:
    return {"endpoint": endpoint, "timeout_s": TIMEOUT_S, "flush_interval_s": 0.05, **extra}


@pytest.fixture
def three(project: Any) -> Any:
    project.flow("three", FLOW)
    return project


def test_a_collector_that_is_down_costs_runs_nothing_and_drops_are_counted(three: Any) -> None:
    """Connection refused: every run completes, in about the time runs take with telemetry
    off, and the spans that could not be sent are counted as dropped."""
    off, _, _, _ = timed_runs(three, False)
    down, closing, status, statuses = timed_runs(
        three, settings(f"http://127.0.0.1:{free_port()}/v1/traces")
    )
    assert statuses == ["completed"] * RUNS
    assert down - off < TIMEOUT_S, (down, off)
    assert closing < TIMEOUT_S + 2.0
    assert status["exported"] == 0
    assert status["dropped"] > 0 and status["dropped_export_failed"] > 0
    assert status["failed_requests"] >= 1
    assert "failed" in (status["last_error"] or "")


def test_a_collector_answering_503_never_fails_a_run(three: Any) -> None:
    """503 on every request: runs complete, the receiver did get the requests, spans are
    dropped and counted, nothing waits beyond the export budget."""
    with OtlpReceiver(status=503) as receiver:
        off, _, _, _ = timed_runs(three, False)
        refused, closing, status, statuses = timed_runs(three, settings(receiver.url))
    assert statuses == ["completed"] * RUNS
    assert refused - off < TIMEOUT_S, (refused, off)
    assert closing < TIMEOUT_S + 2.0
    assert receiver.requests >= 1 and receiver.spans == []
    assert status["exported"] == 0 and status["dropped_export_failed"] > 0


def test_a_slow_collector_fills_a_bounded_buffer_and_drops_the_rest(three: Any) -> None:
    """A collector slower than the export timeout: runs go at full speed, at most
    max_queue spans wait, the rest are dropped and counted."""
    with OtlpReceiver(delay_s=3.0) as receiver:
        off, _, _, _ = timed_runs(three, False)
        slow, closing, status, statuses = timed_runs(
            three, settings(receiver.url, max_queue=20, batch_size=10)
        )
    assert statuses == ["completed"] * RUNS
    assert slow - off < TIMEOUT_S, (slow, off)
    assert closing < TIMEOUT_S + 2.0
    assert status["dropped_queue_full"] > 0
    assert status["exported"] == 0


def test_spans_flow_again_once_the_collector_is_back(three: Any) -> None:
    """Down, then up on the same port: later runs are exported; earlier ones were counted
    as dropped rather than retried forever."""
    port = free_port()
    wb = three.open(telemetry=settings(f"http://127.0.0.1:{port}/v1/traces"))
    assert wb.run("demo/three", inputs={"text": "while down"}).status == "completed"
    wb.flush_telemetry()
    assert wb.telemetry_status()["dropped"] > 0
    receiver = OtlpReceiver(port=port).start()
    try:
        run = wb.run("demo/three", inputs={"text": "back up"})
        spans = receiver.wait_for(
            lambda s: any(
                x.attributes.get("master.run_id") == run.id and x.name.startswith("invoke_workflow")
                for x in s
            )
        )
    finally:
        wb.close()
        receiver.stop()
    assert {s.attributes["master.run_id"] for s in spans} == {run.id}
    assert wb.telemetry_status()["exported"] == len(spans)


def test_a_collector_stopped_mid_experiment_loses_only_what_came_after(three: Any) -> None:
    """Spans of runs before the collector stopped arrive; runs after it complete all the
    same, and their spans are counted as dropped."""
    receiver = OtlpReceiver().start()
    wb = three.open(telemetry=settings(receiver.url))
    try:
        before = [wb.run("demo/three", inputs={"text": f"up {i}"}) for i in range(3)]
        assert wb.flush_telemetry(10.0)
        exported = wb.telemetry_status()["exported"]
        receiver.stop()
        after = [wb.run("demo/three", inputs={"text": f"down {i}"}) for i in range(3)]
        wb.flush_telemetry()
        status = wb.telemetry_status()
    finally:
        wb.close()
    assert [r.status for r in before + after] == ["completed"] * 6
    assert {s.attributes["master.run_id"] for s in receiver.spans} == {r.id for r in before}
    assert exported == len(receiver.spans) == status["exported"]
    assert status["dropped_export_failed"] > 0


def test_a_proxy_from_the_environment_is_used_for_every_export(
    three: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``HTTP_PROXY`` set when telemetry opens routes the exports through that proxy (here
    the receiver itself, which accepts proxied requests): the environment's proxy and CA
    settings are read once, not per request, and still honoured."""
    with OtlpReceiver() as receiver:
        for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{receiver.port}")
        monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{receiver.port}")
        _, _, status, statuses = timed_runs(
            three, settings("http://collector.invalid:4318/v1/traces")
        )
        assert statuses == ["completed"] * RUNS
        assert status["failed_requests"] == 0 and status["dropped"] == 0
        assert status["exported"] == len(receiver.spans) > 0
