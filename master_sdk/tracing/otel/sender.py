"""The OpenTelemetry side: span records to SDK spans, sent over OTLP/HTTP (protobuf).

The only module that imports ``opentelemetry``, and only when telemetry is on: a missing
extra becomes a :class:`~master_sdk.errors.ConfigError` naming the install command. Spans
are built as finished SDK ``ReadableSpan`` values with the ids and times the builder
derived (no tracer, no global provider: the application's own OpenTelemetry setup is left
alone) and handed to the SDK's ``OTLPSpanExporter``, whose retries stay inside one
``timeout_s`` budget per request.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from master_sdk.errors import ConfigError

if TYPE_CHECKING:
    from master_sdk.tracing.otel.spans import SpanRecord

__all__ = ["INSTALL_HINT", "SpanSender", "quiet_here", "quiet_in_thread"]

INSTALL_HINT = "pip install 'master-sdk[otel]'"
_EXPORTER_LOGGERS = (
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.common.http",
)


class _ThreadQuiet(logging.Filter):
    """Drops the exporter's own failure logs in threads we run: a collector that is down
    would otherwise print a warning per batch into every notebook. The failures are
    counted in the telemetry status instead; other users of the exporter still log."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: set[int] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        return record.thread not in self.threads


_QUIET = _ThreadQuiet()
_QUIET_LOCK = threading.Lock()


def quiet_in_thread() -> None:
    """Silence the OTLP exporter's logs in the calling thread (see :class:`_ThreadQuiet`)."""
    with _QUIET_LOCK:
        _QUIET.threads.add(threading.get_ident())
        for name in _EXPORTER_LOGGERS:
            logger = logging.getLogger(name)
            if _QUIET not in logger.filters:
                logger.addFilter(_QUIET)


@contextmanager
def quiet_here() -> Iterator[None]:
    """Silence the OTLP exporter's logs in the calling thread for the ``with`` block (a
    past export reports its own counts)."""
    quiet_in_thread()
    try:
        yield
    finally:
        with _QUIET_LOCK:
            _QUIET.threads.discard(threading.get_ident())


class SpanSender:
    """Converts :class:`SpanRecord` values and exports them to one OTLP/HTTP endpoint.

    Args:
        endpoint: the traces URL, e.g. ``http://127.0.0.1:4318/v1/traces``.
        headers: request headers (secret values already resolved by the config loader).
        service_name: the ``service.name`` resource attribute.
        timeout_s: the budget of one export request, retries included.

    Raises:
        ConfigError: the ``otel`` extra is not installed.
    """

    def __init__(
        self,
        endpoint: str,
        *,
        headers: Mapping[str, str] | None = None,
        service_name: str = "master-sdk",
        timeout_s: float = 2.0,
    ) -> None:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                OTLPSpanExporter,
            )
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import ReadableSpan
            from opentelemetry.sdk.trace.export import SpanExportResult
            from opentelemetry.sdk.util.instrumentation import InstrumentationScope
            from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags
        except ImportError as exc:
            raise ConfigError(
                f"telemetry is on but OpenTelemetry is not installed ({exc.name}): "
                f"{INSTALL_HINT}, or set enabled: false",
                file="configs/telemetry.yaml",
                key="enabled",
            ) from None
        from master_sdk import __version__

        self.endpoint = endpoint
        self._exporter = OTLPSpanExporter(
            endpoint=endpoint,
            headers=dict(headers or {}),
            timeout=timeout_s,
        )
        self._resource = Resource({"service.name": service_name, "service.version": __version__})
        self._scope = InstrumentationScope("master_sdk", __version__)
        self._readable = ReadableSpan
        self._context = SpanContext
        self._sampled = TraceFlags(TraceFlags.SAMPLED)
        self._kinds = {"internal": SpanKind.INTERNAL, "client": SpanKind.CLIENT}
        self._ok = Status(StatusCode.UNSET)
        self._status = Status
        self._error_code = StatusCode.ERROR
        self._success = SpanExportResult.SUCCESS
        from master_sdk.tracing.otel.wire import Encoder

        self.encoder = Encoder(
            {"service.name": service_name, "service.version": __version__},
            ("master_sdk", __version__),
        )
        # the exporter's HTTP client (retries inside the timeout, compression, TLS) takes
        # bytes: our own encoding is several times cheaper than the SDK's span encoder.
        # It is not public API; without it, spans go through the public export().
        client = getattr(self._exporter, "_client", None)
        self._client = client if callable(getattr(client, "export", None)) else None
        _settle_environment(self._exporter, endpoint)

    @property
    def direct(self) -> bool:
        """Whether encoded spans (:func:`.wire.entry` values) can be sent as they are: the
        exporter's HTTP client is reachable. Otherwise :meth:`send` takes records only."""
        return self._client is not None

    def use_public_export(self) -> None:
        """Send span records through the SDK's public ``export()`` from now on."""
        self._client = None

    def convert(self, record: SpanRecord) -> Any:
        """One SDK ``ReadableSpan`` with the record's ids, times, attributes and status."""
        context = self._context(record.trace_id, record.span_id, False, self._sampled)
        parent = (
            self._context(record.trace_id, record.parent_id, False, self._sampled)
            if record.parent_id is not None
            else None
        )
        status = (
            self._status(self._error_code, record.error) if record.error is not None else self._ok
        )
        return self._readable(
            name=record.name,
            context=context,
            parent=parent,
            resource=self._resource,
            attributes=record.attributes,
            kind=self._kinds[record.kind],
            status=status,
            start_time=record.start_ns,
            end_time=record.end_ns,
            instrumentation_scope=self._scope,
        )

    def send(self, records: Sequence[SpanRecord] | Sequence[bytes]) -> tuple[bool, str | None]:
        """Export spans in one request — span records, or spans already encoded as
        :func:`.wire.entry` values (only when :attr:`direct`): whether the collector
        accepted them, and why not."""
        if not records:
            return True, None
        first = records[0]
        if self._client is None:
            if isinstance(first, bytes):
                raise TypeError("encoded spans need the exporter's HTTP client; send records")
            spans = [self.convert(r) for r in records]  # type: ignore[arg-type]
            ok = self._exporter.export(spans) == self._success
            return bool(ok), None if ok else "the exporter reported a failure"
        if isinstance(first, bytes):
            body = self.encoder.request_entries(records)  # type: ignore[arg-type]
        else:
            body = self.encoder.request(records)  # type: ignore[arg-type]
        result = self._client.export(body)
        if result.success:
            return True, None
        code = getattr(result, "status_code", None)
        why = getattr(result, "reason", None) or getattr(result, "error", None)
        return False, " ".join(str(p) for p in (code, why) if p) or "failed"

    def shutdown(self) -> None:
        """Stop the exporter (an export waiting to retry gives up at once)."""
        self._exporter.shutdown()  # type: ignore[no-untyped-call]  # the SDK leaves it untyped


def _settle_environment(exporter: Any, endpoint: str) -> None:
    """Resolve the environment's proxy and CA settings for ``endpoint`` once, now, on the
    exporter's ``requests`` session: by default ``requests`` reads the whole environment
    (and ``~/.netrc``) again on every request, which costs the process more CPU than
    encoding the batch. Proxy or CA variables changed later are seen when telemetry is
    opened again. The session is not public API; without it nothing changes."""
    transport = getattr(getattr(exporter, "_client", None), "_transport", None)
    session = getattr(transport, "_session", None)
    merge = getattr(session, "merge_environment_settings", None)
    if session is None or merge is None or not getattr(session, "trust_env", False):
        return
    settled = merge(endpoint, {}, None, None, None)
    session.proxies.update(settled.get("proxies") or {})
    if settled.get("verify") is not None:
        session.verify = settled["verify"]
    if settled.get("cert"):
        session.cert = settled["cert"]
    session.trust_env = False
