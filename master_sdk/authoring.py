"""What products may import: ``@tool``, ``@agent``, ``AgentOutput``, the contexts.

This is the whole surface a product sees (law 6). Tools are plain functions whose input
model comes from their signature and whose output model comes from their return
annotation; agents are stateless functions that receive an :class:`AgentContext` (their
only door to a model) and return an :class:`AgentOutput` — data, never control.

Example:
    >>> from pydantic import BaseModel
    >>> class Echoed(BaseModel):
    ...     text: str
    >>> @tool
    ... def echo(text: str) -> Echoed:
    ...     return Echoed(text=text)
    >>> echo("hi")
    Echoed(text='hi')
"""

from __future__ import annotations

import functools
import inspect
import re
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, overload

from pydantic import (
    AliasChoices,
    AliasPath,
    BaseModel,
    ConfigDict,
    create_model,
    model_validator,
)

from master_sdk.governance.names import skeleton

__all__ = [
    "CONTROL_FIELDS",
    "AgentContext",
    "AgentOutput",
    "AgentSpec",
    "Embeddings",
    "Hit",
    "Memory",
    "Reply",
    "ToolContext",
    "ToolSpec",
    "agent",
    "tool",
]

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T", bound=BaseModel)

CONTROL_FIELDS: frozenset[str] = frozenset(
    {
        "nextstep",
        "goto",
        "retry",
        "branch",
        "route",
        "stop",
        "jump",
        "callagent",
        "calltool",
        "nextagent",
        "handoff",
    }
)
"""Normalised names (lower case, no ``_``/``-``/spaces) an agent output may never carry."""

_CONTAINERS = (Mapping, list, tuple, BaseModel)
_NON_ALNUM = re.compile(r"[^0-9a-z]")
TOOL_ATTR = "__master_tool__"
AGENT_ATTR = "__master_agent__"


@functools.lru_cache(maxsize=4096)
def is_control_field(name: str) -> bool:
    """True when ``name`` spells a control field in any case or separator variant, or with
    look-alike letters (``Next-Step``, ``NEXT_STEP``, fullwidth or Cyrillic letters)."""
    return _NON_ALNUM.sub("", skeleton(name)) in CONTROL_FIELDS


def _alias_names(alias: Any) -> list[str]:
    """Every name a pydantic alias setting accepts (plain, ``AliasChoices``, ``AliasPath``)."""
    if isinstance(alias, str):
        return [alias]
    if isinstance(alias, AliasPath):
        return [p for p in alias.path if isinstance(p, str)]
    if isinstance(alias, AliasChoices):
        return [n for choice in alias.choices for n in _alias_names(choice)]
    return []


def _find_control_key(value: Any, path: str = "") -> str | None:
    if isinstance(value, BaseModel):
        value = value.__dict__
    if isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(key, str) and is_control_field(key):
                return f"{path}.{key}" if path else key
            if isinstance(item, _CONTAINERS):
                found = _find_control_key(item, f"{path}.{key}" if path else str(key))
                if found:
                    return found
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            if isinstance(item, _CONTAINERS):
                found = _find_control_key(item, f"{path}.{index}" if path else str(index))
                if found:
                    return found
    return None


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        found.extend(_models_in(arg))
    return found


def _control_fields_of(model: type[BaseModel], seen: set[type[BaseModel]], path: str) -> str | None:
    if model in seen:
        return None
    seen.add(model)
    for name, info in model.model_fields.items():
        here = f"{path}.{name}" if path else name
        spellings = [name]
        for alias in (info.alias, info.validation_alias, info.serialization_alias):
            spellings.extend(_alias_names(alias))
        if any(is_control_field(spelled) for spelled in spellings):
            return here
        for nested in _models_in(info.annotation):
            found = _control_fields_of(nested, seen, here)
            if found:
                return found
    return None


class AgentOutput(BaseModel):
    """Base of every agent output: data only.

    Control fields (``next_step``, ``goto``, ``retry``, ``branch``, ``route``, ``stop``,
    ``jump``, ``call_agent`` and their case/underscore variants) are refused when the class
    is defined (fields of nested models included) and again whenever data is validated, at
    any depth. Only the orchestrator and policy decide what runs next.
    """

    model_config = ConfigDict(extra="forbid")

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        found = _control_fields_of(cls, set(), "")
        if found:
            raise TypeError(
                f"{cls.__qualname__}: field '{found}' is a control field; agent outputs are "
                "data and may not steer the flow (use a `when:` guard in the flow instead)"
            )

    @model_validator(mode="before")
    @classmethod
    def _refuse_control_fields(cls, data: Any) -> Any:
        found = _find_control_key(data)
        if found:
            raise ValueError(
                f"'{found}' is a control field; agent outputs are data and may not steer the flow"
            )
        return data


@dataclass(frozen=True, slots=True)
class Embeddings:
    """Vectors for texts, from an embedding model (``ctx.embed``).

    ``vectors`` is a ``float32`` numpy array of shape ``(len(texts), dimensions)``, one
    row per text in order, as the model returned them. ``tokens`` and ``cost_usd`` are
    what the calls cost (already counted in the run's budget).
    """

    vectors: Any
    model: str
    tokens: int
    cost_usd: float | None

    def __len__(self) -> int:
        return len(self.vectors)


@dataclass(frozen=True, slots=True)
class Hit:
    """One search result of a vector memory collection: most similar first.

    ``score`` is the cosine similarity of the query and the entry (1 is identical);
    ``text`` is the stored (redacted) text and ``metadata`` its declared fields.
    """

    id: str
    score: float
    text: str
    metadata: dict[str, Any]


@typing.runtime_checkable
class Memory(typing.Protocol):
    """A vector memory collection as a tool sees it (``ctx.memory("tickets")``).

    Example (inside a tool)::

        tickets = ctx.memory("tickets")
        tickets.add(["Refund for a damaged parcel"], metadata=[{"category": "billing"}])
        hits = tickets.search("parcel arrived broken", k=5, where={"category": "billing"})
        hits[0].id, hits[0].score, hits[0].text, hits[0].metadata
    """

    name: str

    def add(
        self,
        texts: Sequence[str],
        *,
        metadata: Sequence[Mapping[str, Any]] | None = None,
        ids: Sequence[str] | None = None,
    ) -> list[str]:
        """Embed and store texts (redacted); an existing id is replaced. Returns the ids."""
        ...

    def search(
        self, query: str, *, k: int = 5, where: Mapping[str, Any] | None = None
    ) -> list[Hit]:
        """The ``k`` entries most similar to ``query`` that match ``where``."""
        ...

    def delete(self, ids: Sequence[str]) -> int:
        """Remove entries by id; returns how many existed."""
        ...

    def count(self) -> int:
        """How many entries the collection holds."""
        ...


def _no_embed(texts: Sequence[str], model: str | None) -> Embeddings:
    raise RuntimeError("no model router is attached to this context")


def _no_memory(name: str) -> Memory:
    raise RuntimeError("no vector memory is attached to this context")


@dataclass(frozen=True, slots=True)
class ToolContext:
    """What a tool may ask for by declaring a parameter annotated ``ToolContext``.

    ``idempotency_key`` is stable across retries of the same step (``run_id:step_id``), so a
    tool that talks to an external system can make a retried call a no-op.
    :meth:`embed` reaches the embedding models through the router (under the run's budget)
    and :meth:`memory` the vector memory collections the product declares.
    """

    run_id: str
    step_id: str
    attempt: int
    idempotency_key: str
    _embed: Callable[[Sequence[str], str | None], Embeddings] = field(
        default=_no_embed, repr=False, compare=False
    )
    _memory: Callable[[str], Memory] = field(default=_no_memory, repr=False, compare=False)

    def embed(self, texts: Sequence[str], *, model: str | None = None) -> Embeddings:
        """Embed ``texts`` (default model ``default_embedding``), batched, budgeted, traced."""
        return self._embed(list(texts), model)

    def memory(self, name: str) -> Memory:
        """A vector memory collection of this product (``config/product.yaml``
        ``collections:``), as the policy's ``allowed_collections`` permits."""
        return self._memory(name)


@dataclass(frozen=True, slots=True)
class Reply:
    """A model's answer as an agent sees it."""

    text: str
    output: Any
    tokens_in: int
    tokens_out: int
    cost_usd: float | None
    model: str


class AgentContext:
    """An agent's only door to the world: its inputs and :meth:`complete`.

    Agents get no store, no tools and no other agents (law 7).
    """

    __slots__ = ("_complete", "_embed", "inputs", "model")

    def __init__(
        self,
        *,
        inputs: Mapping[str, Any],
        model: str,
        complete: Callable[..., Reply],
        embed: Callable[[Sequence[str], str | None], Embeddings] = _no_embed,
    ) -> None:
        self.inputs = inputs
        self.model = model
        self._complete = complete
        self._embed = embed

    def embed(self, texts: Sequence[str], *, model: str | None = None) -> Embeddings:
        """Embed ``texts`` with an embedding model (default ``default_embedding``), through
        the router and under the run's budget, like :meth:`complete`."""
        return self._embed(list(texts), model)

    @overload
    def complete(
        self,
        prompt: str,
        *,
        system: str | None = None,
        output: None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        model: str | None = None,
    ) -> Reply: ...

    @overload
    def complete(
        self,
        prompt: str,
        *,
        system: str | None = None,
        output: type[T],
        max_tokens: int | None = None,
        temperature: float | None = None,
        model: str | None = None,
    ) -> Reply: ...

    def complete(
        self,
        prompt: str,
        *,
        system: str | None = None,
        output: type[BaseModel] | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        model: str | None = None,
    ) -> Reply:
        """Ask the agent's model (through the router, under the run's budget).

        Args:
            prompt: the user message.
            system: an optional system message.
            output: a pydantic model for structured output; ``reply.output`` is then an
                instance of it, validated.
            max_tokens: cap on the reply (never above the model's configured cap).
            temperature: sampling temperature, when the provider supports it.
            model: another logical model name than the agent's own.
        """
        return self._complete(
            prompt,
            system=system,
            output=output,
            max_tokens=max_tokens,
            temperature=temperature,
            model=model or self.model,
        )


@dataclass(frozen=True)
class ToolSpec:
    """A registered tool, as the loader and the tool executor see it."""

    name: str
    fn: Callable[..., Any]
    input_model: type[BaseModel]
    output_model: type[BaseModel] | None
    context_param: str | None
    idempotent: bool
    description: str


@dataclass(frozen=True)
class AgentSpec:
    """A registered agent, as the loader and the agent runner see it."""

    name: str
    fn: Callable[..., Any]
    input_model: type[BaseModel]
    output_model: type[AgentOutput]
    model: str
    description: str


def _is_tool_context(annotation: Any) -> bool:
    if annotation is ToolContext:
        return True
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    return len(args) == 1 and args[0] is ToolContext


def _hints(fn: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn)
    except Exception as exc:  # names in annotations that cannot be resolved
        raise TypeError(f"{fn.__qualname__}: cannot resolve type hints: {exc}") from exc


def _input_model(
    fn: Callable[..., Any], hints: Mapping[str, Any], skip: set[str], kind: str
) -> type[BaseModel]:
    fields: dict[str, Any] = {}
    for name, param in inspect.signature(fn).parameters.items():
        if name in skip:
            continue
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise TypeError(f"{kind} {fn.__qualname__}: *args/**kwargs are not supported")
        annotation = hints.get(name, Any)
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[name] = (annotation, default)
    model: type[BaseModel] = create_model(
        f"{fn.__name__}_input",
        __config__=ConfigDict(extra="forbid"),
        **fields,
    )
    return model


@overload
def tool(fn: F, /) -> F: ...


@overload
def tool(*, name: str | None = None, idempotent: bool = False) -> Callable[[F], F]: ...


def tool(
    fn: F | None = None, /, *, name: str | None = None, idempotent: bool = False
) -> F | Callable[[F], F]:
    """Register a function as a tool.

    The input model is built from the signature (a parameter annotated
    :class:`ToolContext` receives the step's context instead); the output model from the
    return annotation when it is a pydantic model. ``idempotent=True`` lets an interrupted
    step be retried automatically, with a stable ``ToolContext.idempotency_key``.

    The function itself is returned unchanged, so it stays callable in your own tests.
    """

    def register(func: F) -> F:
        hints = _hints(func)
        ctx = [n for n, h in hints.items() if n != "return" and _is_tool_context(h)]
        returned = hints.get("return")
        output = (
            returned if isinstance(returned, type) and issubclass(returned, BaseModel) else None
        )
        spec = ToolSpec(
            name=name or func.__name__,
            fn=func,
            input_model=_input_model(func, hints, set(ctx), "tool"),
            output_model=output,
            context_param=ctx[0] if ctx else None,
            idempotent=idempotent,
            description=inspect.getdoc(func) or "",
        )
        setattr(func, TOOL_ATTR, spec)
        return func

    return register(fn) if fn is not None else register


@overload
def agent(fn: F, /) -> F: ...


@overload
def agent(*, model: str = "default", name: str | None = None) -> Callable[[F], F]: ...


def agent(
    fn: F | None = None, /, *, model: str = "default", name: str | None = None
) -> F | Callable[[F], F]:
    """Register a stateless agent.

    The first parameter receives the :class:`AgentContext`; the others form the input
    model; the return annotation must be an :class:`AgentOutput` subclass. ``model`` is a
    logical model name resolved by the router (``configs/models.yaml`` and product aliases).
    """

    def register(func: F) -> F:
        hints = _hints(func)
        params = list(inspect.signature(func).parameters)
        if not params:
            raise TypeError(
                f"agent {func.__qualname__}: first parameter must take the AgentContext"
            )
        returned = hints.get("return")
        if not (isinstance(returned, type) and issubclass(returned, AgentOutput)):
            raise TypeError(
                f"agent {func.__qualname__}: return annotation must be an AgentOutput subclass, "
                f"got {returned!r}"
            )
        spec = AgentSpec(
            name=name or func.__name__,
            fn=func,
            input_model=_input_model(func, hints, {params[0]}, "agent"),
            output_model=returned,
            model=model,
            description=inspect.getdoc(func) or "",
        )
        setattr(func, AGENT_ATTR, spec)
        return func

    return register(fn) if fn is not None else register
