"""A real OTLP/HTTP traces receiver on 127.0.0.1, for tests and benchmarks.

It decodes every ``POST /v1/traces`` body as an ``ExportTraceServiceRequest`` (protobuf,
``opentelemetry-proto``) and keeps the spans, flattened into :class:`ReceivedSpan` values
with their resource and attributes as plain Python. ``status`` makes it answer something
else than 200 (503: a collector refusing), ``delay_s`` makes it slow.

Example::

    with OtlpReceiver() as receiver:
        wb = ms.Workbench.open(root, telemetry={"endpoint": receiver.url})
        ...
        spans = receiver.wait_for(lambda spans: len(spans) >= 5)
"""

from __future__ import annotations

import gzip
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

__all__ = ["OtlpReceiver", "ReceivedSpan", "free_port"]


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as the receiver decoded it (ids as hex, times in ns)."""

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: str
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    status_code: str
    status_message: str
    resource: dict[str, Any] = field(default_factory=dict)
    scope: str = ""


def _value(any_value: Any) -> Any:
    which = any_value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [_value(v) for v in any_value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in any_value.kvlist_value.values}
    return getattr(any_value, which)


def decode(body: bytes) -> list[ReceivedSpan]:
    """The spans of one ``ExportTraceServiceRequest``."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )
    from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    out = []
    for resource_spans in request.resource_spans:
        resource = {kv.key: _value(kv.value) for kv in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                out.append(
                    ReceivedSpan(
                        name=span.name,
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex(),
                        kind=Span.SpanKind.Name(span.kind),
                        start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano,
                        attributes={kv.key: _value(kv.value) for kv in span.attributes},
                        status_code=Status.StatusCode.Name(span.status.code),
                        status_message=span.status.message,
                        resource=resource,
                        scope=scope_spans.scope.name,
                    )
                )
    return out


def count_spans(body: bytes) -> int:
    """How many spans one ``ExportTraceServiceRequest`` holds (parsed, not converted)."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    return sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)


class OtlpReceiver:
    """Serves ``POST /v1/traces`` on 127.0.0.1 (a free port) in a thread.

    Attributes:
        spans: every span received (accepted requests only).
        requests: how many export requests arrived (refused ones included).
        status: the HTTP status to answer (200 accepts).
        delay_s: how long to wait before answering.
        port: where to listen (default: a free port).
    """

    def __init__(
        self, *, status: int = 200, delay_s: float = 0.0, port: int = 0, count_only: bool = False
    ) -> None:
        self.status = status
        self.delay_s = delay_s
        self.count_only = count_only
        self.count = 0
        self.spans: list[ReceivedSpan] = []
        self.requests = 0
        self._cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                encoding = (self.headers.get("Content-Encoding") or "").lower()
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                # a request sent through a proxy names the whole URL: this receiver
                # also stands for a proxy in front of the collector
                path = urlsplit(self.path).path if "://" in self.path else self.path
                receiver._received(path, body, dict(self.headers))
                if receiver.delay_s:
                    time.sleep(receiver.delay_s)  # a slow collector, on purpose
                code = receiver.status if path == "/v1/traces" else 404
                from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
                    ExportTraceServiceResponse,
                )

                payload = ExportTraceServiceResponse().SerializeToString() if code == 200 else b""
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/x-protobuf")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up first (its timeout): what a slow collector sees

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.headers: list[dict[str, str]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1/traces"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _received(self, path: str, body: bytes, headers: dict[str, str]) -> None:
        if self.count_only and path == "/v1/traces":
            with self._cond:
                self.requests += 1
                self.count += count_spans(body)
                self._cond.notify_all()
            return
        spans = decode(body) if path == "/v1/traces" else []
        with self._cond:
            self.requests += 1
            self.headers.append(headers)
            if self.status == 200:
                self.spans.extend(spans)
            self._cond.notify_all()

    def wait_for(
        self, done: Callable[[list[ReceivedSpan]], bool], timeout_s: float = 15.0
    ) -> list[ReceivedSpan]:
        """Wait until ``done(spans)`` holds; fail with what arrived after ``timeout_s``."""
        end = time.monotonic() + timeout_s
        with self._cond:
            while not done(self.spans):
                left = end - time.monotonic()
                if left <= 0:
                    names = sorted(s.name for s in self.spans)
                    raise AssertionError(f"receiver timed out; got {len(names)} spans: {names}")
                self._cond.wait(left)
            return list(self.spans)

    def wait_requests(self, count: int, timeout_s: float = 15.0) -> None:
        """Wait until ``count`` export requests arrived (accepted or not)."""
        end = time.monotonic() + timeout_s
        with self._cond:
            while self.requests < count:
                left = end - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"receiver got {self.requests} requests, not {count}")
                self._cond.wait(left)

    def start(self) -> OtlpReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> OtlpReceiver:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def free_port() -> int:
    """A port nothing listens on right now (bound, then released): a collector that is down."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main(argv: list[str] | None = None) -> int:
    """Serve on 127.0.0.1 until stopped, printing the traces URL on the first line (a
    collector in its own process, for benchmarks and manual checks)."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--status", type=int, default=200)
    parser.add_argument(
        "--count-only", action="store_true", help="parse and count spans, keep nothing"
    )
    args = parser.parse_args(argv)
    receiver = OtlpReceiver(status=args.status, port=args.port, count_only=args.count_only)
    receiver.start()
    print(receiver.url, flush=True)
    try:
        for _line in sys.stdin:  # serve until stdin closes
            pass
    finally:
        receiver.stop()
    received = receiver.count if receiver.count_only else len(receiver.spans)
    print(f"received {received} spans in {receiver.requests} requests", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
