"""The telemetry commit hook: committed events to the exporter process.

:class:`TelemetryHook` observes a store's commits. ``after_commit`` runs once a commit is
durable, so spans are only ever built from what the store holds; it copies what it needs
(the commit's records are reused by the engine afterwards) into plain tuples, made by
C-level getters, encodes them with ``marshal`` and writes them to the exporter process's
pipe in one non-blocking ``os.write`` (:class:`~.process.ExportProcess`) — a few
microseconds per commit on the run's path, whatever the collector does. Spans are built
and sent in that other process (:mod:`.exporter`).

A store that encodes its events into chunks (SQLite, ``memory/chunks.py``) hands the hook
the bytes it wrote (``Commit.encoded``): then no event is copied or encoded here at all —
the frame carries the run's figures, the steps' starts, the chunk's bytes and the name
codes the exporter has not learnt yet, and the exporter decodes the chunk as the store
reads it back.
"""

from __future__ import annotations

import importlib.util
import marshal
import pickle
import threading
from collections.abc import Callable
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from master_sdk.errors import ConfigError
from master_sdk.tracing.otel import ids
from master_sdk.tracing.otel.exporter import (
    HEAD,
    MARSHAL,
    MARSHAL_CHUNK,
    PICKLE,
    PICKLE_CHUNK,
    EventRow,
)

if TYPE_CHECKING:
    from master_sdk.config.telemetry import TelemetrySettings
    from master_sdk.tracing.otel.process import ExportProcess

__all__ = ["NamedEvent", "TelemetryHook", "open_telemetry"]


# RunInfo's fields but the status (a StrEnum, which marshal does not write: it goes as str)
_RUN_FIELDS = (
    "run_id",
    "product",
    "flow",
    "created_us",
    "error",
    "tokens_in",
    "tokens_out",
    "cost_usd",
    "steps_used",
    "tool_calls",
    "model_calls",
)
_event_row = attrgetter(*EventRow._fields)
_dumps = marshal.dumps
_head = HEAD.pack


NamedEvent = EventRow
"""A trace event with names, read back from a trace frame (the fields of
``memory.store.TraceEvent``, in order): the row the exporter process builds spans from."""


class TelemetryHook:
    """A commit hook feeding the exporter process (see the module docstring).

    Args:
        exporter: the runs' side of the exporter process.
    """

    def __init__(self, exporter: ExportProcess) -> None:
        self.exporter = exporter
        settings = exporter.settings
        self.settings = settings
        # a commit's run record and its step attempts as (step_id, attempt, started_us[,
        # output]) tuples, copied by C getters: no Python frame per field
        self._run: Callable[[Any], tuple[Any, ...]]
        self._step: Callable[[Any], tuple[Any, ...]]
        if settings.capture_content:
            self._run = attrgetter(*_RUN_FIELDS, "inputs", "output")
            self._step = attrgetter("step_id", "attempt", "started_us", "output")
        else:
            self._run = attrgetter(*_RUN_FIELDS)  # RunInfo's inputs and output stay None
            self._step = attrgetter("step_id", "attempt", "started_us")
        self._ratio = settings.sample_ratio
        self._sampled: dict[str, bool] = {}
        self._write = exporter.write
        # the name codes of the store whose chunks were last sent, and how many of them
        self._names: Any = None
        self._names_sent = 0
        self._lock = threading.Lock()

    def before_commit(self, commit: Any) -> None:
        """Nothing: spans come from durable commits only."""

    def after_commit(self, commit: Any) -> None:
        """Write the commit to the exporter in one frame, one ``os.write``
        (:meth:`.process.ExportProcess.write`): the run's counters, the steps' starts and
        the events — as the store encoded them when it hands them over (``commit.encoded``:
        the chunk's bytes, with the name codes not sent yet), else copied into plain
        tuples. The events themselves were scrubbed before they were stored; nothing is
        redacted or built here, on the run's own thread."""
        changes = commit.changes
        events = changes.events
        if not events:
            return
        run = commit.run
        if self._ratio < 1.0 and not self._keep(run.run_id):
            return
        steps = changes.steps
        encoded = commit.encoded
        item: tuple[Any, ...]
        if encoded is None:
            item = (
                self._run(run),
                str(run.status),
                tuple(map(_event_row, events)),
                tuple(map(self._step, steps.values())) if steps else None,
            )
            self._send(item, MARSHAL, PICKLE, len(events))
            return
        # under a lock, so that frames reach the pipe in the order their names were sent
        with self._lock:
            names = encoded.names
            if names is not self._names:  # another store: its codes replace the last one's
                self._names = names
                self._names_sent = 0
            new = None
            sent = self._names_sent
            if len(names) > sent:
                every = list(names.items())  # one C call: safe against a concurrent update
                new = (sent == 0, tuple(every[sent:]))
                self._names_sent = len(every)
            item = (
                self._run(run),
                str(run.status),
                encoded.data,
                encoded.metrics,
                encoded.attrs,
                new,
                tuple(map(self._step, steps.values())) if steps else None,
            )
            try:
                # version 2: no back-references, the cheapest to write for so few objects
                body = _dumps(item, 2)
            except ValueError:  # captured content marshal cannot write
                if self._send(item, MARSHAL_CHUNK, PICKLE_CHUNK, len(events), pickle_only=True):
                    return
            else:
                if self._write(_head(len(body), MARSHAL_CHUNK) + body, len(events)):
                    return
            self._names_sent = sent  # dropped: the next frame brings those names

    def _send(
        self,
        item: tuple[Any, ...],
        marshalled: bytes,
        pickled: bytes,
        n: int,
        *,
        pickle_only: bool = False,
    ) -> bool:
        """Write one frame; False when the commit was dropped (and counted)."""
        try:
            if pickle_only:
                raise ValueError("marshal cannot write it")
            body = _dumps(item)
            kind = marshalled
        except ValueError:  # a value marshal cannot write (captured content, an enum)
            try:
                body = pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception:  # not even pickle: the commit is dropped and counted
                self.exporter.drop(n)
                return False
            kind = pickled
        return self._write(_head(len(body), kind) + body, n)

    def _keep(self, run_id: str) -> bool:
        """The run's sampling decision (remembered; every process agrees on it)."""
        keep = self._sampled.get(run_id)
        if keep is None:
            keep = ids.sampled(ids.trace_id(run_id), self._ratio)
            if len(self._sampled) > 100_000:
                self._sampled.clear()
            self._sampled[run_id] = keep
        return keep

    def status(self) -> dict[str, Any]:
        """The export's counters (:meth:`.process.ExportProcess.status`)."""
        return self.exporter.status()

    def flush(self, timeout_s: float | None = None) -> bool:
        """Send what was committed so far; wait at most ``timeout_s``."""
        return self.exporter.flush(timeout_s)

    def close(self, timeout_s: float | None = None) -> None:
        """Flush what is queued (bounded by ``timeout_s``) and stop the exporter."""
        self.exporter.close(timeout_s)

    def __repr__(self) -> str:
        return f"TelemetryHook(endpoint={self.settings.endpoint!r})"


def open_telemetry(settings: TelemetrySettings, *, scrub: Callable[[Any], Any]) -> TelemetryHook:
    """A hook exporting to ``settings.endpoint`` through an exporter process.

    Args:
        settings: telemetry settings (must be ``enabled``).
        scrub: the workbench's redaction.

    Raises:
        ConfigError: the ``otel`` extra is missing (the message says how to install it).
    """
    from master_sdk.tracing.otel.process import ExportProcess

    _require_extra()
    exporter = ExportProcess(settings, scrub=scrub)
    exporter.start()
    return TelemetryHook(exporter)


def _require_extra() -> None:
    """The exporter process imports OpenTelemetry: check here, at open, that it can (without
    importing it into the runs' process)."""
    from master_sdk.tracing.otel.sender import INSTALL_HINT

    missing = None
    for name in ("opentelemetry.sdk", "opentelemetry.exporter.otlp.proto.http"):
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing = name
            break
    if missing is not None:
        raise ConfigError(
            f"telemetry is on but OpenTelemetry is not installed ({missing}): "
            f"{INSTALL_HINT}, or set enabled: false",
            file="configs/telemetry.yaml",
            key="enabled",
        )
