"""The deterministic fake provider: no network, scriptable, token counts from text.

By default the reply is derived from the prompt, so outputs visibly reflect inputs
(``"[fake] Summarise for the board: hi"``). With ``responses`` it replies with each
scripted text in turn, then falls back to the default. For structured output it builds
a value that satisfies the requested JSON Schema from the prompt.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

from master_sdk.models.types import ModelRequest, ModelResponse, Usage


def estimate_tokens(text: str) -> int:
    """A deterministic token count: about four characters per token, at least one."""
    return max(1, (len(text) + 3) // 4)


class FakeProvider:
    """A scriptable, deterministic model (see module docstring)."""

    name = "fake"

    def __init__(self, *, responses: Iterable[str] | None = None, model: str = "fake") -> None:
        self.model = model
        self._script: deque[str] = deque(responses or ())

    def complete(self, request: ModelRequest) -> ModelResponse:
        """Answer from the script, or derive a reply from the last user message."""
        prompt = next((m.content for m in reversed(request.messages) if m.role == "user"), "")
        if self._script:
            text = self._script.popleft()
        elif request.output_schema is not None:
            text = json.dumps(_example(request.output_schema, prompt, request.output_schema))
        else:
            text = f"[fake] {prompt}"
        if request.max_tokens is not None and estimate_tokens(text) > request.max_tokens:
            text = text[: request.max_tokens * 4]
        tokens_in = sum(estimate_tokens(m.content) for m in request.messages)
        return ModelResponse(
            text=text,
            usage=Usage(tokens_in=tokens_in, tokens_out=estimate_tokens(text)),
            model=request.model,
            finish_reason="stop",
        )


def _example(schema: Mapping[str, Any], prompt: str, root: Mapping[str, Any]) -> Any:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return _example(root.get("$defs", {})[ref.split("/")[-1]], prompt, root)
    for key in ("anyOf", "oneOf", "allOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            usable = [o for o in options if o.get("type") != "null"] or options
            return _example(usable[0], prompt, root)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        return {name: _example(sub, prompt, root) for name, sub in props.items()}
    if kind == "array":
        return []
    if kind == "integer":
        return len(prompt.split())
    if kind == "number":
        return float(len(prompt.split()))
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return f"[fake] {prompt}"
