"""What crosses the model boundary: requests, responses, usage, the Provider protocol.

Plain frozen dataclasses, not pydantic models: they are built on every model call.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message."""

    role: str  # "system" | "user" | "assistant"
    content: str


@dataclass(frozen=True, slots=True)
class ModelRequest:
    """A provider-neutral chat completion request.

    ``model`` is the provider's own model name (``gpt-4o-mini``); the router has already
    resolved the logical name. ``output_schema`` asks for structured output: a strict JSON
    Schema the reply must satisfy, named ``output_name``.
    """

    model: str
    messages: tuple[Message, ...]
    max_tokens: int | None = None
    temperature: float | None = None
    output_schema: Mapping[str, Any] | None = None
    output_name: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form, used for cassette keys and traces."""
        out: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": m.role, "content": m.content} for m in self.messages],
        }
        if self.max_tokens is not None:
            out["max_tokens"] = self.max_tokens
        if self.temperature is not None:
            out["temperature"] = self.temperature
        if self.output_schema is not None:
            out["output_schema"] = dict(self.output_schema)
            out["output_name"] = self.output_name
        if self.params:
            out["params"] = dict(self.params)
        return out


@dataclass(frozen=True, slots=True)
class Usage:
    """Token usage of one call. ``reported`` is False when the provider gave none and the
    numbers are a conservative estimate."""

    tokens_in: int
    tokens_out: int
    cached_tokens: int = 0
    reported: bool = True


@dataclass(frozen=True, slots=True)
class ModelResponse:
    """A provider-neutral reply: the text (JSON text for structured output) and usage."""

    text: str
    usage: Usage
    model: str
    finish_reason: str | None = None
    raw: Mapping[str, Any] | None = None


@runtime_checkable
class Provider(Protocol):
    """A model backend. Implementations live in ``master_sdk/models/providers/``.

    ``complete`` makes exactly one attempt: it never retries on its own (the router retries
    as policy allows, tracing each attempt) and raises ``ModelCallError`` on failure.
    """

    name: str

    def complete(self, request: ModelRequest) -> ModelResponse: ...


@dataclass(frozen=True, slots=True)
class EmbedRequest:
    """A provider-neutral embeddings request: one batch of texts for one model.

    ``model`` is the provider's own model name; ``dimensions`` asks models that can
    shorten their vectors (``text-embedding-3-*``) for that many, and is checked on the
    reply either way.
    """

    model: str
    texts: tuple[str, ...]
    dimensions: int | None = None
    params: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form, used for cassette keys."""
        out: dict[str, Any] = {
            "operation": "embeddings",
            "model": self.model,
            "input": list(self.texts),
        }
        if self.dimensions is not None:
            out["dimensions"] = self.dimensions
        if self.params:
            out["params"] = dict(self.params)
        return out


@dataclass(frozen=True, slots=True)
class EmbedResponse:
    """One vector per text of the request, in order, as a ``float32`` array of shape
    ``(len(texts), dimensions)``; usage counts input tokens (``tokens_out`` is 0)."""

    vectors: np.ndarray
    usage: Usage
    model: str


@runtime_checkable
class Embedder(Protocol):
    """A provider that also makes embeddings (one attempt per call, like ``complete``)."""

    name: str

    def embed(self, request: EmbedRequest) -> EmbedResponse: ...
