"""Test helpers for your own products: models you script, and a block on network models.

Plug a model in by its logical name when you open the workbench; the router then uses it
instead of what ``configs/models.yaml`` configures, under the same budgets and trace:

    >>> from master_sdk import Workbench
    >>> from master_sdk.testing import ScriptedModel
    >>> model = ScriptedModel(["A short summary."])
    >>> wb = Workbench.open("my_project", providers={"default": model})  # doctest: +SKIP
    >>> run = wb.run("hello_world/greet", inputs={"text": "Hi"})         # doctest: +SKIP
    >>> model.calls[0].messages[-1].content                              # doctest: +SKIP
    'Summarise for the board: Hi'
    >>> model.assert_consumed()                                          # doctest: +SKIP

- :class:`ScriptedModel` answers with a list of replies in order, records every request
  in ``.calls``, and fails on a call it has no reply for and (``assert_consumed()`` or
  leaving its ``with`` block) on replies never asked for.
- :class:`FunctionModel` answers with a function of the request.
- :func:`no_network_models` (and the ``block_network_models`` pytest fixture of
  :mod:`master_sdk.pytest_plugin`) makes any model call that would leave the machine fail.

A reply is given as text, as data for structured output (a mapping, a list or a pydantic
model, sent as JSON text), as a full :class:`ModelResponse`, or as an exception to raise —
a :class:`~master_sdk.errors.ModelCallError` scripts a provider failure, which the router
retries or not as policy says.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from types import TracebackType
from typing import Any

from pydantic import BaseModel

from master_sdk.models.network import NetworkGuard, NetworkModelCallBlocked, blocked_network
from master_sdk.models.tokens import estimate_prompt_tokens, estimate_tokens
from master_sdk.models.types import Message, ModelRequest, ModelResponse, Usage

__all__ = [
    "FunctionModel",
    "Message",
    "ModelRequest",
    "ModelResponse",
    "NetworkGuard",
    "NetworkModelCallBlocked",
    "ScriptedModel",
    "UnconsumedResponses",
    "UnexpectedModelCall",
    "Usage",
    "no_network_models",
]

ScriptedResponse = str | Mapping[str, Any] | list[Any] | BaseModel | ModelResponse | BaseException
"""What a scripted model may answer with (see the module docstring)."""


class UnexpectedModelCall(AssertionError):
    """A scripted model was called after its replies ran out."""


class UnconsumedResponses(AssertionError):
    """A scripted model still holds replies the test expected to be asked for."""


def _as_response(reply: Any, request: ModelRequest, model: str) -> ModelResponse:
    if isinstance(reply, BaseException):
        raise reply
    if isinstance(reply, ModelResponse):
        return reply
    if isinstance(reply, BaseModel):
        text = reply.model_dump_json()
    elif isinstance(reply, Mapping | list):
        text = json.dumps(reply)
    elif isinstance(reply, str):
        text = reply
    else:
        raise TypeError(
            f"a scripted reply must be text, a mapping, a list, a pydantic model, a "
            f"ModelResponse or an exception, not {type(reply).__name__}"
        )
    return ModelResponse(
        text=text,
        usage=Usage(
            tokens_in=estimate_prompt_tokens(request.messages, request.output_schema),
            tokens_out=estimate_tokens(text),
        ),
        model=request.model or model,
        finish_reason="stop",
    )


def _last_user_message(request: ModelRequest) -> str:
    return next((m.content for m in reversed(request.messages) if m.role == "user"), "")


class ScriptedModel:
    """A model that answers with scripted replies, in order, and records its calls.

    Args:
        responses: the replies, one per expected call (see :data:`ScriptedResponse`).
        model: the model name replies report when a request carries none.

    Use it as a context manager to check on leaving the block that every reply was asked
    for; or call :meth:`assert_consumed` yourself.

    Example:
        >>> model = ScriptedModel(["first", {"summary": "second"}])
        >>> model.remaining
        2
    """

    name = "scripted"

    def __init__(
        self, responses: Iterable[ScriptedResponse] = (), *, model: str = "scripted"
    ) -> None:
        self.model = model
        self.calls: list[ModelRequest] = []
        self.unexpected: list[ModelRequest] = []
        self._script: deque[ScriptedResponse] = deque(responses)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ScriptedModel(calls={len(self.calls)}, remaining={self.remaining})"

    @property
    def remaining(self) -> int:
        """How many scripted replies have not been asked for."""
        with self._lock:
            return len(self._script)

    @property
    def prompts(self) -> list[str]:
        """The last user message of every call, in order."""
        return [_last_user_message(request) for request in self.calls]

    def add(self, *responses: ScriptedResponse) -> None:
        """Script more replies after the ones already queued."""
        with self._lock:
            self._script.extend(responses)

    def complete(self, request: ModelRequest) -> ModelResponse:
        """Record the request and answer with the next scripted reply.

        Raises:
            UnexpectedModelCall: no reply is left (also reported by
                :meth:`assert_consumed`, since a flow turns it into a failed step).
            BaseException: the scripted reply, when it is an exception.
        """
        with self._lock:
            self.calls.append(request)
            if not self._script:
                self.unexpected.append(request)
                raise UnexpectedModelCall(
                    f"unexpected model call #{len(self.calls)}: all {len(self.calls) - 1} "
                    f"scripted replies were used; the prompt was "
                    f"{_last_user_message(request)!r}"
                )
            reply = self._script.popleft()
        return _as_response(reply, request, self.model)

    def assert_consumed(self) -> None:
        """Fail unless every reply was asked for and no call came after they ran out.

        Raises:
            UnexpectedModelCall: a call came with no reply left.
            UnconsumedResponses: replies are left.
        """
        if self.unexpected:
            prompts = ", ".join(repr(_last_user_message(r)) for r in self.unexpected)
            raise UnexpectedModelCall(
                f"{len(self.unexpected)} model call(s) had no scripted reply: {prompts}"
            )
        left = self.remaining
        if left:
            with self._lock:
                shown = ", ".join(_describe(r) for r in list(self._script)[:3])
            raise UnconsumedResponses(
                f"{left} scripted repl{'y was' if left == 1 else 'ies were'} never asked for "
                f"(after {len(self.calls)} call(s)): {shown}{', ...' if left > 3 else ''}"
            )

    def __enter__(self) -> ScriptedModel:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.assert_consumed()


def _describe(reply: ScriptedResponse) -> str:
    if isinstance(reply, BaseException):
        return f"{type(reply).__name__}({reply})"
    if isinstance(reply, ModelResponse):
        text = reply.text
    elif isinstance(reply, BaseModel):
        text = reply.model_dump_json()
    elif isinstance(reply, str):
        text = reply
    else:
        text = json.dumps(reply)
    return repr(text if len(text) <= 60 else f"{text[:60]}...")


class FunctionModel:
    """A model backed by a function of the request, recording its calls.

    Args:
        fn: called with each :class:`ModelRequest`; returns a reply as
            :class:`ScriptedModel` takes them (or raises).
        model: the model name replies report when a request carries none.

    Example:
        >>> model = FunctionModel(lambda request: request.messages[-1].content.upper())
        >>> model.name
        'function'
    """

    name = "function"

    def __init__(
        self, fn: Callable[[ModelRequest], ScriptedResponse], *, model: str = "function"
    ) -> None:
        self.fn = fn
        self.model = model
        self.calls: list[ModelRequest] = []

    def __repr__(self) -> str:
        return f"FunctionModel({getattr(self.fn, '__name__', 'fn')}, calls={len(self.calls)})"

    def complete(self, request: ModelRequest) -> ModelResponse:
        """Record the request and answer with ``fn(request)``."""
        self.calls.append(request)
        return _as_response(self.fn(request), request, self.model)


@contextmanager
def no_network_models(*, allow_loopback: bool = True) -> Iterator[NetworkGuard]:
    """Make every model call that would leave the machine fail, inside the block.

    Calls to a loopback address (a local test server) still go through unless
    ``allow_loopback=False``. A refused call raises :class:`NetworkModelCallBlocked`
    before anything is sent, and is listed on the yielded guard's ``blocked``.

    Example:
        >>> with no_network_models() as guard:
        ...     pass
        >>> guard.blocked
        []
    """
    with blocked_network(allow_loopback=allow_loopback) as guard:
        yield guard
