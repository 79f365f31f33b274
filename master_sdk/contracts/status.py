"""The one vocabulary of run statuses, used by the engine, the store's frames, the views and
the CLI.

A run is in exactly one status. What may happen next depends only on it:

| status | ended | what continues it |
|---|---|---|
| ``running`` | no | its executor (a live process and workbench) |
| ``waiting_approval`` | no | ``approve`` / ``reject`` |
| ``waiting_input`` | no | ``submit`` |
| ``decided`` | no | any executor: ``wb.work()``, ``master work`` (a decision, not yet acted on) |
| ``interrupted`` | no | ``retry`` / ``skip`` / ``abort`` (its executor died or gave up) |
| ``failed`` | no | ``retry`` / ``skip`` / ``abort`` (a step raised; fix the cause, retry) |
| ``completed`` | yes | nothing |
| ``rejected`` | yes | nothing |
| ``blocked`` | yes | nothing (a policy stopped it) |
| ``aborted`` | yes | nothing (someone gave up on it) |

``failed`` is deliberately *not* ended: a step that raised can be retried once its cause is
fixed, so :attr:`RunStatus.ended` agrees with what ``Run.retry`` accepts. Giving up on a run
is ``abort``, which ends it as ``aborted``.

Example:
    >>> RunStatus("failed").ended, RunStatus.ABORTED.ended
    (False, True)
    >>> RunStatus.INTERRUPTED.recoverable
    True
"""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    """A run's status. A ``StrEnum``: each member equals its string (``"completed"``)."""

    RUNNING = "running"
    WAITING_APPROVAL = "waiting_approval"
    WAITING_INPUT = "waiting_input"
    COMPLETED = "completed"
    REJECTED = "rejected"
    FAILED = "failed"
    BLOCKED = "blocked"
    INTERRUPTED = "interrupted"
    ABORTED = "aborted"
    DECIDED = "decided"

    def __repr__(self) -> str:
        # shown like the plain string it equals, so notebooks print 'completed' as before
        return repr(self.value)

    @property
    def ended(self) -> bool:
        """No action can continue the run (completed, rejected, blocked, aborted)."""
        return self in _ENDED

    @property
    def paused(self) -> bool:
        """The run waits for a human decision or data (approve, reject, submit)."""
        return self in _PAUSED

    @property
    def recoverable(self) -> bool:
        """``retry``, ``skip`` and ``abort`` apply (interrupted or failed)."""
        return self in _RECOVERABLE


# the order stores and frames use for their categories (append only: codes may depend on it)
RUN_STATUSES: tuple[str, ...] = tuple(status.value for status in RunStatus)
_ENDED = frozenset({RunStatus.COMPLETED, RunStatus.REJECTED, RunStatus.BLOCKED, RunStatus.ABORTED})
_PAUSED = frozenset({RunStatus.WAITING_APPROVAL, RunStatus.WAITING_INPUT})
_RECOVERABLE = frozenset({RunStatus.INTERRUPTED, RunStatus.FAILED})
ENDED: frozenset[str] = frozenset(status.value for status in _ENDED)
"""The ended statuses as plain strings (for ``status in ENDED`` on stored rows)."""
PAUSED: frozenset[str] = frozenset(status.value for status in _PAUSED)
RECOVERABLE: frozenset[str] = frozenset(status.value for status in _RECOVERABLE)

__all__ = ["ENDED", "PAUSED", "RECOVERABLE", "RUN_STATUSES", "RunStatus"]
