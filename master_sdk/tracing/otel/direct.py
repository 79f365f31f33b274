"""Spans written straight as OTLP bytes from committed events: the live export's builder.

:class:`DirectSpanBuilder` follows a run's events exactly as :class:`~.spans.SpanBuilder`
does (the same :class:`~.spans.SpanTree` bookkeeping) but makes no attribute dictionary
and no :class:`~.spans.SpanRecord`: each span is written as its serialized ``Span``
message (an element of ``ScopeSpans.spans``, :func:`.wire.entry`), ready to be joined into
a request. Most of a span never changes between runs of a flow — its name and kind, the
product, flow, step id and type, the operation, tool, agent and model names, the
provider, the statuses — so that part is encoded once per distinct value set and kept;
per span only the ids, the times, the sequence number, the run id and the token, cost and
count figures are written. Spans this does not template (errors with their redacted
message, captured content, a step skipped by hand) are built by a :class:`SpanBuilder`
on the same run state and encoded attribute by attribute, so every span is what the
record path makes; ``tests/unit/test_otel_direct.py`` decodes both with the official
protobuf classes and compares them field by field.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from typing import Any

from master_sdk.tracing.otel import ids
from master_sdk.tracing.otel import semconv as sc
from master_sdk.tracing.otel.ids import sha256
from master_sdk.tracing.otel.spans import (
    _ERROR_STATUSES,
    _RUN_END_STATUS,
    EventLike,
    RunInfo,
    SpanBuilder,
    SpanTree,
    Starts,
    _account,
    _OpenStep,
    _RunState,
)
from master_sdk.tracing.otel.wire import (
    END,
    SMALL_VARINTS,
    START,
    T_PARENT,
    T_SPAN,
    T_TRACE,
    Encoder,
    attr_name,
    double_attr_prefix,
    entry_head,
    int_attr_prefixes,
    span_times,
    str_attr,
    varint,
)

__all__ = ["DirectSpanBuilder"]

_CONST_LIMIT = 20_000  # distinct constant parts kept (a few per step of each flow)
_double = struct.Struct("<d").pack
_NO_ATTRS: Mapping[str, Any] = {}
_RUN_ID = attr_name("master.run_id")
_small = SMALL_VARINTS.get
_ZERO8, _ONE8 = bytes(8), (1).to_bytes(8, "big")  # a span id is never zero (.ids)
_HEADS = 4096  # spans written here are a few hundred bytes: their entry heads, ready
_ENTRY_HEADS = tuple(entry_head(size) for size in range(_HEADS))


class DirectSpanBuilder(SpanTree[bytes]):
    """Builds the spans that end in each batch of a run's events as serialized OTLP
    ``Span`` entries (see the module docstring).

    Args:
        encoder: the request encoder (its attribute cache is shared).
        semconv, capture_content, scrub: as :class:`~.spans.SpanTree` takes them.
    """

    def __init__(
        self,
        encoder: Encoder,
        *,
        semconv: str = "latest",
        capture_content: bool = False,
        scrub: Callable[[Any], Any] | None = None,
    ) -> None:
        super().__init__(semconv=semconv, capture_content=capture_content, scrub=scrub)
        self.encoder = encoder
        # the spans written attribute by attribute, on the same run state
        self.records = SpanBuilder(
            semconv=semconv, capture_content=capture_content, scrub=self.scrub
        )
        self._consts: dict[Any, bytes] = {}
        self._seq = int_attr_prefixes("master.event.seq")
        self._counts = tuple(
            int_attr_prefixes(key)
            for key in ("master.steps", "master.tool_calls", "master.model_calls")
        )
        self._legacy = self.sc.legacy
        self._tokens_in = int_attr_prefixes("gen_ai.usage.input_tokens")
        self._tokens_out = int_attr_prefixes("gen_ai.usage.output_tokens")
        self._prompt = int_attr_prefixes("gen_ai.usage.prompt_tokens")
        self._completion = int_attr_prefixes("gen_ai.usage.completion_tokens")
        self._cost = double_attr_prefix(sc.COST)
        self._cached = int_attr_prefixes("gen_ai.usage.cache_read.input_tokens")

    # ------------------------------------------------------------------ pieces

    def _new_state(self, run: RunInfo) -> _RunState:
        state = super()._new_state(run)
        pair = self.encoder.pair
        key = ("base", run.product, run.flow)
        shared = self._consts.get(key)
        if shared is None:
            shared = self._keep(
                key, pair("master.product", run.product) + pair("master.flow", run.flow)
            )
        # the trace id field and the span id tag; the run's own attributes; the root's id;
        # what the id of a span made from an event hashes, before the event's seq
        state.wire = (
            T_TRACE + state.trace.to_bytes(16, "big") + T_SPAN,
            str_attr(_RUN_ID, run.run_id) + shared,
            state.root.to_bytes(8, "big"),
            ids.event_span_prefix(run.run_id),
        )
        return state

    def _keep(self, key: Any, value: bytes) -> bytes:
        if len(self._consts) >= _CONST_LIMIT:
            self._consts.clear()
        self._consts[key] = value
        return value

    def _const(self, key: Any, name: str, kind: str, attrs: Mapping[str, Any]) -> bytes:
        """Name, kind and the constant attributes, encoded once per ``key``."""
        pair = self.encoder.pair
        encoded = self.encoder.head(name, kind) + b"".join(pair(k, v) for k, v in attrs.items())
        return self._keep(key, encoded)

    def _usage(self, tokens_in: int | None, tokens_out: int | None, cost: float | None) -> bytes:
        """The token counts and cost, as :meth:`.semconv.Semconv.usage` sets them."""
        out = b""
        if tokens_in is not None:
            value = _small(tokens_in) or varint(int(tokens_in))
            out = self._tokens_in[len(value)] + value
            if self._legacy:
                out += self._prompt[len(value)] + value
        if tokens_out is not None:
            value = _small(tokens_out) or varint(int(tokens_out))
            out += self._tokens_out[len(value)] + value
            if self._legacy:
                out += self._completion[len(value)] + value
        if cost is not None:
            out += self._cost + _double(float(cost))
        return out

    # ------------------------------------------------------------------ spans

    def _call_span(
        self,
        run: RunInfo,
        state: _RunState,
        step_id: str,
        step: _OpenStep,
        event: EventLike,
    ) -> bytes:
        if event.status == "error":
            return self.encoder.entry(self.records._call_span(run, state, step_id, step, event))
        step_type = event.step_type or step.step_type or ""
        seq = event.seq
        number = _small(seq) or varint(seq)
        variable = self._seq[len(number)] + number
        if event.event == "tool_called":
            tool = event.name or ""
            key: tuple[Any, ...] = ("tool", step_id, step_type, step.attempt, tool)
            const = self._consts.get(key)
            if const is None:
                const = self._const(
                    key,
                    f"execute_tool {tool}",
                    "internal",
                    {
                        **self._step_attrs(step_id, step_type, step.attempt),
                        sc.OPERATION: "execute_tool",
                        sc.TOOL_NAME: tool,
                        sc.TOOL_TYPE: "function",
                    },
                )
        else:
            extra = event.attrs or _NO_ATTRS
            model = str(extra.get("model") or event.name or "")
            provider = extra.get("provider")
            response_model = str(extra.get("response_model") or model)
            finish = extra.get("finish_reason")
            key = (
                event.event,
                step_id,
                step_type,
                step.attempt,
                event.name or "",
                model,
                str(provider) if provider else None,
                response_model,
                str(finish) if finish else None,
                bool(extra.get("usage_estimated")),
                bool(extra.get("price_unknown")),
            )
            const = self._consts.get(key)
            if const is None:
                const = self._chat_const(key)
            variable += self._usage(event.tokens_in, event.tokens_out, event.cost_usd)
            cached = extra.get("cached_tokens")
            if cached:
                number = _small(cached) or varint(int(cached))
                variable += self._cached[len(number)] + number
            _account(step, event, provider, model, response_model)
        end_us = event.ts_us
        duration = event.duration_ms
        start_us = end_us - int(duration * 1000) if duration else end_us
        head, base, _root, event_prefix = state.wire
        span_id = sha256(event_prefix + b"%d" % seq).digest()[:8]
        body = b"".join(
            (
                head,
                span_id if span_id != _ZERO8 else _ONE8,
                T_PARENT,
                step.span_id.to_bytes(8, "big"),
                const,
                span_times(START, start_us * 1000, END, end_us * 1000),
                base,
                variable,
            )
        )
        size = len(body)
        return (_ENTRY_HEADS[size] if size < _HEADS else entry_head(size)) + body

    def _chat_const(self, key: tuple[Any, ...]) -> bytes:
        (kind, step_id, step_type, attempt, name, model, provider, response, finish,
         estimated, unknown) = key  # fmt: skip
        attrs: dict[str, Any] = self._step_attrs(step_id, step_type, attempt)
        attrs[sc.OPERATION] = "chat"
        attrs["master.model"] = name
        self.sc.provider(attrs, provider)
        attrs[sc.REQUEST_MODEL] = model
        attrs[sc.RESPONSE_MODEL] = response
        if finish:
            attrs[sc.RESPONSE_FINISH_REASONS] = finish
        if estimated:
            attrs["master.usage_estimated"] = True
        if unknown:
            attrs["master.price_unknown"] = True
        if kind == "model_retry":
            attrs["master.retry"] = True
        return self._const(key, f"chat {model}", "client", attrs)

    def _step_span(
        self,
        run: RunInfo,
        state: _RunState,
        step_id: str,
        step: _OpenStep,
        event: EventLike,
        known: Starts,
    ) -> bytes:
        kind = event.event
        status = event.status or ("interrupted" if kind == "run_interrupted" else "")
        if (
            kind == "policy_violation"
            or status in _ERROR_STATUSES
            or (kind == "step_skipped" and (event.attrs or _NO_ATTRS).get("manual"))
            or (self.capture_content and _has_output(known, step_id))
        ):
            return self.encoder.entry(
                self.records._step_span(run, state, step_id, step, event, known)
            )
        step_type = event.step_type or step.step_type or ""
        if step_type == "agent":
            key: tuple[Any, ...] = (
                "step",
                step_id,
                step_type,
                step.attempt,
                status,
                step.decision,
                step.name,
                step.provider,
                step.request_model,
                step.response_model,
            )
            variable = self._usage(step.tokens_in, step.tokens_out, step.cost_usd)
        else:
            key = ("step", step_id, step_type, step.attempt, status, step.decision)
            variable = b""
        const = self._consts.get(key)
        if const is None:
            const = self._step_const(key)
        head, base, root, _prefix = state.wire
        start_us = step.start_us
        end_us = event.ts_us
        body = b"".join(
            (
                head,
                step.span_id.to_bytes(8, "big"),
                T_PARENT,
                root,
                const,
                span_times(START, start_us * 1000, END, max(end_us, start_us) * 1000),
                base,
                variable,
            )
        )
        size = len(body)
        return (_ENTRY_HEADS[size] if size < _HEADS else entry_head(size)) + body

    def _step_const(self, key: tuple[Any, ...]) -> bytes:
        step_id, step_type, attempt, status, decision = key[1:6]
        attrs: dict[str, Any] = self._step_attrs(step_id, step_type, attempt)
        attrs["master.step.status"] = status
        if decision:
            attrs["master.approval.decision"] = decision
        if step_type != "agent":
            return self._const(key, f"step {step_id}", "internal", attrs)
        name, provider, request_model, response_model = key[6:]
        attrs[sc.OPERATION] = "invoke_agent"
        attrs[sc.AGENT_NAME] = name or step_id
        self.sc.provider(attrs, provider)
        if request_model:
            attrs[sc.REQUEST_MODEL] = request_model
        if response_model:
            attrs[sc.RESPONSE_MODEL] = response_model
        return self._const(key, f"invoke_agent {name or step_id}", "internal", attrs)

    def _pause_span(self, run: RunInfo, state: _RunState, event: EventLike) -> bytes:
        key = ("pause", event.event, event.step_id, event.step_type)
        const = self._consts.get(key)
        if const is None:
            const = self._const(
                key,
                f"pause {event.step_id}",
                "internal",
                {
                    "master.step_id": event.step_id or "",
                    "master.step.type": event.step_type or "",
                    "master.pause": "approval" if event.event == "approval_requested" else "input",
                },
            )
        seq = event.seq
        number = _small(seq) or varint(seq)
        moment = event.ts_us * 1000
        head, base, root, event_prefix = state.wire
        span_id = sha256(event_prefix + b"%d" % seq).digest()[:8]
        body = b"".join(
            (
                head,
                span_id if span_id != _ZERO8 else _ONE8,
                T_PARENT,
                root,
                const,
                span_times(START, moment, END, moment),
                base,
                self._seq[len(number)],
                number,
            )
        )
        size = len(body)
        return (_ENTRY_HEADS[size] if size < _HEADS else entry_head(size)) + body

    def _root_span(self, run: RunInfo, state: _RunState, event: EventLike) -> bytes:
        status = _RUN_END_STATUS.get(event.event, run.status)
        if status in _ERROR_STATUSES or (
            self.capture_content and (run.inputs is not None or run.output is not None)
        ):
            return self.encoder.entry(self.records._root_span(run, state, event))
        key = ("root", run.product, run.flow, status)
        const = self._consts.get(key)
        if const is None:
            workflow = f"{run.product}/{run.flow}"
            const = self._const(
                key,
                f"invoke_workflow {workflow}",
                "internal",
                {
                    sc.OPERATION: "invoke_workflow",
                    sc.WORKFLOW_NAME: workflow,
                    "master.status": status,
                },
            )
        steps, tools, models = self._counts
        n_steps = _small(run.steps_used) or varint(run.steps_used)
        n_tools = _small(run.tool_calls) or varint(run.tool_calls)
        n_models = _small(run.model_calls) or varint(run.model_calls)
        head, base, root, _prefix = state.wire
        end_us = event.ts_us
        body = b"".join(
            (
                head,
                root,
                const,
                span_times(START, min(run.created_us, end_us) * 1000, END, end_us * 1000),
                base,
                steps[len(n_steps)],
                n_steps,
                tools[len(n_tools)],
                n_tools,
                models[len(n_models)],
                n_models,
                self._usage(run.tokens_in, run.tokens_out, run.cost_usd),
            )
        )
        size = len(body)
        return (_ENTRY_HEADS[size] if size < _HEADS else entry_head(size)) + body


def _has_output(known: Starts, step_id: str) -> bool:
    start = known.get(step_id)
    return start is not None and start.output is not None
