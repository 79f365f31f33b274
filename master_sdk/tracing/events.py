"""Trace event vocabulary and the per-run event buffer.

Events are stored as small integer codes (compact rows, fast categorical columns);
these tuples are append-only — never reorder or remove an entry, stores depend on them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from master_sdk.contracts.status import ENDED as _ENDED
from master_sdk.contracts.status import RUN_STATUSES as _RUN_STATUSES
from master_sdk.memory.store import TraceEvent

EVENTS: tuple[str, ...] = (
    "run_started",
    "step_started",
    "step_completed",
    "step_failed",
    "step_skipped",
    "tool_called",
    "model_called",
    "model_retry",
    "approval_requested",
    "approval_decided",
    "input_requested",
    "input_received",
    "policy_violation",
    "run_completed",
    "run_failed",
    "run_rejected",
    "run_blocked",
    "run_interrupted",
    "run_resumed",
    "run_aborted",
    "step_retried",
    "flow_change_allowed",
    "tool_retry",
    "model_call_unconfirmed",
    "memory_added",
    "memory_searched",
    "memory_deleted",
    "step_copied",
    "model_call_reused",
)
EVENT_CODE: dict[str, int] = {name: code for code, name in enumerate(EVENTS)}

STEP_TYPES: tuple[str, ...] = ("tool", "agent", "hitl", "user_input")
STEP_TYPE_CODE: dict[str, int] = {name: code for code, name in enumerate(STEP_TYPES)}

STATUSES: tuple[str, ...] = (
    "running",
    "waiting_approval",
    "waiting_input",
    "completed",
    "rejected",
    "failed",
    "blocked",
    "interrupted",
    "skipped",
    "ok",
    "error",
    "approved",
    "aborted",
)
STATUS_CODE: dict[str, int] = {name: code for code, name in enumerate(STATUSES)}

# the run statuses live in one place (contracts/status.py); re-exported for older imports
RUN_STATUSES = _RUN_STATUSES
ENDED = _ENDED

EventRow = tuple[
    int,  # seq
    int,  # ts_us
    int,  # event code
    str | None,  # step_id
    int | None,  # step type code
    str | None,  # name
    int | None,  # status code
    float | None,  # duration_ms
    int | None,  # tokens_in
    int | None,  # tokens_out
    float | None,  # cost_usd
    dict[str, Any] | None,  # attrs
]


def now_us() -> int:
    """Wall-clock microseconds since the epoch (UTC)."""
    return time.time_ns() // 1000


@dataclass(slots=True)
class TraceBuffer:
    """Events of one run waiting for the next commit; ``seq`` continues from the store.

    ``clock`` stamps each event (the engine passes its own: a test clock in deterministic mode).
    With ``clock_durations`` (deterministic mode) an event's ``duration_ms`` is measured on
    that clock too, as the time since the run's previous event, instead of the wall-clock
    figure the tool executor or the router measured: the same on every execution.
    """

    seq: int
    rows: list[TraceEvent]
    clock: Callable[[], int] = field(default=now_us)
    clock_durations: bool = False
    _last_us: int | None = None

    def emit(
        self,
        event: str,
        *,
        step_id: str | None = None,
        step_type: str | None = None,
        name: str | None = None,
        status: str | None = None,
        duration_ms: float | None = None,
        tokens_in: int | None = None,
        tokens_out: int | None = None,
        cost_usd: float | None = None,
        attrs: dict[str, Any] | None = None,
    ) -> None:
        """Append one event (stored with the run's next commit).

        Raises:
            KeyError: ``event``, ``step_type`` or ``status`` is not in the vocabulary.
        """
        if (
            event not in EVENT_CODE
            or (step_type is not None and step_type not in STEP_TYPE_CODE)
            or (status is not None and status not in STATUS_CODE)
        ):
            raise KeyError(f"not in the trace vocabulary: {event}, {step_type}, {status}")
        self.seq += 1
        at = self.clock()
        if self.clock_durations and duration_ms is not None:
            duration_ms = (at - (self._last_us if self._last_us is not None else at)) / 1000
        self._last_us = at
        self.rows.append(
            TraceEvent(
                self.seq,
                at,
                event,
                step_id,
                step_type,
                name,
                status,
                duration_ms,
                tokens_in,
                tokens_out,
                cost_usd,
                attrs,
            )
        )
