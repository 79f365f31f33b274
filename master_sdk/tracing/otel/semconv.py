"""Attribute names: the OpenTelemetry GenAI semantic conventions, latest and legacy sets.

The GenAI conventions are in *Development*; they ask instrumentations to let users choose
between the attribute set they emitted before and the latest one while the conventions
move (``OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental[/dup]``). Here the choice
is the ``semconv`` telemetry setting:

* ``latest``: ``gen_ai.provider.name``, ``gen_ai.usage.input_tokens`` /
  ``gen_ai.usage.output_tokens``, operation names ``invoke_workflow``, ``invoke_agent``,
  ``execute_tool``, ``chat``.
* ``legacy``: the same spans with ``gen_ai.system`` in place of ``gen_ai.provider.name`` and
  the token counts also as ``gen_ai.usage.prompt_tokens`` / ``gen_ai.usage.completion_tokens``
  (what older backends read).
* ``both``: the union.

``gen_ai.usage.cost`` (USD) is a *proposed* attribute, not yet in the conventions; the run's
own ``master.*`` attributes are this library's namespace.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AGENT_NAME",
    "CONVERSATION_ID",
    "COST",
    "ERROR_TYPE",
    "OPERATION",
    "REQUEST_MODEL",
    "RESPONSE_FINISH_REASONS",
    "RESPONSE_MODEL",
    "TOOL_NAME",
    "TOOL_TYPE",
    "WORKFLOW_NAME",
    "Semconv",
]

OPERATION = "gen_ai.operation.name"
WORKFLOW_NAME = "gen_ai.workflow.name"
AGENT_NAME = "gen_ai.agent.name"
TOOL_NAME = "gen_ai.tool.name"
TOOL_TYPE = "gen_ai.tool.type"
REQUEST_MODEL = "gen_ai.request.model"
RESPONSE_MODEL = "gen_ai.response.model"
RESPONSE_FINISH_REASONS = "gen_ai.response.finish_reasons"
CONVERSATION_ID = "gen_ai.conversation.id"
ERROR_TYPE = "error.type"
COST = "gen_ai.usage.cost"  # proposed, not yet part of the conventions

_PROVIDER_LATEST = "gen_ai.provider.name"
_PROVIDER_LEGACY = "gen_ai.system"
_INPUT = "gen_ai.usage.input_tokens"
_OUTPUT = "gen_ai.usage.output_tokens"
_PROMPT_LEGACY = "gen_ai.usage.prompt_tokens"
_COMPLETION_LEGACY = "gen_ai.usage.completion_tokens"


class Semconv:
    """Writes provider and usage attributes in the chosen set (``latest``, ``legacy``,
    ``both``)."""

    __slots__ = ("latest", "legacy", "mode")

    def __init__(self, mode: str) -> None:
        if mode not in ("latest", "legacy", "both"):
            raise ValueError(f"semconv must be latest, legacy or both, not {mode!r}")
        self.mode = mode
        self.latest = mode in ("latest", "both")
        self.legacy = mode in ("legacy", "both")

    def provider(self, attrs: dict[str, Any], name: str | None) -> None:
        """Set the provider name (``gen_ai.provider.name`` and/or ``gen_ai.system``)."""
        if not name:
            return
        if self.latest:
            attrs[_PROVIDER_LATEST] = name
        if self.legacy:
            attrs[_PROVIDER_LEGACY] = name

    def usage(
        self,
        attrs: dict[str, Any],
        tokens_in: int | None,
        tokens_out: int | None,
        cost_usd: float | None,
    ) -> None:
        """Set token counts and the (proposed) cost attribute, where known."""
        if tokens_in is not None:
            attrs[_INPUT] = int(tokens_in)
            if self.legacy:
                attrs[_PROMPT_LEGACY] = int(tokens_in)
        if tokens_out is not None:
            attrs[_OUTPUT] = int(tokens_out)
            if self.legacy:
                attrs[_COMPLETION_LEGACY] = int(tokens_out)
        if cost_usd is not None:
            attrs[COST] = float(cost_usd)
