"""The span construction on its own (no OpenTelemetry needed): ids, trees, retries."""

from __future__ import annotations

from typing import Any

from master_sdk.tracing.otel import ids
from master_sdk.tracing.otel.hook import NamedEvent
from master_sdk.tracing.otel.spans import RunInfo, SpanBuilder, StepStart

RUN = "01a2b3c4d5e6f70812345678abcdef01"


def ev(seq: int, event: str, step: str | None = None, **fields: Any) -> NamedEvent:
    values: dict[str, Any] = {
        "step_type": None, "name": None, "status": None, "duration_ms": None,
        "tokens_in": None, "tokens_out": None, "cost_usd": None, "attrs": None,
    }
    values.update(fields)
    return NamedEvent(seq, 1_000_000 * seq, event, step, **values)


def info(status: str = "completed", error: str | None = None) -> RunInfo:
    return RunInfo(RUN, "demo", "f", status, created_us=1_000_000, error=error)


def test_ids_are_derived_from_the_run_and_never_zero() -> None:
    """The same run gives the same trace id in every process; spans differ by what they are."""
    assert ids.trace_id(RUN) == ids.trace_id(RUN) != ids.trace_id(RUN + "x")
    assert 0 < ids.trace_id(RUN) < 2**128 and 0 < ids.root_span_id(RUN) < 2**64
    assert ids.step_span_id(RUN, "a", 1) != ids.step_span_id(RUN, "a", 2)
    assert ids.event_span_id(RUN, 3) != ids.event_span_id(RUN, 4)


def test_sampling_keeps_a_share_of_runs_decided_by_the_trace_id() -> None:
    """ratio 1 keeps all, 0 none, 0.5 about half, and a run's decision never changes."""
    traces = [ids.trace_id(f"run-{i}") for i in range(2000)]
    assert all(ids.sampled(t, 1.0) for t in traces)
    assert not any(ids.sampled(t, 0.0) for t in traces)
    kept = sum(ids.sampled(t, 0.5) for t in traces)
    assert 850 < kept < 1150


def test_a_step_started_in_an_earlier_commit_keeps_its_start() -> None:
    """Commits fed one by one give the same spans as the whole trace at once."""
    events = [
        ev(1, "run_started"),
        ev(2, "step_started", "a", step_type="tool", name="echo"),
        ev(3, "tool_called", "a", step_type="tool", name="echo", status="ok", duration_ms=500.0),
        ev(4, "step_completed", "a", step_type="tool", name="echo", status="completed"),
        ev(5, "run_completed", status="completed"),
    ]
    whole = SpanBuilder().build(info(), events)
    split = SpanBuilder()
    pieces = split.build(info("running"), events[:2]) + split.build(info(), events[2:])
    assert [(s.name, s.span_id, s.start_ns, s.end_ns) for s in whole] == [
        (s.name, s.span_id, s.start_ns, s.end_ns) for s in pieces
    ]
    step = next(s for s in whole if s.name == "step a")
    assert (step.start_ns, step.end_ns) == (2_000_000_000, 4_000_000_000)
    tool = next(s for s in whole if s.name == "execute_tool echo")
    assert (tool.start_ns, tool.end_ns) == (2_500_000_000, 3_000_000_000)


def test_a_step_ended_in_another_process_takes_its_start_from_the_commit() -> None:
    """A fresh builder (another process) sees the step's end and the stored attempt."""
    events = [ev(7, "approval_decided", "r", step_type="hitl", status="approved"),
              ev(8, "step_completed", "r", step_type="hitl", status="completed")]
    spans = SpanBuilder().build(info("running"), events, starts={"r": StepStart(1, 4_000_000)})
    (step,) = spans
    assert step.start_ns == 4_000_000_000 and step.end_ns == 8_000_000_000
    assert step.span_id == ids.step_span_id(RUN, "r", 1)
    assert step.attributes["master.approval.decision"] == "approved"


def test_a_retried_step_gets_a_new_span_per_attempt_and_a_retried_run_two_roots() -> None:
    """Failed, then retried: two step spans (attempts 1 and 2); the root is sent at each
    end with the same id, the first with status ERROR."""
    builder = SpanBuilder()
    first = builder.build(info("failed", "step 'a': RuntimeError: x"), [
        ev(1, "run_started"),
        ev(2, "step_started", "a", step_type="tool", name="boom"),
        ev(3, "step_failed", "a", step_type="tool", status="failed",
           attrs={"error": "RuntimeError: x"}),
        ev(4, "run_failed", "a", status="failed"),
    ])
    second = builder.build(info(), [
        ev(5, "step_retried", "a", step_type="tool", attrs={"by": "ana", "attempt": 2}),
        ev(6, "step_started", "a", step_type="tool", name="boom"),
        ev(7, "step_completed", "a", step_type="tool", status="completed"),
        ev(8, "run_completed", status="completed"),
    ])
    steps = [s for s in first + second if s.name == "step a"]
    assert [s.attributes["master.step.attempt"] for s in steps] == [1, 2]
    assert steps[0].error == "RuntimeError: x" and steps[1].error is None
    roots = [s for s in first + second if s.parent_id is None]
    assert [r.span_id for r in roots] == [ids.root_span_id(RUN)] * 2
    assert roots[0].error == "step 'a': RuntimeError: x" and roots[1].error is None


def test_a_blocked_step_and_an_interrupted_one_are_error_spans() -> None:
    """A policy violation ends its step span (rule named); an interruption ends the open step."""
    blocked = SpanBuilder().build(info("blocked", "policy max_tool_calls"), [
        ev(1, "run_started"),
        ev(2, "step_started", "a", step_type="tool", name="echo"),
        ev(3, "policy_violation", "a", step_type="tool", status="blocked",
           attrs={"rule": "max_tool_calls", "message": "too many tool calls"}),
        ev(4, "run_blocked", "a", status="blocked"),
    ])
    step = next(s for s in blocked if s.name == "step a")
    assert step.error == "too many tool calls"
    assert step.attributes["master.policy.rule"] == "max_tool_calls"
    root = next(s for s in blocked if s.parent_id is None)
    assert root.error == "policy max_tool_calls" and root.attributes["master.status"] == "blocked"
    builder = SpanBuilder()
    builder.build(info("running"), [ev(1, "run_started"),
                                    ev(2, "step_started", "a", step_type="tool")])
    (cut,) = builder.build(
        info("interrupted"), [ev(3, "run_interrupted", "a", status="interrupted")]
    )
    assert cut.name == "step a" and cut.attributes["error.type"] == "interrupted"


def test_free_text_is_redacted_and_content_stays_out_unless_asked() -> None:
    """Error messages go through the scrubber; step outputs appear only with capture_content."""
    events = [ev(1, "step_started", "a", step_type="tool"),
              ev(2, "step_failed", "a", step_type="tool", status="failed",
                 attrs={"error": "ValueError: mail x@y.z"})]
    scrub = lambda v: v.replace("x@y.z", "<EMAIL>") if isinstance(v, str) else v  # noqa: E731
    starts = {"a": StepStart(1, 1_000_000, {"secret": "out"})}
    (plain,) = SpanBuilder(scrub=scrub).build(info("failed"), events, starts=starts)
    assert plain.error == "ValueError: mail <EMAIL>"
    assert "master.step.output" not in plain.attributes
    (full,) = SpanBuilder(scrub=scrub, capture_content=True).build(
        info("failed"), events, starts=starts
    )
    assert full.attributes["master.step.output"] == '{"secret": "out"}'


def test_an_aborted_run_ends_its_root_without_an_error() -> None:
    """Aborting is a person's decision: the root ends, status aborted, no ERROR."""
    (root,) = SpanBuilder().build(
        info("aborted", "aborted by ana: not needed"),
        [ev(9, "run_aborted", status="aborted", attrs={"by": "ana", "reason": "not needed"})],
    )
    assert root.parent_id is None and root.error is None
    assert root.attributes["master.status"] == "aborted"
