"""The ONLY place a tool function is called (law 4).

Checks the allow-list and the tool-call budget before the call, validates the input
with the tool's input model, passes a :class:`ToolContext` when the tool asks for one,
converts the result to JSON data through its output model, and traces the call.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, ValidationError

from master_sdk.authoring import Embeddings, Memory, ToolContext, ToolSpec
from master_sdk.errors import PolicyViolation, RunError

if TYPE_CHECKING:
    from master_sdk.governance.budgets import RunBudget
    from master_sdk.tracing.events import TraceBuffer


class ToolScope(Protocol):
    """What a tool call needs from the run it belongs to."""

    run_id: str
    step_id: str
    step_type: str
    attempt: int
    budget: RunBudget
    trace: TraceBuffer


@dataclass(slots=True)
class StepServices:
    """What a :class:`ToolContext` offers besides ids: embeddings and vector memory for
    one step, and the policy violations they raised (re-raised after the tool returns,
    even when the tool caught them)."""

    embed: Callable[[Sequence[str], str | None], Embeddings]
    memory: Callable[[str], Memory]
    violations: list[PolicyViolation] = field(default_factory=list)


class ToolFailed(RunError):
    """The tool raised; the step fails with its message."""


def validation_message(exc: ValidationError) -> str:
    """Pydantic errors as ``field: message; ...`` without echoing the values."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors()
    )


class ToolExecutor:
    """Calls tools for the engine (stateless; one per workbench).

    Args:
        services: builds a step's :class:`StepServices` (``ctx.embed``, ``ctx.memory``)
            from its scope; without it a tool's context has neither.
    """

    def __init__(self, *, services: Callable[[Any], StepServices] | None = None) -> None:
        self._services = services

    def call(self, spec: ToolSpec, raw: Any, scope: ToolScope) -> Any:
        """Run one tool call under governance and return its output as JSON data."""
        scope.budget.check_tool(scope.step_id, spec.name)
        try:
            args = spec.input_model.model_validate(raw)
        except ValidationError as exc:
            raise RunError(
                f"tool '{spec.name}' input is invalid: {validation_message(exc)}",
                step=scope.step_id,
            ) from None
        kwargs = dict(args.__dict__)
        services: StepServices | None = None
        if spec.context_param is not None:
            extra: dict[str, Any] = {}
            if self._services is not None:
                services = self._services(scope)
                extra = {"_embed": services.embed, "_memory": services.memory}
            kwargs[spec.context_param] = ToolContext(
                run_id=scope.run_id,
                step_id=scope.step_id,
                attempt=scope.attempt,
                idempotency_key=f"{scope.run_id}:{scope.step_id}",
                **extra,
            )
        scope.budget.run.tool_calls += 1
        started = time.perf_counter()
        try:
            result = spec.fn(**kwargs)
        except Exception as exc:
            if services is not None and services.violations:
                raise services.violations[0] from None
            scope.trace.emit(
                "tool_called",
                step_id=scope.step_id,
                step_type=scope.step_type,
                name=spec.name,
                status="error",
                duration_ms=(time.perf_counter() - started) * 1000,
                attrs={"error": f"{type(exc).__name__}: {exc}"},
            )
            raise ToolFailed(
                f"tool '{spec.name}' raised {type(exc).__name__}: {exc}", step=scope.step_id
            ) from exc
        duration_ms = (time.perf_counter() - started) * 1000
        if services is not None and services.violations:
            # a refusal the tool swallowed still blocks the step
            raise services.violations[0]
        output = _as_data(spec, result, scope.step_id)
        scope.trace.emit(
            "tool_called",
            step_id=scope.step_id,
            step_type=scope.step_type,
            name=spec.name,
            status="ok",
            duration_ms=duration_ms,
        )
        return output


def _as_data(spec: ToolSpec, result: Any, step_id: str) -> Any:
    model = spec.output_model
    if model is not None and not isinstance(result, model):
        try:
            result = model.model_validate(result)
        except ValidationError as exc:
            raise RunError(
                f"tool '{spec.name}' returned data that does not match "
                f"{model.__name__}: {validation_message(exc)}",
                step=step_id,
            ) from None
    if isinstance(result, BaseModel):
        return result.model_dump(mode="json")
    return result
