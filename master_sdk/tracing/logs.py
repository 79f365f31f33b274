"""Trace events as JSON lines, through a dedicated structlog logger.

Nothing is set up unless ``app.log_file`` is set or ``app.log_level`` is ``INFO`` or
``DEBUG``; then every committed trace event is written as one JSON object per line, to the
log file (appended) or, without one, to standard error. Events are logged only after the
commit that stores them succeeded, so the log never shows what the store does not hold.

The logger is private to the workbench: it is built with :func:`structlog.wrap_logger` and
its own processors, never with ``structlog.configure``, so an application's own structlog
setup is left exactly as it was. The processor chain redacts every event (keys and values)
before it is rendered.

Each event's level follows what it means: ``error`` for a failed step or run, ``warning``
for policy violations, blocks, retries, interruptions and aborts, ``info`` for the rest.
``log_level`` filters below that (``WARNING``, the default, keeps violations and failures).

Example line::

    {"run_id": "0190...", "product": "demo", "flow": "greet", "seq": 3, "ts": "2025-...",
     "step_id": "echo", "step_type": "tool", "name": "echo", "status": "ok",
     "duration_ms": 0.1, "event": "tool_called", "level": "info"}
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, MutableMapping, Sequence
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from master_sdk.tracing.events import EVENTS

if TYPE_CHECKING:
    from master_sdk.memory.store import Commit, RunRecord, TraceEvent

__all__ = ["EVENT_LEVELS", "TraceLog"]

_ERROR = frozenset({"step_failed", "run_failed"})
_WARNING = frozenset(
    {
        "policy_violation",
        "run_blocked",
        "model_retry",
        "tool_retry",
        "step_retried",
        "run_interrupted",
        "run_aborted",
        "flow_change_allowed",
    }
)
EVENT_LEVELS: dict[str, int] = {
    name: logging.ERROR if name in _ERROR else logging.WARNING if name in _WARNING else logging.INFO
    for name in EVENTS
}
"""The level each trace event is logged at."""

_LEVEL_NAMES = {
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARNING": logging.WARNING,
    "ERROR": logging.ERROR,
}
_FIELDS = (
    "seq",
    "ts",
    "event",
    "step_id",
    "step_type",
    "name",
    "status",
    "duration_ms",
    "tokens_in",
    "tokens_out",
    "cost_usd",
    "attrs",
)


class TraceLog:
    """Writes committed trace events as JSON lines (see module docstring).

    Args:
        level: ``app.log_level``.
        file: ``app.log_file`` resolved to a path, or None.
        scrub: the workbench's redaction, applied to each event in the processor chain.
        stream: where events go without a file (default: standard error).

    A commit hook: the workbench adds it to its store's hooks when it is enabled.

    Attributes:
        enabled: whether anything is logged; when False, the workbench does not add it.
    """

    def __init__(
        self,
        *,
        level: str,
        file: Path | None,
        scrub: Callable[[Any], Any],
        stream: TextIO | None = None,
    ) -> None:
        self.enabled = file is not None or level in ("INFO", "DEBUG")
        self.file = file
        self._min = _LEVEL_NAMES.get(level, logging.WARNING)
        self._handle: TextIO | None = None
        self._logger: Any = None
        if not self.enabled:
            return
        import structlog

        if file is not None:
            file.parent.mkdir(parents=True, exist_ok=True)
            # line-buffered: each event reaches the file when it is written
            self._handle = file.open("a", encoding="utf-8", buffering=1)
        target = self._handle or stream or sys.stderr

        def redact(
            _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
        ) -> MutableMapping[str, Any]:
            clean: MutableMapping[str, Any] = scrub(dict(event_dict))
            return clean

        self._logger = structlog.wrap_logger(
            structlog.WriteLogger(target),
            processors=[
                structlog.processors.add_log_level,
                redact,
                structlog.processors.JSONRenderer(ensure_ascii=False, default=str),
            ],
            wrapper_class=structlog.make_filtering_bound_logger(self._min),
            cache_logger_on_first_use=True,
        )

    # as a commit hook (master_sdk.memory.store.CommitHook): events are logged only once
    # the commit holding them is durable

    def before_commit(self, commit: Commit) -> None:
        """Nothing: a commit may still fail."""

    def after_commit(self, commit: Commit) -> None:
        """Log the commit's events."""
        self.commit(commit.run, commit.events)

    def commit(self, run: RunRecord, events: Sequence[TraceEvent]) -> None:
        """Log the events of one successful commit of ``run`` (best effort: a log that
        cannot be written never fails the run)."""
        logger = self._logger
        if logger is None:
            return
        minimum = self._min
        for row in events:
            level = EVENT_LEVELS.get(row.event, logging.INFO)
            if level < minimum:
                continue
            fields: dict[str, Any] = {
                "run_id": run.run_id,
                "product": run.product,
                "flow": run.flow,
            }
            for key, value in zip(_FIELDS, _decoded(row), strict=True):
                if value is not None and key != "event":
                    fields[key] = value
            # the commit is done: nothing the log does may fail the run now
            with suppress(Exception):
                logger.log(level, row.event, **fields)

    def close(self) -> None:
        """Close the log file (idempotent)."""
        handle, self._handle = self._handle, None
        self._logger = None
        if handle is not None:
            with suppress(OSError):
                handle.close()


def _decoded(row: TraceEvent) -> tuple[Any, ...]:
    return (
        row.seq,
        datetime.fromtimestamp(row.ts_us / 1e6, tz=UTC).isoformat(),
        row.event,
        row.step_id,
        row.step_type,
        row.name,
        row.status,
        row.duration_ms,
        row.tokens_in,
        row.tokens_out,
        row.cost_usd,
        row.attrs,
    )
