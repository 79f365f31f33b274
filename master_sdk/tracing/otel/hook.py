"""The telemetry commit hook: committed events to the export pipeline.

:class:`TelemetryHook` observes a store's commits. ``after_commit`` runs once a commit is
durable, so spans are only ever built from what the store holds; it copies what it needs
(the commit's records are reused by the engine afterwards) and queues it — a few
microseconds on the run's path, whatever the collector does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from master_sdk.tracing.otel.spans import RunInfo, StepStart

if TYPE_CHECKING:
    from master_sdk.config.telemetry import TelemetrySettings
    from master_sdk.tracing.otel.pipeline import TelemetryPipeline

__all__ = ["TelemetryHook", "open_telemetry", "run_info"]


def run_info(run: Any, *, content: bool = False) -> RunInfo:
    """What the root span needs of a run record, copied (the record keeps changing)."""
    return RunInfo(
        run.run_id,
        run.product,
        run.flow,
        str(run.status),
        run.created_us,
        run.error,
        run.tokens_in,
        run.tokens_out,
        run.cost_usd,
        run.steps_used,
        run.tool_calls,
        run.model_calls,
        run.inputs if content else None,
        run.output if content else None,
    )


def step_starts(steps: Mapping[int, Any], *, content: bool = False) -> dict[str, StepStart]:
    """The step attempts a commit writes, by step id: where a step that started in an
    earlier commit (another process, before a pause) gets its start time and attempt."""
    return {
        row.step_id: StepStart(row.attempt, row.started_us, row.output if content else None)
        for row in steps.values()
    }


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
        self._content = pipeline.settings.capture_content

    def before_commit(self, commit: Any) -> None:
        """Nothing: spans come from durable commits only."""

    def after_commit(self, commit: Any) -> None:
        """Queue the commit's events for the background exporter: a copy of the list
        (the engine reuses it), the run's counters and the steps' starts as named tuples.
        The events themselves were scrubbed before they were stored; nothing is redacted,
        built or encoded here, on the run's own thread."""
        changes = commit.changes
        events = changes.events
        if not events:
            return
        steps = changes.steps
        self.pipeline.submit(
            run_info(commit.run, content=self._content),
            tuple(events),
            step_starts(steps, content=self._content) if steps else None,
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
