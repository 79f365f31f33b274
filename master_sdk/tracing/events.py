"""Trace event vocabulary and the per-run event buffer.

Events are stored as small integer codes (compact rows, fast categorical columns);
these tuples are append-only — never reorder or remove an entry, stores depend on them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

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

RUN_STATUSES: tuple[str, ...] = (
    "running",
    "waiting_approval",
    "waiting_input",
    "completed",
    "rejected",
    "failed",
    "blocked",
    "interrupted",
)
ENDED: frozenset[str] = frozenset({"completed", "rejected", "failed", "blocked"})

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
    """Events of one run waiting for the next commit; ``seq`` continues from the store."""

    seq: int
    rows: list[EventRow]

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
        """Append one event (stored with the run's next commit)."""
        self.seq += 1
        self.rows.append(
            (
                self.seq,
                now_us(),
                EVENT_CODE[event],
                step_id,
                STEP_TYPE_CODE[step_type] if step_type is not None else None,
                name,
                STATUS_CODE[status] if status is not None else None,
                duration_ms,
                tokens_in,
                tokens_out,
                cost_usd,
                attrs,
            )
        )
