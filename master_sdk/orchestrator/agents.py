"""Runs agent steps: validated inputs in, an :class:`AgentContext` as the only door to
the router, and an output validated against the agent's :class:`AgentOutput` model."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from master_sdk.authoring import AgentContext, AgentSpec, Reply
from master_sdk.errors import RunError
from master_sdk.tools.executor import validation_message

if TYPE_CHECKING:
    from master_sdk.models.router import ModelScope, Router


def run_agent(
    spec: AgentSpec,
    raw: Any,
    *,
    model: str,
    router: Router,
    aliases: Mapping[str, str],
    scope: ModelScope,
) -> Any:
    """Call one agent and return its output as JSON data."""
    try:
        args = spec.input_model.model_validate(raw)
    except ValidationError as exc:
        raise RunError(
            f"agent '{spec.name}' input is invalid: {validation_message(exc)}", step=scope.step_id
        ) from None
    kwargs = dict(args.__dict__)

    def complete(
        prompt: str,
        *,
        system: str | None,
        output: type[BaseModel] | None,
        max_tokens: int | None,
        temperature: float | None,
        model: str,
    ) -> Reply:
        return router.complete(
            model,
            prompt=prompt,
            system=system,
            output=output,
            max_tokens=max_tokens,
            temperature=temperature,
            aliases=aliases,
            scope=scope,
        )

    ctx = AgentContext(inputs=MappingProxyType(dict(kwargs)), model=model, complete=complete)
    result = spec.fn(ctx, **kwargs)
    out_model = spec.output_model
    # validated again even when the agent returned an instance: model_construct() or
    # attribute assignment could otherwise smuggle control fields past the model
    data = result.model_dump(mode="python") if isinstance(result, BaseModel) else result
    try:
        validated = out_model.model_validate(data)
    except ValidationError as exc:
        raise RunError(
            f"agent '{spec.name}' returned an invalid {out_model.__name__}: "
            f"{validation_message(exc)}",
            step=scope.step_id,
        ) from None
    return validated.model_dump(mode="json")
