"""A real HTTP server on 127.0.0.1 that speaks the OpenAI Chat Completions protocol.

Tests (and notebooks) point the official ``openai`` SDK, or any OpenAI-compatible client,
at it: nothing is mocked, the bytes go over a real loopback socket. Behaviour is scripted
per test with a queue of :class:`Reply` values; when the queue is empty every call gets a
default reply that is deterministic from the last user message (and, for structured
output, a minimal instance of the requested JSON Schema). Every request is recorded with
its parsed JSON body and headers so a test can assert what the client sent.

Example::

    with FakeOpenAIServer() as server:
        server.script(Reply.text("hi", prompt_tokens=7, completion_tokens=1))
        client = openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0)
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
        server.requests[0].body["messages"]

Run it on its own for a notebook or a manual check (prints the base URL, then serves)::

    python -m tests.support.openai_server --port 8080
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

__all__ = [
    "FakeOpenAIServer",
    "RecordedRequest",
    "Reply",
    "default_text",
    "embedding_of",
    "main",
    "schema_instance",
]

DEFAULT_MODEL = "fake-model"
_CREATED = 1_700_000_000  # fixed so replies are byte-for-byte reproducible


@dataclass(frozen=True)
class Reply:
    """One scripted answer to the next ``POST /v1/chat/completions``.

    Build it with the class methods; the fields are the knobs they set. ``body`` (raw
    bytes) wins over everything else and is sent as is.
    """

    status: int = 200
    content: str | None = None
    refusal: str | None = None
    finish_reason: str = "stop"
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None
    usage: bool = True
    error_message: str | None = None
    error_type: str | None = None
    error_code: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    body: bytes | None = None
    content_type: str = "application/json"

    @classmethod
    def text(
        cls,
        content: str,
        *,
        prompt_tokens: int | None = None,
        completion_tokens: int | None = None,
        cached_tokens: int | None = None,
        finish_reason: str = "stop",
        headers: Mapping[str, str] | None = None,
        delay_s: float = 0.0,
    ) -> Reply:
        """A successful reply whose message content is ``content``.

        Token counts left as None are computed from the request and the reply.
        """
        return cls(
            content=content,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cached_tokens=cached_tokens,
            finish_reason=finish_reason,
            headers=dict(headers or {}),
            delay_s=delay_s,
        )

    @classmethod
    def json(cls, data: Any, **kwargs: Any) -> Reply:
        """A successful reply whose content is ``data`` serialised as JSON text
        (what a model sends back for structured output)."""
        return cls.text(json.dumps(data), **kwargs)

    @classmethod
    def no_usage(cls, content: str) -> Reply:
        """A successful reply without a ``usage`` block (many local servers do this)."""
        return cls(content=content, usage=False)

    @classmethod
    def refused(cls, refusal: str) -> Reply:
        """The model declined: ``message.refusal`` is set and ``content`` is null."""
        return cls(refusal=refusal)

    @classmethod
    def error(
        cls,
        status: int,
        message: str = "scripted error",
        *,
        error_type: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        """An HTTP error with an OpenAI-style ``{"error": {...}}`` body."""
        return cls(
            status=status,
            error_message=message,
            error_type=error_type or ("server_error" if status >= 500 else "invalid_request_error"),
            error_code=code,
            headers=dict(headers or {}),
        )

    @classmethod
    def raw(
        cls, body: bytes, *, status: int = 200, content_type: str = "application/json"
    ) -> Reply:
        """Send ``body`` verbatim, e.g. malformed JSON or JSON without ``choices``."""
        return cls(status=status, body=body, content_type=content_type)

    @classmethod
    def slow(cls, delay_s: float, content: str = "late") -> Reply:
        """Answer only after ``delay_s`` seconds (the wait ends early when the server stops)."""
        return cls(content=content, delay_s=delay_s)


@dataclass(frozen=True)
class RecordedRequest:
    """One request the server received. Header names are lower-case."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: Any
    raw: bytes


def default_text(last_user_message: str) -> str:
    """The content of the default reply: deterministic from the last user message."""
    return f"echo: {last_user_message}"


def embedding_of(text: str, dims: int) -> list[float]:
    """A deterministic vector for ``text``: byte sums per slot, so tests can predict it."""
    slots = [0.0] * dims
    for i, byte in enumerate(text.encode("utf-8")):
        slots[i % dims] += byte / 255
    return slots


def _estimate_tokens(text: str) -> int:
    # Deterministic and never zero; roughly one token per four characters.
    return max(1, math.ceil(len(text) / 4))


def _last_user_message(body: Any) -> str:
    messages = body.get("messages") if isinstance(body, dict) else None
    if not isinstance(messages, list):
        return ""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            return content if isinstance(content, str) else json.dumps(content)
    return ""


def _resolve(schema: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = schema.get("$ref")
    if not isinstance(ref, str) or not ref.startswith("#/"):
        return schema
    node: Any = root
    for part in ref[2:].split("/"):
        node = node[part]
    return _resolve(node, root)


def schema_instance(
    schema: Mapping[str, Any], text: str, root: Mapping[str, Any] | None = None
) -> Any:
    """A small value satisfying ``schema`` (the subset strict structured output uses).

    Strings carry ``text`` (cut or padded to the length bounds), numbers sit at their
    minimum or zero, arrays hold ``minItems`` items, unions take their first non-null branch.
    """
    root = schema if root is None else root
    schema = _resolve(schema, root)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        branches = schema.get(key)
        if isinstance(branches, list) and branches:
            non_null = [b for b in branches if _resolve(b, root).get("type") != "null"]
            return schema_instance((non_null or branches)[0], text, root)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        return {name: schema_instance(sub, text, root) for name, sub in props.items()}
    if kind == "array":
        count = int(schema.get("minItems", 0))
        items = schema.get("items") or {}
        return [schema_instance(items, text, root) for _ in range(count)]
    if kind == "string":
        value = text[: int(schema["maxLength"])] if "maxLength" in schema else text
        return value.ljust(int(schema.get("minLength", 0)), "x")
    if kind == "integer":
        return math.ceil(schema.get("minimum", 0))
    if kind == "number":
        return schema.get("minimum", 0)
    if kind == "boolean":
        return False
    return None


class FakeOpenAIServer:
    """A scripted OpenAI-compatible server on 127.0.0.1, run in a background thread.

    Args:
        port: TCP port; 0 picks a free one (read it back from :attr:`port`).
        model: the model id reported by ``GET /v1/models`` and by default replies.

    Use it as a context manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(self, *, port: int = 0, model: str = DEFAULT_MODEL) -> None:
        self.model = model
        self._requested_port = port
        self._lock = threading.Lock()
        self._queue: deque[Reply] = deque()
        self._requests: list[RecordedRequest] = []
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # lifecycle -------------------------------------------------------------------------

    def start(self) -> FakeOpenAIServer:
        """Bind and serve in a daemon thread; returns self."""
        if self._httpd is not None:
            return self
        httpd = _QuietServer(("127.0.0.1", self._requested_port), _handler_for(self))
        # Handler threads may be parked in a scripted delay: never wait for them on close.
        httpd.daemon_threads = True
        httpd.block_on_close = False
        self._httpd = httpd
        self._stopping.clear()
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"fake-openai-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port; wakes any handler waiting in a delay."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # addresses -------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound port (only while started)."""
        if self._httpd is None:
            raise RuntimeError("the server is not started")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """What an OpenAI client takes as ``base_url``: ``http://127.0.0.1:<port>/v1``."""
        return f"{self.url}/v1"

    # scripting and recording -----------------------------------------------------------

    def script(self, *replies: Reply) -> None:
        """Queue replies; each chat completion request consumes the next one."""
        with self._lock:
            self._queue.extend(replies)

    def reset(self) -> None:
        """Forget scripted replies and recorded requests (to share one server between tests)."""
        with self._lock:
            self._queue.clear()
            self._requests.clear()

    @property
    def pending(self) -> int:
        """How many scripted replies have not been consumed yet."""
        with self._lock:
            return len(self._queue)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, oldest first (a copy)."""
        with self._lock:
            return list(self._requests)

    @property
    def completions(self) -> list[RecordedRequest]:
        """Only the ``POST .../chat/completions`` requests."""
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _next_reply(self) -> Reply | None:
        with self._lock:
            return self._queue.popleft() if self._queue else None

    def _wait(self, seconds: float) -> None:
        self._stopping.wait(seconds)

    # reply bodies ----------------------------------------------------------------------

    def completion_body(
        self, reply: Reply | None, request_body: Mapping[str, Any]
    ) -> tuple[int, bytes]:
        """The status and JSON body answering ``request_body`` with ``reply``
        (None: the default reply)."""
        last_user = _last_user_message(request_body)
        if reply is None:
            reply = Reply(content=self._default_content(request_body, last_user))
        if reply.body is not None:
            return reply.status, reply.body
        if reply.status >= 400:
            error = {
                "message": reply.error_message,
                "type": reply.error_type,
                "param": None,
                "code": reply.error_code,
            }
            return reply.status, json.dumps({"error": error}).encode()
        model = request_body.get("model")
        message: dict[str, Any] = {"role": "assistant", "content": reply.content}
        if reply.refusal is not None:
            message["refusal"] = reply.refusal
        body: dict[str, Any] = {
            "id": f"chatcmpl-fake-{len(self.requests)}",
            "object": "chat.completion",
            "created": _CREATED,
            "model": model or self.model,
            "choices": [{"index": 0, "message": message, "finish_reason": reply.finish_reason}],
        }
        if reply.usage:
            prompt = reply.prompt_tokens
            if prompt is None:
                prompt = _estimate_tokens(json.dumps(request_body.get("messages", [])))
            completion = reply.completion_tokens
            if completion is None:
                completion = _estimate_tokens(reply.content or reply.refusal or "")
            body["usage"] = {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
                "prompt_tokens_details": {"cached_tokens": reply.cached_tokens or 0},
            }
        return reply.status, json.dumps(body).encode()

    def _default_content(self, request_body: Mapping[str, Any], last_user: str) -> str:
        response_format = request_body.get("response_format")
        if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
            schema = (response_format.get("json_schema") or {}).get("schema") or {}
            return json.dumps(schema_instance(schema, default_text(last_user)))
        return default_text(last_user)

    @property
    def embeddings(self) -> list[RecordedRequest]:
        """Only the ``POST .../embeddings`` requests."""
        return [r for r in self.requests if r.path.endswith("/embeddings")]

    def embeddings_body(
        self, reply: Reply | None, request_body: Mapping[str, Any]
    ) -> tuple[int, bytes]:
        """The status and JSON body answering an embeddings request: a scripted error or
        raw body, else one deterministic vector per input (``dimensions`` long, default
        8), listed in reverse order so clients must sort by ``index``."""
        if reply is not None and reply.body is not None:
            return reply.status, reply.body
        if reply is not None and reply.status >= 400:
            return self.completion_body(reply, request_body)
        texts = request_body.get("input")
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, list):
            texts = []
        dims = request_body.get("dimensions") or 8
        data = [
            {"object": "embedding", "index": i, "embedding": embedding_of(str(text), int(dims))}
            for i, text in enumerate(texts)
        ]
        tokens = sum(_estimate_tokens(str(t)) for t in texts)
        usage: dict[str, Any] = {"prompt_tokens": tokens, "total_tokens": tokens}
        if reply is not None and reply.prompt_tokens is not None:
            usage = {"prompt_tokens": reply.prompt_tokens, "total_tokens": reply.prompt_tokens}
        body: dict[str, Any] = {
            "object": "list",
            "data": list(reversed(data)),
            "model": request_body.get("model") or self.model,
        }
        if reply is None or reply.usage:
            body["usage"] = usage
        return 200, json.dumps(body).encode()

    def models_body(self) -> bytes:
        """The ``GET /v1/models`` listing."""
        entry = {"id": self.model, "object": "model", "created": _CREATED, "owned_by": "fake"}
        return json.dumps({"object": "list", "data": [entry]}).encode()


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """Ignore clients that hang up (timeout tests do it on purpose); report the rest."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


def _handler_for(server: FakeOpenAIServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as real servers do; every reply has a length

        def log_message(self, format: str, *args: Any) -> None:
            """Stay quiet: test output is not the place for access logs."""

        def _read_body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _record(self, raw: bytes) -> Any:
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = None
            headers = {k.lower(): v for k, v in self.headers.items()}
            server._record(RecordedRequest(self.command, self.path, headers, body, raw))
            return body

        def _send(
            self,
            status: int,
            body: bytes,
            *,
            content_type: str = "application/json",
            headers: Mapping[str, str] | None = None,
        ) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                # The client gave up (a timeout test): nothing left to answer.
                self.close_connection = True

        def do_GET(self) -> None:
            self._record(b"")
            if self.path.rstrip("/").endswith("/models"):
                self._send(200, server.models_body())
            else:
                self._not_found()

        def do_POST(self) -> None:
            body = self._record(self._read_body())
            if self.path.rstrip("/").endswith("/embeddings"):
                reply = server._next_reply()
                status, payload = server.embeddings_body(
                    reply, body if isinstance(body, dict) else {}
                )
                self._send(status, payload, headers=reply.headers if reply else None)
                return
            if not self.path.rstrip("/").endswith("/chat/completions"):
                self._not_found()
                return
            reply = server._next_reply()
            if reply is not None and reply.delay_s > 0:
                server._wait(reply.delay_s)
            status, payload = server.completion_body(reply, body if isinstance(body, dict) else {})
            self._send(
                status,
                payload,
                content_type=reply.content_type if reply else "application/json",
                headers=reply.headers if reply else None,
            )

        def _not_found(self) -> None:
            error = {"message": f"no route {self.path}", "type": "invalid_request_error"}
            self._send(404, json.dumps({"error": error}).encode())

    return Handler


def main(argv: list[str] | None = None) -> None:
    """Serve until interrupted, printing the base URL first (one line, flushed)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=0, help="TCP port (0: any free port)")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="model id to report")
    args = parser.parse_args(argv)
    server = FakeOpenAIServer(port=args.port, model=args.model).start()
    print(server.base_url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
