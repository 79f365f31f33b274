"""The ONLY place a tool function is called (law 4).

Checks the allow-list and the tool-call budget before the call, validates the input
with the tool's input model, passes a :class:`ToolContext` when the tool asks for one,
converts the result to JSON data through its output model, and traces the call.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, ValidationError

from master_sdk.authoring import ToolContext, ToolSpec
from master_sdk.errors import RunError

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


class ToolFailed(RunError):
    """The tool raised; the step fails with its message."""


def validation_message(exc: ValidationError) -> str:
    """Pydantic errors as ``field: message; ...`` without echoing the values."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors()
    )


class ToolExecutor:
    """Calls tools for the engine (stateless; one per workbench)."""

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
        if spec.context_param is not None:
            kwargs[spec.context_param] = ToolContext(
                run_id=scope.run_id,
                step_id=scope.step_id,
                attempt=scope.attempt,
                idempotency_key=f"{scope.run_id}:{scope.step_id}",
            )
        scope.budget.run.tool_calls += 1
        started = time.perf_counter()
        try:
            result = spec.fn(**kwargs)
        except Exception as exc:
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
