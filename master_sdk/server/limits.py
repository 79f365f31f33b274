"""Request bodies are capped like user input: in size before they are read whole, and in
nesting depth before anything parses them for a handler.

A pure ASGI middleware: the body is read up to the cap (a larger ``Content-Length`` is
refused unread), a JSON body is parsed once to measure its depth (a body nested deeper
than user input may be is refused, as is one too deep to parse), and the bytes are then
handed on to the application unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

#: The nesting user input may have (``governance/inputs.py``; a test keeps them equal).
MAX_INPUT_DEPTH = 64

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


def json_depth(value: Any) -> int:
    """Nesting depth of lists and dicts (iterative: any depth is measured safely)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            stack.extend((v, level + 1) for v in item.values())
            deepest = max(deepest, level + 1)
        elif isinstance(item, list):
            stack.extend((v, level + 1) for v in item)
            deepest = max(deepest, level + 1)
    return deepest


class BodyLimits:
    """Refuse bodies over ``max_bytes`` (413) and JSON nested deeper than ``max_depth``
    (422), with the JSON error every refusal has."""

    def __init__(self, app: App, *, max_bytes: int, max_depth: int = MAX_INPUT_DEPTH) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_depth = max_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        declared = headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await _refuse(send, 413, "too_large", f"the body is over {self.max_bytes} bytes")
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await _refuse(send, 413, "too_large", f"the body is over {self.max_bytes} bytes")
                return
            chunks.append(chunk)
            more = bool(message.get("more_body"))
        body = b"".join(chunks)
        if body and "json" in headers.get("content-type", ""):
            problem = self._json_problem(body)
            if problem is not None:
                await _refuse(
                    send, 422, "invalid_input", f"invalid request: body: {problem}",
                    errors=[{"path": "body", "message": problem}],
                )  # fmt: skip
                return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _json_problem(self, body: bytes) -> str | None:
        try:
            value = json.loads(body)
        except RecursionError:
            return f"nests deeper than {self.max_depth} levels"
        except ValueError:
            return None  # the handler says what is wrong with it
        if json_depth(value) > self.max_depth:
            return f"nests deeper than {self.max_depth} levels"
        return None


async def _refuse(send: Send, status: int, code: str, message: str, **extra: Any) -> None:
    body = json.dumps({"error": {"code": code, "message": message, **extra}}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
