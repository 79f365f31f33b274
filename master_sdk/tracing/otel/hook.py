"""The telemetry commit hook: committed events to the export pipeline.

:class:`TelemetryHook` observes a store's commits. ``after_commit`` runs once a commit is
durable, so spans are only ever built from what the store holds; it copies what it needs
(the commit's records are reused by the engine afterwards) into tuples, made by C-level
getters, and queues them — about a microsecond per commit on the run's path, whatever the
collector does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from master_sdk.tracing.otel.spans import RunInfo, StepRows

if TYPE_CHECKING:
    from master_sdk.config.telemetry import TelemetrySettings
    from master_sdk.tracing.otel.pipeline import TelemetryPipeline

__all__ = ["NamedEvent", "TelemetryHook", "open_telemetry"]


_RUN_FIELDS = (
    "run_id",
    "product",
    "flow",
    "status",
    "created_us",
    "error",
    "tokens_in",
    "tokens_out",
    "cost_usd",
    "steps_used",
    "tool_calls",
    "model_calls",
)
_NO_CONTENT = (None, None)
_new = tuple.__new__


@dataclass(frozen=True, slots=True)
class NamedEvent:
    """A trace event with names, read back from a trace frame (the shape of
    ``memory.store.TraceEvent``)."""

    seq: int
    ts_us: int
    event: str
    step_id: str | None
    step_type: str | None
    name: str | None
    status: str | None
    duration_ms: float | None
    tokens_in: int | None
    tokens_out: int | None
    cost_usd: float | None
    attrs: dict[str, Any] | None


class TelemetryHook:
    """A commit hook feeding :class:`TelemetryPipeline` (see the module docstring)."""

    def __init__(self, pipeline: TelemetryPipeline) -> None:
        self.pipeline = pipeline
        self._content = content = pipeline.settings.capture_content
        # a commit's run record as a RunInfo and its step attempts as (step_id, attempt,
        # started_us[, output]) tuples, copied by C getters: no Python frame per field
        self._run: Callable[[Any], tuple[Any, ...]]
        self._step: Callable[[Any], tuple[Any, ...]]
        if content:
            self._run = attrgetter(*_RUN_FIELDS, "inputs", "output")
            self._tail: tuple[Any, ...] = ()
            self._step = attrgetter("step_id", "attempt", "started_us", "output")
        else:
            self._run = attrgetter(*_RUN_FIELDS)
            self._tail = _NO_CONTENT
            self._step = attrgetter("step_id", "attempt", "started_us")
        self._submit = pipeline.submit

    def before_commit(self, commit: Any) -> None:
        """Nothing: spans come from durable commits only."""

    def after_commit(self, commit: Any) -> None:
        """Queue the commit's events for the background exporter: a copy of the list
        (the engine reuses it), the run's counters as a :class:`RunInfo` and the steps'
        starts as tuples (:meth:`TelemetryPipeline.submit`). The events themselves were
        scrubbed before they were stored; nothing is redacted, built or encoded here, on
        the run's own thread."""
        changes = commit.changes
        events = changes.events
        if events:
            steps = changes.steps
            self._submit(
                _new(RunInfo, self._run(commit.run) + self._tail),
                tuple(events),
                StepRows(map(self._step, steps.values())) if steps else None,
            )

    def status(self) -> dict[str, Any]:
        """The pipeline's counters (:meth:`TelemetryPipeline.status`)."""
        return self.pipeline.status()

    def close(self, timeout_s: float | None = None) -> None:
        """Flush what is queued (bounded by ``timeout_s``) and stop."""
        self.pipeline.close(timeout_s)

    def __repr__(self) -> str:
        return f"TelemetryHook(endpoint={self.pipeline.settings.endpoint!r})"


def open_telemetry(settings: TelemetrySettings, *, scrub: Callable[[Any], Any]) -> TelemetryHook:
    """A hook exporting to ``settings.endpoint``.

    Args:
        settings: telemetry settings (must be ``enabled``).
        scrub: the workbench's redaction.

    Raises:
        ConfigError: the ``otel`` extra is missing (the message says how to install it).
    """
    from master_sdk.tracing.otel.pipeline import TelemetryPipeline

    return TelemetryHook(TelemetryPipeline(settings, scrub=scrub))
