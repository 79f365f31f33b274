"""The live export's direct OTLP writer against the record path, field by field.

:class:`DirectSpanBuilder` writes spans as protobuf bytes from templates; the record path
(:class:`SpanBuilder` then :meth:`Encoder.request`) builds every attribute one by one. Both
requests are decoded with the official ``opentelemetry-proto`` classes and every field of
every span (ids, parent, name, kind, times, status, each attribute with its value type) is
compared, over hand-written runs covering each kind of span and its error, retry, pause,
content and semconv variants, and over random event sequences.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from master_sdk.tracing.otel.direct import DirectSpanBuilder
from master_sdk.tracing.otel.hook import NamedEvent
from master_sdk.tracing.otel.spans import RunInfo, SpanBuilder, StepRows, StepStart
from master_sdk.tracing.otel.wire import Encoder

RUN = "01a2b3c4d5e6f70812345678abcdef01"
RESOURCE = {"service.name": "svc", "service.version": "1.2"}
SCOPE = ("master_sdk", "1.2")


def ev(seq: int, event: str, step: str | None = None, **fields: Any) -> NamedEvent:
    values: dict[str, Any] = {
        "step_type": None, "name": None, "status": None, "duration_ms": None,
        "tokens_in": None, "tokens_out": None, "cost_usd": None, "attrs": None,
    }  # fmt: skip
    values.update(fields)
    return NamedEvent(seq, 1_000_000 * seq + 17, event, step, **values)


def info(status: str = "completed", error: str | None = None, **more: Any) -> RunInfo:
    values: dict[str, Any] = {
        "created_us": 1_000_000, "error": error, "tokens_in": 120, "tokens_out": 45,
        "cost_usd": 0.00123, "steps_used": 3, "tool_calls": 1, "model_calls": 2,
    }  # fmt: skip
    run_id = more.pop("run_id", RUN)
    values.update(more)
    return RunInfo(run_id, "demo", "flow", status, **values)


def decoded(body: bytes) -> list[dict[str, Any]]:
    """Every field of every span of a request, attribute values with their protobuf type."""
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    out = []
    (resource_spans,) = request.resource_spans
    resource = {kv.key: kv.value.string_value for kv in resource_spans.resource.attributes}
    assert resource == RESOURCE
    (scope_spans,) = resource_spans.scope_spans
    assert (scope_spans.scope.name, scope_spans.scope.version) == SCOPE
    for span in scope_spans.spans:
        attrs = {}
        for kv in span.attributes:
            which = kv.value.WhichOneof("value")
            assert kv.key not in attrs, f"{kv.key} twice in {span.name}"
            attrs[kv.key] = (which, getattr(kv.value, which))
        out.append(
            {
                "trace_id": span.trace_id.hex(),
                "span_id": span.span_id.hex(),
                "parent": span.parent_span_id.hex(),
                "name": span.name,
                "kind": span.kind,
                "start": span.start_time_unix_nano,
                "end": span.end_time_unix_nano,
                "status": (span.status.code, span.status.message),
                "attributes": attrs,
                "others": (span.trace_state, span.flags, len(span.events), len(span.links)),
            }
        )
    return out


Commits = Sequence[tuple[RunInfo, list[NamedEvent], dict[str, StepStart] | None]]


def both_paths(
    commits: Commits, **options: Any
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The commits through the record path and through the direct writer, decoded."""
    scrub = options.pop("scrub", None)
    records = SpanBuilder(scrub=scrub, **options)
    encoder = Encoder(RESOURCE, SCOPE)
    direct = DirectSpanBuilder(Encoder(RESOURCE, SCOPE), scrub=scrub, **options)
    built, written = [], []
    for run, events, starts in commits:
        built += records.build(run, events, starts=starts)
        # the live export reads the commit's step rows as the hook copies them
        rows = None
        if starts is not None:
            rows = StepRows((step_id, *start) for step_id, start in starts.items())
        written += direct.build(run, events, starts=rows)
    assert len(built) == len(written)
    return decoded(encoder.request(built)), decoded(direct.encoder.request_entries(written))


def agent_run() -> list[NamedEvent]:
    """A run with every kind of span: tool, approval pause, agent with model calls."""
    return [
        ev(1, "run_started"),
        ev(2, "step_started", "echo", step_type="tool", name="echo"),
        ev(3, "tool_called", "echo", step_type="tool", name="echo", status="ok",
           duration_ms=1.5),
        ev(4, "step_completed", "echo", step_type="tool", name="echo", status="completed"),
        ev(5, "step_started", "approval", step_type="hitl"),
        ev(6, "approval_requested", "approval", step_type="hitl"),
        ev(7, "approval_decided", "approval", step_type="hitl", status="approved"),
        ev(8, "step_completed", "approval", step_type="hitl", status="completed"),
        ev(9, "step_started", "summary", step_type="agent", name="summarizer"),
        ev(10, "model_retry", "summary", step_type="agent", name="default", status="error",
           duration_ms=3.0, attrs={"model": "m-1", "provider": "openai", "kind": "rate_limit",
                                   "error": "slow down for mail x@y.z"}),
        ev(11, "model_retry", "summary", step_type="agent", name="default", status="ok",
           duration_ms=2.0, tokens_in=5, tokens_out=0,
           attrs={"model": "m-1", "provider": "openai"}),
        ev(12, "model_called", "summary", step_type="agent", name="default", status="ok",
           duration_ms=12.25, tokens_in=100, tokens_out=40, cost_usd=0.0011,
           attrs={"model": "m-1", "provider": "openai", "response_model": "m-1-2025",
                  "finish_reason": "stop", "usage_estimated": True, "price_unknown": True,
                  "cached_tokens": 20}),
        ev(13, "model_called", "summary", step_type="agent", name="default", status="ok",
           duration_ms=0.5, tokens_in=20_000, tokens_out=5, cost_usd=0.0,
           attrs={"model": "m-1"}),
        ev(14, "model_called", "summary", step_type="agent", name="cheap", status="ok",
           tokens_in=None, tokens_out=None, cost_usd=None, attrs=None),
        ev(15, "step_completed", "summary", step_type="agent", name="summarizer",
           status="completed"),
        ev(16, "run_completed", status="completed"),
    ]  # fmt: skip


@pytest.mark.parametrize("semconv", ["latest", "legacy", "both"])
def test_a_whole_run_decodes_field_by_field_as_the_record_path(semconv: str) -> None:
    """Every kind of span, each semconv set: the same spans, field by field."""
    old, new = both_paths([(info(), agent_run(), None)], semconv=semconv)
    assert old == new
    assert len(new) == 11
    chat = next(s for s in new if s["attributes"].get("master.event.seq") == ("int_value", 12))
    assert chat["attributes"]["gen_ai.usage.cache_read.input_tokens"] == ("int_value", 20)
    assert chat["attributes"]["gen_ai.usage.cost"] == ("double_value", 0.0011)


def test_a_run_in_commits_with_a_pause_resumed_elsewhere_is_the_same() -> None:
    """By commit, and resumed by a fresh builder that only has the stored step starts."""
    events = agent_run()
    first = [(info("running"), events[:3], None), (info("waiting_approval"), events[3:6], None)]
    starts = {"approval": StepStart(1, 5_000_017)}
    later = [(info("running"), events[6:8], starts), (info(), events[8:], None)]
    whole_old, whole_new = both_paths(first + later)
    assert whole_old == whole_new
    # another process: a fresh builder for the part after the pause
    old_a, new_a = both_paths(first)
    old_b, new_b = both_paths(later)
    assert old_a + old_b == new_a + new_b
    assert {s["trace_id"] for s in new_a + new_b} == {new_a[0]["trace_id"]}


def test_errors_retries_blocks_interruptions_and_manual_skips_are_the_same() -> None:
    """The spans the writer hands to the record path: error messages (redacted), policy
    blocks, interruptions, retried steps and runs, a step skipped by hand, aborted and
    rejected runs."""
    scrub = lambda v: v.replace("x@y.z", "<EMAIL>") if isinstance(v, str) else v  # noqa: E731
    commits = [
        (info("failed", "step 'a': ValueError: x@y.z"), [
            ev(1, "run_started"),
            ev(2, "step_started", "a", step_type="tool", name="boom"),
            ev(3, "tool_called", "a", step_type="tool", name="boom", status="error",
               duration_ms=2.0, attrs={"error": "ValueError: x@y.z"}),
            ev(4, "step_failed", "a", step_type="tool", status="failed",
               attrs={"error": "ValueError: x@y.z"}),
            ev(5, "run_failed", "a", status="failed"),
        ], None),
        (info("completed"), [
            ev(6, "step_retried", "a", step_type="tool", attrs={"by": "ana", "attempt": 2}),
            ev(7, "step_started", "a", step_type="tool", name="boom"),
            ev(8, "tool_called", "a", step_type="tool", name="boom", status="ok"),
            ev(9, "step_completed", "a", step_type="tool", status="completed"),
            ev(10, "run_completed", status="completed"),
        ], None),
        (info("blocked", "policy max_tool_calls", run_id=RUN[::-1]), [
            ev(1, "run_started"),
            ev(2, "step_started", "b", step_type="tool", name="echo"),
            ev(3, "policy_violation", "b", step_type="tool", status="blocked",
               attrs={"rule": "max_tool_calls", "message": "too many"}),
            ev(4, "run_blocked", "b", status="blocked"),
        ], None),
        (info("interrupted", run_id="r-interrupted"), [
            ev(1, "run_started"),
            ev(2, "step_started", "c", step_type="agent", name="writer"),
            ev(3, "run_interrupted", "c", status="interrupted"),
        ], None),
        (info("completed", run_id="r-interrupted"), [
            ev(4, "step_skipped", "c", step_type="agent", status="skipped",
               attrs={"manual": True}),
            ev(5, "run_completed", status="completed"),
        ], None),
        (info("aborted", "aborted by ana", run_id="r-aborted"), [
            ev(1, "step_started", "d", step_type="user_input"),
            ev(2, "input_requested", "d", step_type="user_input"),
            ev(3, "run_aborted", status="aborted", attrs={"by": "ana"}),
        ], None),
        (info("rejected", run_id="r-rejected"), [
            ev(1, "step_started", "e", step_type="hitl"),
            ev(2, "approval_decided", "e", step_type="hitl", status="rejected"),
            ev(3, "step_completed", "e", step_type="hitl", status="rejected"),
            ev(4, "run_rejected", status="rejected"),
        ], None),
    ]  # fmt: skip
    old, new = both_paths(commits, scrub=scrub, semconv="both")
    assert old == new
    errors = [s for s in new if s["status"][0] == 2]
    assert errors and all("x@y.z" not in s["status"][1] for s in errors)


def test_content_capture_and_large_numbers_are_the_same() -> None:
    """Captured (redacted) content goes through the record path; sequence numbers, counts
    and tokens beyond two varint bytes and negative ones are written alike."""
    scrub = lambda v: "<R>" if v == "secret" else v  # noqa: E731
    run = info(inputs={"text": "secret"}, output={"reply": "ok"}, tokens_in=10**12,
               steps_used=2**40, tool_calls=-3)  # fmt: skip
    events = [
        ev(70_000, "run_started"),
        ev(70_001, "step_started", "a", step_type="tool", name="echo"),
        ev(70_002, "tool_called", "a", step_type="tool", name="echo", status="ok"),
        ev(70_003, "step_completed", "a", step_type="tool", status="completed"),
        ev(70_004, "step_started", "b", step_type="agent", name="w"),
        ev(70_005, "model_called", "b", step_type="agent", name="m", status="ok",
           tokens_in=2**33, tokens_out=-1, cost_usd=1e300, attrs={"model": "big"}),
        ev(70_006, "step_completed", "b", step_type="agent", status="completed"),
        ev(70_007, "run_completed", status="completed"),
    ]  # fmt: skip
    starts = {"a": StepStart(1, 70_001_000_000, "secret"), "b": StepStart(1, None, None)}
    for capture in (False, True):
        old, new = both_paths([(run, events, starts)], capture_content=capture, scrub=scrub)
        assert old == new
        root = next(s for s in new if s["parent"] == "")
        assert ("master.run.inputs" in root["attributes"]) is capture


VOCABULARY = [
    "run_started", "step_started", "step_started", "tool_called", "model_called",
    "model_retry", "approval_requested", "input_requested", "approval_decided",
    "step_completed", "step_completed", "step_failed", "step_skipped", "step_retried",
    "policy_violation", "run_interrupted", "run_completed", "run_failed", "run_rejected",
    "run_blocked", "run_aborted",
]  # fmt: skip


def random_event(rng: random.Random, seq: int) -> NamedEvent:
    step = rng.choice(["a", "b", "c", None])
    attrs = rng.choice([
        None, {}, {"error": "E: x"}, {"attempt": rng.randint(1, 3)}, {"manual": True},
        {"model": rng.choice(["m", "n"]), "provider": rng.choice([None, "p"]),
         "response_model": rng.choice([None, "m2"]), "finish_reason": rng.choice([None, "stop"]),
         "usage_estimated": rng.random() < 0.3, "cached_tokens": rng.choice([0, 7]),
         "kind": "timeout"},
        {"rule": "r", "message": "no"},
    ])  # fmt: skip
    return NamedEvent(
        seq,
        1_700_000_000_000_000 + 1_000 * seq + rng.randint(0, 999),
        rng.choice(VOCABULARY),
        step,
        rng.choice([None, "tool", "agent", "hitl", "user_input"]),
        rng.choice([None, "echo", "w"]),
        rng.choice([None, "ok", "error", "completed", "failed", "skipped", "approved"]),
        rng.choice([None, 0.0, 1.25, 3000.0]),
        rng.choice([None, 0, 3, 300]),
        rng.choice([None, 0, 4]),
        rng.choice([None, 0.0, 0.25]),
        attrs,
    )


@pytest.mark.parametrize("seed", range(40))
def test_random_event_sequences_are_the_same(seed: int) -> None:
    """Whatever order events come in, split into commits at random."""
    rng = random.Random(seed)
    commits = []
    seq = 0
    for run_index in range(3):
        run_id = f"run-{seed}-{run_index}"
        for _ in range(rng.randint(1, 4)):
            events = []
            for _ in range(rng.randint(1, 8)):
                seq += 1
                events.append(random_event(rng, seq))
            status = rng.choice(["running", "completed", "failed", "blocked", "aborted"])
            run = info(status, rng.choice([None, "boom"]), run_id=run_id,
                       inputs=rng.choice([None, {"x": 1}]))  # fmt: skip
            starts = {
                name: StepStart(2, rng.choice([None, 5]), rng.choice([None, "o"]))
                for name in rng.sample(["a", "b", "c"], rng.randint(1, 3))
            }
            commits.append((run, events, rng.choice([None, starts])))
    for semconv, capture in (("latest", False), ("both", True)):
        old, new = both_paths(commits, semconv=semconv, capture_content=capture)
        assert old == new
