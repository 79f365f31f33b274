"""Named points where a test can make the process die, to prove crash safety.

The point comes from configuration (``app.crash_point`` / ``MASTER_CRASH_POINT``, read
by the config loader), never from the environment directly. ``"name"`` dies at the
first hit of ``name``; ``"name@3"`` at the third. The process ends with ``os._exit``:
no cleanup, no flush, no rollback — like a power cut or ``kill -9``.
"""

from __future__ import annotations

import os

CRASH_EXIT_CODE = 86

POINTS: tuple[str, ...] = (
    "before_step_start",  # a step is about to record that it started
    "after_step_start",  # its start is committed; its work has not begun
    "after_tool_return",  # a tool (or agent) returned; its result is not committed
    "after_commit",  # any commit just finished
    "commit:step_start",  # inside the transaction recording a step start, before COMMIT
    "commit:approval",  # inside the transaction recording an approval (whatever follows it)
    "commit:input",  # inside the transaction recording a user input (whatever follows it)
    "commit:pause",  # inside the transaction pausing a run, before COMMIT
    "commit:end",  # inside the transaction ending a run, before COMMIT
    "commit:interrupted",  # inside the transaction marking a run interrupted, before COMMIT
    "commit:import",  # inside the transaction importing runs, before COMMIT
)


class CrashPoints:
    """Calls ``os._exit`` when the configured point is hit (a no-op when none is set)."""

    __slots__ = ("_count", "_name", "_nth")

    def __init__(self, spec: str | None) -> None:
        self._name: str | None = None
        self._nth = 1
        self._count = 0
        if spec:
            name, _, nth = spec.partition("@")
            if name not in POINTS:
                raise ValueError(f"unknown crash point '{name}'; known: {', '.join(POINTS)}")
            self._name = name
            self._nth = int(nth) if nth else 1

    @property
    def armed(self) -> bool:
        """True when a crash point is configured."""
        return self._name is not None

    def __call__(self, point: str) -> None:
        if self._name is None or point != self._name:
            return
        self._count += 1
        if self._count == self._nth:
            os._exit(CRASH_EXIT_CODE)
