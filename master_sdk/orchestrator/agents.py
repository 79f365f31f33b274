"""Runs agent steps: validated inputs in, an :class:`AgentContext` as the only door to
the router, and an output validated against the agent's :class:`AgentOutput` model.

Governance cannot be talked around from inside an agent: a model name is checked
(canonical, configured) before the router looks it up, and once the router refuses a call
with a :class:`PolicyViolation` the step is blocked even if the agent catches the
exception — later calls are refused at once and the violation is raised again when the
agent returns. The output is checked for control fields independently of the output
model's own validators, which a subclass could override.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from master_sdk.authoring import AgentContext, AgentSpec, Embeddings, Reply, _find_control_key
from master_sdk.errors import PolicyViolation, RunError
from master_sdk.tools.executor import validation_message

if TYPE_CHECKING:
    from master_sdk.models.router import ModelScope, Router

DEFAULT_EMBEDDING = "default_embedding"
"""The embedding model ``ctx.embed`` uses when none is named."""


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
    known = set(router.names) | set(aliases)
    violations: list[PolicyViolation] = []

    def complete(
        prompt: str,
        *,
        system: str | None,
        output: type[BaseModel] | None,
        max_tokens: int | None,
        temperature: float | None,
        model: str,
    ) -> Reply:
        if violations:
            raise violations[0]
        try:
            scope.budget.check_model_name(scope.step_id, model, known)
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
        except PolicyViolation as exc:
            violations.append(exc)
            raise

    def embed(texts: Sequence[str], name: str | None) -> Embeddings:
        if violations:
            raise violations[0]
        wanted = name or DEFAULT_EMBEDDING
        try:
            scope.budget.check_model_name(scope.step_id, wanted, known)
            return router.embed(wanted, texts, aliases=aliases, scope=scope)
        except PolicyViolation as exc:
            violations.append(exc)
            raise

    ctx = AgentContext(
        inputs=MappingProxyType(dict(kwargs)), model=model, complete=complete, embed=embed
    )
    try:
        result = spec.fn(ctx, **kwargs)
    finally:
        # a violation the agent swallowed (or answered with another error) still blocks
        if violations:
            raise violations[0]
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
    dumped = validated.model_dump(mode="json")
    found = _find_control_key(dumped)
    if found:
        raise RunError(
            f"agent '{spec.name}' returned the control field '{found}'; agent outputs are data "
            "and may not steer the flow",
            step=scope.step_id,
        )
    return dumped
