"""Named points where a test can make the process die, to prove crash safety.

The point comes from configuration (``app.crash_point`` / ``MASTER_CRASH_POINT``, read
by the config loader), never from the environment directly. ``"name"`` dies at the
first hit of ``name``; ``"name@3"`` at the third. The process ends with ``os._exit``:
no cleanup, no flush, no rollback — like a power cut or ``kill -9``.

:class:`CrashPoints` is a commit hook (:class:`~master_sdk.memory.store.CommitHook`), the
one mechanism every observer of commits uses: each point is a moment around a commit, so
a test dies exactly where a real crash would leave the store.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from master_sdk.memory.store import Commit

CRASH_EXIT_CODE = 86

POINTS: tuple[str, ...] = (
    "before_step_start",  # a tool or agent step's start is about to be written
    "after_step_start",  # its start is committed; its work (or model request) has not begun
    "after_tool_return",  # a tool (or agent) returned; its result is not committed
    "after_commit",  # any commit just finished
    "commit:step_start",  # inside the transaction recording a step start, before COMMIT
    "commit:approval",  # inside the transaction recording an approval (whatever follows it)
    "commit:input",  # inside the transaction recording a user input (whatever follows it)
    "commit:pause",  # inside the transaction pausing a run, before COMMIT
    "commit:end",  # inside the transaction ending a run, before COMMIT
    "commit:interrupted",  # inside the transaction marking a run interrupted, before COMMIT
    "commit:reservation",  # inside the transaction reserving a further model request
    "commit:reply",  # inside the transaction keeping a model reply just seen (in a batch)
    "after_reply",  # a kept model reply is durable; the agent has not seen it yet
    "after_decision",  # an approval, rejection or input is durable; the run not continued
    "commit:vectors",  # inside the transaction writing vector memory entries, before COMMIT
    "after_vectors",  # vector memory entries were committed; the step has not returned
)


class CrashPoints:
    """A commit hook calling ``os._exit`` when the configured point is hit (a no-op when
    none is set).

    Where each point falls: ``before_step_start`` and ``commit:<label>`` inside the commit
    carrying it, before it is durable (a commit carrying a step's start is labelled
    ``step_start``, or ``approval`` / ``input`` when it also carries that decision);
    ``after_tool_return`` inside the first commit carrying a tool's or agent's result;
    ``after_step_start`` and ``after_commit`` once such a commit is durable.
    """

    __slots__ = ("_count", "_lock", "_name", "_nth")

    def __init__(self, spec: str | None) -> None:
        self._name: str | None = None
        self._nth = 1
        self._count = 0
        self._lock = threading.Lock()
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

    def before_commit(self, commit: Commit) -> None:
        """Inside the transaction: ``before_step_start``, ``after_tool_return``,
        ``commit:<label>``."""
        if self._name is None:
            return
        if _starts_step(commit):
            self.hit("before_step_start")
        if any(
            step.type in ("tool", "agent") and step.status == "completed"
            for step in commit.changes.steps.values()
        ):
            self.hit("after_tool_return")
        self.hit(f"commit:{commit.label}")

    def after_commit(self, commit: Commit) -> None:
        """Once durable: ``after_step_start``, ``after_commit``."""
        if self._name is None:
            return
        if _starts_step(commit):
            self.hit("after_step_start")
        if commit.label in ("approval", "input"):
            self.hit("after_decision")
        elif commit.label == "reply":
            self.hit("after_reply")
        self.hit("after_commit")

    def hit(self, point: str) -> None:
        """Count a hit of ``point``; die at the configured one."""
        if point != self._name:
            return
        with self._lock:
            self._count += 1
            if self._count == self._nth:
                os._exit(CRASH_EXIT_CODE)

    def __repr__(self) -> str:
        return f"CrashPoints({self._name!r}@{self._nth})" if self._name else "CrashPoints(off)"


def _starts_step(commit: Commit) -> bool:
    """Whether the commit records that a tool or agent step started."""
    return any(step.status == "running" for step in commit.changes.steps.values())
