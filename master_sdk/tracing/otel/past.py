"""Past runs to OpenTelemetry: read the trace frame, build the same spans, send them.

``master trace export --otlp URL`` and :meth:`Workbench.export_telemetry` use this. It
reads the store through the public frames (``wb.traces()``, ``wb.runs()``, already
redacted) and feeds each run's whole trace to the same :class:`SpanBuilder` the live
export uses, so a run exported live and again from the store gives the same spans, with
the same ids. Sending waits for each batch (this is an explicit command, not a run).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from master_sdk.tracing.otel.hook import NamedEvent
from master_sdk.tracing.otel.spans import RunInfo, SpanBuilder, StepStart

if TYPE_CHECKING:
    import pandas as pd

    from master_sdk.workbench import Workbench

__all__ = ["export_runs", "runs_from_frames"]


def export_runs(
    wb: Workbench,
    *,
    endpoint: str | None = None,
    since: datetime | str | None = None,
    runs: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Send the runs asked for (all by default; ``since``: runs with events at or after
    it) to ``endpoint`` (default: the configured one). Every run asked for is sent,
    whatever ``sample_ratio`` says. Returns counts of runs, spans, exported and failed."""
    from master_sdk.tracing.otel.sender import SpanSender

    settings = wb.settings.telemetry
    sender = SpanSender(
        endpoint or settings.endpoint,
        headers=settings.all_headers(),
        service_name=settings.service_name,
        timeout_s=settings.timeout_s,
    )
    builder = SpanBuilder(
        semconv=settings.semconv, capture_content=settings.capture_content, scrub=wb._redact
    )
    traces = _traces(wb, since=since, runs=runs)
    totals = {"runs": 0, "spans": 0, "exported": 0, "failed": 0}
    batch: list[Any] = []
    try:
        for info, events in runs_from_frames(traces, wb.runs(), content_of=_content(wb)):
            starts = _starts(wb, info.run_id) if settings.capture_content else None
            records = builder.build(info, events, starts=starts)
            builder.forget(info.run_id)
            totals["runs"] += 1
            totals["spans"] += len(records)
            batch.extend(records)
            if len(batch) >= settings.batch_size:
                _send(sender, batch, totals)
        _send(sender, batch, totals)
    finally:
        sender.shutdown()
    return totals


def _send(sender: Any, batch: list[Any], totals: dict[str, int]) -> None:
    from master_sdk.tracing.otel.sender import quiet_here

    if not batch:
        return
    with quiet_here():  # the counts say what failed; no exporter log lines on top
        ok, _why = sender.send(batch)
    totals["exported" if ok else "failed"] += len(batch)
    batch.clear()


def _traces(
    wb: Workbench, *, since: datetime | str | None, runs: Sequence[str] | None
) -> pd.DataFrame:
    import pandas as pd

    if runs:
        frames = [wb.traces(run_id=run_id) for run_id in runs]
        return pd.concat(frames, ignore_index=True) if frames else wb.traces(run_id="")
    if since is None:
        return wb.traces()
    recent = wb.traces(since=since)
    # whole traces of the runs that moved since then: a span needs its start
    wanted = set(recent["run_id"].astype(str).unique())
    every = wb.traces()
    return every[every["run_id"].astype(str).isin(wanted)]


def _content(wb: Workbench) -> Any:
    if not wb.settings.telemetry.capture_content:
        return None

    def read(run_id: str) -> tuple[Any, Any]:
        run = wb.get_run(run_id, recover=False)
        return run.inputs, run.output

    return read


def _starts(wb: Workbench, run_id: str) -> dict[str, StepStart]:
    steps = wb.get_run(run_id, recover=False).steps()
    rows: list[Any] = list(steps.itertuples(index=False))
    return {str(row.step_id): StepStart(int(row.attempt), None, row.output) for row in rows}


def runs_from_frames(
    traces: pd.DataFrame, runs: pd.DataFrame, *, content_of: Any = None
) -> list[tuple[RunInfo, list[NamedEvent]]]:
    """Each run of a trace frame with its events in ``seq`` order, and what the runs
    frame says of it."""
    by_id: dict[str, Any] = {str(row.run_id): row for row in runs.itertuples(index=False)}
    out: list[tuple[RunInfo, list[NamedEvent]]] = []
    if traces.empty:
        return out
    ordered = traces.sort_values(["run_id", "seq"], kind="stable")
    for run_id, group in ordered.groupby("run_id", observed=True, sort=False):
        events = [_event(row) for row in group.itertuples(index=False)]
        row: Any = by_id.get(str(run_id))
        first = group.iloc[0]
        inputs = output = None
        if content_of is not None and row is not None:
            inputs, output = content_of(str(run_id))
        out.append(
            (
                RunInfo(
                    run_id=str(run_id),
                    product=str(first["product"]),
                    flow=str(first["flow"]),
                    status=str(row.status) if row is not None else "unknown",
                    created_us=_us(row.created_at) if row is not None else events[0].ts_us,
                    error=_text(row.error) if row is not None else None,
                    tokens_in=int(row.tokens_in) if row is not None else 0,
                    tokens_out=int(row.tokens_out) if row is not None else 0,
                    cost_usd=float(row.cost_usd) if row is not None else 0.0,
                    steps_used=int(row.steps) if row is not None else 0,
                    tool_calls=int(row.tool_calls) if row is not None else 0,
                    model_calls=int(row.model_calls) if row is not None else 0,
                    inputs=inputs,
                    output=output,
                ),
                events,
            )
        )
    return out


def _event(row: Any) -> NamedEvent:
    return NamedEvent(
        int(row.seq),
        _us(row.ts),
        str(row.event),
        _text(row.step_id),
        _text(row.step_type),
        _text(row.name),
        _text(row.status),
        _number(row.duration_ms),
        _int(row.tokens_in),
        _int(row.tokens_out),
        _number(row.cost_usd),
        row.attrs if isinstance(row.attrs, dict) else None,
    )


def _missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        import pandas as pd

        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _text(value: Any) -> str | None:
    return None if _missing(value) else str(value)


def _number(value: Any) -> float | None:
    if _missing(value):
        return None
    number = float(value)
    return None if math.isnan(number) else number


def _int(value: Any) -> int | None:
    return None if _missing(value) else int(value)


def _us(moment: Any) -> int:
    if hasattr(moment, "value"):
        return int(moment.value) // 1000  # a pandas Timestamp counts nanoseconds
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    delta: timedelta = aware - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
