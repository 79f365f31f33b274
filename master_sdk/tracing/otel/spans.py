"""Spans from committed trace events: one construction for live and past exports.

:class:`SpanBuilder` turns the trace events of a run — one commit's worth at a time, or a
whole stored trace at once — into :class:`SpanRecord` values: plain data, no OpenTelemetry
import, so the construction is tested without the ``otel`` extra. Every time comes from
the events' own timestamps, so spans built after the fact (a past run, a queue drained
late) are true.

The tree of one run (every span carries ``master.run_id``, ``master.product``,
``master.flow``; step spans and below also ``master.step_id``, ``master.step.type``,
``master.step.attempt``)::

    invoke_workflow {product}/{flow}          root; ends when the run ends
    ├── step {step_id}                        a tool, hitl or user_input step
    │   └── execute_tool {tool}               the tool call
    ├── invoke_agent {agent}                  an agent step
    │   └── chat {model}                      each model call (and each failed try)
    └── pause {step_id}                       the moment a run paused for a human

**The pause rule.** A span is exported when it ends. The root's id is derived from the run
id (:mod:`.ids`), so spans exported before a pause and after a resume — in any process —
sit in one trace under one root. The root span itself is exported when the run ends
(completed, rejected, failed, blocked, aborted); while a run waits, a backend shows its
finished steps and a ``pause`` span under a root that has not arrived yet. A ``hitl`` or
``user_input`` step span covers the wait, from the request to the decision. A failed run
that is later retried exports its root again when it ends anew (same id, later end).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

from master_sdk.tracing.otel import ids
from master_sdk.tracing.otel import semconv as sc

__all__ = [
    "EventLike",
    "RunInfo",
    "SpanBuilder",
    "SpanRecord",
    "SpanTree",
    "Starts",
    "StepRows",
    "StepStart",
]

AttrValue = str | bool | int | float
_RUN_END_STATUS = {
    "run_completed": "completed",
    "run_failed": "failed",
    "run_rejected": "rejected",
    "run_blocked": "blocked",
    "run_aborted": "aborted",
}
_RUN_END_EVENTS = frozenset(_RUN_END_STATUS)
_STEP_END_EVENTS = frozenset({"step_completed", "step_failed", "step_skipped"})
_ERROR_STATUSES = frozenset({"failed", "blocked", "interrupted", "error"})
_MAX_TEXT = 4096
_MAX_RUNS = 10_000  # runs whose open steps are remembered between commits
SpanT = TypeVar("SpanT")
# what each trace event does to the span tree
_STARTED, _STEP_END, _CALL, _PAUSE, _DECIDED, _RETRIED, _CUT, _END = range(8)
_CODES: dict[str, int] = {
    "step_started": _STARTED,
    **dict.fromkeys(_STEP_END_EVENTS, _STEP_END),
    **dict.fromkeys(("tool_called", "model_called", "model_retry"), _CALL),
    **dict.fromkeys(("approval_requested", "input_requested"), _PAUSE),
    "approval_decided": _DECIDED,
    "step_retried": _RETRIED,
    **dict.fromkeys(("policy_violation", "run_interrupted"), _CUT),
    **dict.fromkeys(_RUN_END_EVENTS, _END),
}
_NO_STARTS: Mapping[str, StepStart] = {}


class EventLike(Protocol):
    """A trace event with names (``memory.store.TraceEvent`` has this shape)."""

    @property
    def seq(self) -> int: ...
    @property
    def ts_us(self) -> int: ...
    @property
    def event(self) -> str: ...
    @property
    def step_id(self) -> str | None: ...
    @property
    def step_type(self) -> str | None: ...
    @property
    def name(self) -> str | None: ...
    @property
    def status(self) -> str | None: ...
    @property
    def duration_ms(self) -> float | None: ...
    @property
    def tokens_in(self) -> int | None: ...
    @property
    def tokens_out(self) -> int | None: ...
    @property
    def cost_usd(self) -> float | None: ...
    @property
    def attrs(self) -> dict[str, Any] | None: ...


class RunInfo(NamedTuple):
    """What the root span says about a run: its record as of the commit (live) or as
    stored (past export). A named tuple: the commit hook makes one per commit, on the
    run's own thread, so it must cost next to nothing."""

    run_id: str
    product: str
    flow: str
    status: str
    created_us: int
    error: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    steps_used: int = 0
    tool_calls: int = 0
    model_calls: int = 0
    inputs: Any = None
    output: Any = None


class StepStart(NamedTuple):
    """A step attempt as the store records it: when a step ended in another process's
    commit than the one that started it, this is where its start comes from."""

    attempt: int
    started_us: int | None
    output: Any = None


class Starts(Protocol):
    """What :meth:`SpanTree.build` reads of a commit's step attempts: a
    ``Mapping[str, StepStart]`` (by step id), or :class:`StepRows`."""

    def get(self, step_id: str, /) -> StepStart | None: ...
    def __contains__(self, step_id: object, /) -> bool: ...


class StepRows(tuple[tuple[Any, ...], ...]):
    """A commit's step attempts as ``(step_id, attempt, started_us[, output])`` rows, read
    by step id like a ``Mapping[str, StepStart]``. The commit hook makes one per commit on
    the run's thread — ``StepRows(map(getter, steps))``, no Python frame — and the builder
    seldom reads it (only for a step it did not see start)."""

    __slots__ = ()

    def get(self, step_id: str, /) -> StepStart | None:
        """The attempt of ``step_id`` this commit wrote, if any."""
        for row in self:
            if row[0] == step_id:
                return StepStart(*row[1:])
        return None

    def __contains__(self, step_id: object, /) -> bool:
        return any(row[0] == step_id for row in self)


@dataclass(slots=True)
class SpanRecord:
    """One finished span, as plain data (``error``: status ERROR with that message)."""

    name: str
    trace_id: int
    span_id: int
    parent_id: int | None
    kind: str  # "internal" or "client"
    start_ns: int
    end_ns: int
    attributes: dict[str, AttrValue]
    error: str | None = None


class _OpenStep:
    """A step attempt whose span has not ended. The agent-only fields stay class defaults
    until a model call sets them (one made per step: five assignments, not twelve)."""

    provider: str | None = None
    request_model: str | None = None
    response_model: str | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    cost_usd: float | None = None
    decision: str | None = None

    def __init__(
        self, start_us: int, attempt: int, step_type: str | None, name: str | None, span_id: int
    ) -> None:
        self.start_us = start_us
        self.attempt = attempt
        self.step_type = step_type
        self.name = name
        self.span_id = span_id  # the attempt's span: the parent of its calls


@dataclass(slots=True)
class _RunState:
    run_id: str
    trace: int
    root: int
    open: dict[str, _OpenStep] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    wire: Any = None  # what a builder writing bytes keeps of the run (its encoded ids)


class SpanTree(Generic[SpanT]):
    """Follows a run's events and makes a span of type ``SpanT`` for each one that ends
    (see the module docstring): the bookkeeping shared by :class:`SpanBuilder`, which
    makes :class:`SpanRecord` values, and ``direct.DirectSpanBuilder``, which writes OTLP
    bytes.

    Feed a run's events in ``seq`` order, by commit (:meth:`build` keeps what a later
    commit needs: which steps are open since when) or all at once. One builder per
    consumer thread; it is not thread-safe.

    Args:
        semconv: ``latest``, ``legacy`` or ``both`` (:mod:`.semconv`).
        capture_content: add run inputs/outputs and step outputs (redacted).
        scrub: the workbench's redaction, applied to every free text that leaves.
    """

    def __init__(
        self,
        *,
        semconv: str = "latest",
        capture_content: bool = False,
        scrub: Callable[[Any], Any] | None = None,
    ) -> None:
        self.sc = sc.Semconv(semconv)
        self.capture_content = capture_content
        self.scrub: Callable[[Any], Any] = scrub or (lambda value: value)
        self._runs: OrderedDict[str, _RunState] = OrderedDict()

    def forget(self, run_id: str) -> None:
        """Drop what is remembered about a run (it paused or ended)."""
        self._runs.pop(run_id, None)

    def build(
        self,
        run: RunInfo,
        events: Sequence[EventLike],
        *,
        starts: Starts | None = None,
    ) -> list[SpanT]:
        """The spans that end within ``events`` (one commit of ``run``, or all of them).

        ``starts`` gives, by step id, the attempt the commit wrote (its start time and
        output), for a step that started in an earlier commit this builder did not see.
        """
        run_id = run.run_id
        state = self._runs.pop(run_id, None) or self._new_state(run)
        opened = state.open
        out: list[SpanT] = []
        known: Starts = starts if starts is not None else _NO_STARTS
        paused_or_ended = False
        closed: set[str] = set()
        codes = _CODES
        for event in events:
            code = codes.get(event.event)
            if code is None:
                continue
            step_id = event.step_id
            if step_id is not None:
                if code == _STARTED:
                    attempt = state.attempts.pop(step_id, 1)
                    opened[step_id] = _OpenStep(
                        event.ts_us,
                        attempt,
                        event.step_type,
                        event.name,
                        ids.step_span_id(run_id, step_id, attempt),
                    )
                    continue
                if code == _STEP_END:
                    step = opened.get(step_id) or self._step(state, step_id, event, known)
                    out.append(self._step_span(run, state, step_id, step, event, known))
                    del opened[step_id]
                    closed.add(step_id)
                    continue
                if code == _CALL:
                    step = opened.get(step_id) or self._step(state, step_id, event, known)
                    out.append(self._call_span(run, state, step_id, step, event))
                    continue
                if code == _DECIDED:
                    step = opened.get(step_id) or self._step(state, step_id, event, known)
                    step.decision = event.status
                    continue
                if code == _RETRIED:
                    number = (event.attrs or {}).get("attempt")
                    state.attempts[step_id] = int(number) if isinstance(number, int) else 1
                    continue
                if code == _CUT:
                    # a blocked or interrupted step has no step_* end event of its own
                    kind = event.event
                    if step_id in opened or (
                        step_id not in closed and (step_id in known or kind == "policy_violation")
                    ):
                        step = self._step(state, step_id, event, known)
                        out.append(self._step_span(run, state, step_id, step, event, known))
                        del opened[step_id]
                        closed.add(step_id)
                    if kind == "run_interrupted":
                        paused_or_ended = True
                    continue
            if code == _END:  # the run ends (whichever step it names)
                out.append(self._root_span(run, state, event))
                paused_or_ended = True
            elif code == _PAUSE:
                out.append(self._pause_span(run, state, event))
                paused_or_ended = True
        if not paused_or_ended or opened:
            runs = self._runs
            runs[run_id] = state
            if len(runs) > _MAX_RUNS:
                runs.popitem(last=False)
        return out

    # ------------------------------------------------------------------ spans

    def _new_state(self, run: RunInfo) -> _RunState:
        return _RunState(run.run_id, ids.trace_id(run.run_id), ids.root_span_id(run.run_id))

    @staticmethod
    def _base(run: RunInfo) -> dict[str, AttrValue]:
        """The attributes every span of a run starts with."""
        return {"master.run_id": run.run_id, "master.product": run.product, "master.flow": run.flow}

    @staticmethod
    def _step_attrs(step_id: str, step_type: str, attempt: int) -> dict[str, AttrValue]:
        """The attributes a step span and its calls add to :meth:`_base`."""
        return {
            "master.step_id": step_id,
            "master.step.type": step_type,
            "master.step.attempt": attempt,
        }

    @staticmethod
    def _step_base(
        run: RunInfo, step_id: str, step_type: str, attempt: int
    ) -> dict[str, AttrValue]:
        """:meth:`_base` and :meth:`_step_attrs` in one dictionary (one call, not two)."""
        return {
            "master.run_id": run.run_id,
            "master.product": run.product,
            "master.flow": run.flow,
            "master.step_id": step_id,
            "master.step.type": step_type,
            "master.step.attempt": attempt,
        }

    def _step(
        self,
        state: _RunState,
        step_id: str,
        event: EventLike,
        known: Starts,
    ) -> _OpenStep:
        step = state.open.get(step_id)
        if step is None:
            # started in a commit this builder did not see (another process, before a pause)
            start = known.get(step_id)
            if start is not None and start.started_us is not None:
                begin = start.started_us
            elif event.duration_ms is not None:
                begin = event.ts_us - int(event.duration_ms * 1000)
            else:
                begin = event.ts_us
            attempt = start.attempt if start is not None else 1
            step = _OpenStep(
                begin,
                attempt,
                event.step_type,
                event.name,
                ids.step_span_id(state.run_id, step_id, attempt),
            )
            state.open[step_id] = step
        return step

    def _call_span(
        self,
        run: RunInfo,
        state: _RunState,
        step_id: str,
        step: _OpenStep,
        event: EventLike,
    ) -> SpanT:
        raise NotImplementedError

    def _step_span(
        self,
        run: RunInfo,
        state: _RunState,
        step_id: str,
        step: _OpenStep,
        event: EventLike,
        known: Starts,
    ) -> SpanT:
        raise NotImplementedError

    def _pause_span(self, run: RunInfo, state: _RunState, event: EventLike) -> SpanT:
        raise NotImplementedError

    def _root_span(self, run: RunInfo, state: _RunState, event: EventLike) -> SpanT:
        raise NotImplementedError


class SpanBuilder(SpanTree[SpanRecord]):
    """Builds the spans that end in each batch of a run's events as :class:`SpanRecord`
    values (see :class:`SpanTree`, whose arguments it takes, and the module docstring).
    """

    def _call_span(
        self,
        run: RunInfo,
        state: _RunState,
        step_id: str,
        step: _OpenStep,
        event: EventLike,
    ) -> SpanRecord:
        attrs = self._step_base(run, step_id, event.step_type or step.step_type or "", step.attempt)
        attrs["master.event.seq"] = event.seq
        extra = event.attrs or {}
        error: str | None = None
        if event.event == "tool_called":
            tool = event.name or ""
            name = f"execute_tool {tool}"
            kind = "internal"
            attrs[sc.OPERATION] = "execute_tool"
            attrs[sc.TOOL_NAME] = tool
            attrs[sc.TOOL_TYPE] = "function"
            if event.status == "error":
                error = self._text(extra.get("error") or "tool call failed")
                attrs[sc.ERROR_TYPE] = _exception_name(error)
        else:
            model = str(extra.get("model") or event.name or "")
            provider = extra.get("provider")
            name = f"chat {model}"
            kind = "client"
            attrs[sc.OPERATION] = "chat"
            attrs["master.model"] = event.name or ""
            self.sc.provider(attrs, str(provider) if provider else None)
            attrs[sc.REQUEST_MODEL] = model
            response_model = str(extra.get("response_model") or model)
            attrs[sc.RESPONSE_MODEL] = response_model
            self.sc.usage(attrs, event.tokens_in, event.tokens_out, event.cost_usd)
            if extra.get("finish_reason"):
                attrs[sc.RESPONSE_FINISH_REASONS] = str(extra["finish_reason"])
            for key in ("usage_estimated", "price_unknown"):
                if extra.get(key):
                    attrs[f"master.{key}"] = True
            if extra.get("cached_tokens"):
                attrs["gen_ai.usage.cache_read.input_tokens"] = int(extra["cached_tokens"])
            if event.event == "model_retry":
                attrs["master.retry"] = True
            if event.status == "error":
                error = self._text(extra.get("error") or f"model call {extra.get('kind')}")
                attrs[sc.ERROR_TYPE] = str(extra.get("kind") or "_OTHER")
            _account(step, event, provider, model, response_model)
        end_us = event.ts_us
        start_us = end_us - int((event.duration_ms or 0.0) * 1000)
        return SpanRecord(
            name,
            state.trace,
            ids.event_span_id(run.run_id, event.seq),
            step.span_id,
            kind,
            start_us * 1000,
            end_us * 1000,
            attrs,
            error,
        )

    def _step_span(
        self,
        run: RunInfo,
        state: _RunState,
        step_id: str,
        step: _OpenStep,
        event: EventLike,
        known: Starts,
    ) -> SpanRecord:
        step_type = event.step_type or step.step_type or ""
        attrs = self._step_base(run, step_id, step_type, step.attempt)
        extra = event.attrs or {}
        status = event.status or ("interrupted" if event.event == "run_interrupted" else "")
        if event.event == "policy_violation":
            status = "blocked"
            attrs["master.policy.rule"] = str(extra.get("rule") or "")
        attrs["master.step.status"] = status
        if step.decision:
            attrs["master.approval.decision"] = step.decision
        if step_type == "agent":
            name = f"invoke_agent {step.name or step_id}"
            attrs[sc.OPERATION] = "invoke_agent"
            attrs[sc.AGENT_NAME] = step.name or step_id
            self.sc.provider(attrs, step.provider)
            if step.request_model:
                attrs[sc.REQUEST_MODEL] = step.request_model
            if step.response_model:
                attrs[sc.RESPONSE_MODEL] = step.response_model
            self.sc.usage(attrs, step.tokens_in, step.tokens_out, step.cost_usd)
        else:
            name = f"step {step_id}"
        error: str | None = None
        if status in _ERROR_STATUSES:
            if event.event == "policy_violation":
                message = extra.get("message") or f"policy {extra.get('rule')}"
            elif event.event == "run_interrupted":
                message = "the process running this step ended before it finished"
            else:
                message = extra.get("error") or status
            error = self._text(message)
            attrs[sc.ERROR_TYPE] = (
                "policy_violation" if event.event == "policy_violation" else status
            )
        if self.capture_content:
            start = known.get(step_id)
            if start is not None and start.output is not None:
                attrs["master.step.output"] = self._json(start.output)
        if event.event == "step_skipped" and extra.get("manual"):
            # skipped by hand after the attempt's own span ended (interrupted or failed)
            span_id = ids.event_span_id(run.run_id, event.seq)
            attrs["master.event.seq"] = event.seq
        else:
            span_id = step.span_id
        return SpanRecord(
            name,
            state.trace,
            span_id,
            state.root,
            "internal",
            step.start_us * 1000,
            max(event.ts_us, step.start_us) * 1000,
            attrs,
            error,
        )

    def _pause_span(self, run: RunInfo, state: _RunState, event: EventLike) -> SpanRecord:
        attrs = self._base(run)
        attrs["master.step_id"] = event.step_id or ""
        attrs["master.step.type"] = event.step_type or ""
        attrs["master.pause"] = "approval" if event.event == "approval_requested" else "input"
        attrs["master.event.seq"] = event.seq
        return SpanRecord(
            f"pause {event.step_id}",
            state.trace,
            ids.event_span_id(run.run_id, event.seq),
            state.root,
            "internal",
            event.ts_us * 1000,
            event.ts_us * 1000,
            attrs,
        )

    def _root_span(self, run: RunInfo, state: _RunState, event: EventLike) -> SpanRecord:
        attrs = self._base(run)
        workflow = f"{run.product}/{run.flow}"
        attrs[sc.OPERATION] = "invoke_workflow"
        attrs[sc.WORKFLOW_NAME] = workflow
        status = _RUN_END_STATUS.get(event.event, run.status)
        attrs["master.status"] = status
        attrs["master.steps"] = run.steps_used
        attrs["master.tool_calls"] = run.tool_calls
        attrs["master.model_calls"] = run.model_calls
        self.sc.usage(attrs, run.tokens_in, run.tokens_out, run.cost_usd)
        error: str | None = None
        if status in _ERROR_STATUSES:
            # the run's error is the latest one: an earlier end of a retried run has none
            error = self._text(run.error if status == run.status and run.error else status)
            attrs[sc.ERROR_TYPE] = status
        if self.capture_content:
            if run.inputs is not None:
                attrs["master.run.inputs"] = self._json(run.inputs)
            if run.output is not None:
                attrs["master.run.output"] = self._json(run.output)
        start_us = min(run.created_us, event.ts_us)
        return SpanRecord(
            f"invoke_workflow {workflow}",
            state.trace,
            state.root,
            None,
            "internal",
            start_us * 1000,
            event.ts_us * 1000,
            attrs,
            error,
        )

    # ------------------------------------------------------------------ text

    def _text(self, value: Any) -> str:
        text = str(self.scrub(str(value)))
        return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 1] + "…"

    def _json(self, value: Any) -> str:
        text = json.dumps(self.scrub(value), ensure_ascii=False, default=str)
        return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 1] + "…"


def _account(
    step: _OpenStep, event: EventLike, provider: Any, model: str, response_model: str
) -> None:
    """What an agent step span reports of its model calls: the first model and provider,
    the last response model, the sums of usage (failed tries count no usage)."""
    step.provider = step.provider or (str(provider) if provider else None)
    step.request_model = step.request_model or model
    step.response_model = response_model
    if event.event == "model_called":
        step.tokens_in = (step.tokens_in or 0) + (event.tokens_in or 0)
        step.tokens_out = (step.tokens_out or 0) + (event.tokens_out or 0)
        if event.cost_usd is not None:
            step.cost_usd = (step.cost_usd or 0.0) + event.cost_usd


def _exception_name(message: str) -> str:
    """``ValueError`` from ``"ValueError: bad"``; ``_OTHER`` when there is none."""
    head, sep, _ = message.partition(":")
    return head if sep and head.isidentifier() else "_OTHER"
