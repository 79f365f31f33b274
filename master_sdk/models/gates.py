"""A gate every model call of a batch passes: shared backoff, a shared cost cap, overrides.

An experiment runs many runs at once; a rate limit seen by one of them must slow them all,
and its cost cap covers every call of every case. The experiment's runner installs its
:class:`CallGate` in a context variable around each case (and each judge call); the router
consults it on every call. Outside an experiment no gate is set and nothing changes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Protocol

# kinds of provider failure that mean "too much load": the whole batch backs off
CONGESTION_KINDS = frozenset({"rate_limit", "timeout"})


class CallGate(Protocol):
    """What the router asks of a batch around each model call (see module docstring)."""

    models: Mapping[str, str]
    """Logical model overrides (``{"default": "gpt"}``); allow-lists still apply."""

    congestion_attempts: int
    """How many tries a call that keeps hitting rate limits or timeouts gets in all."""

    # Optional: a gate with ``keep_replies = True`` has every agent reply committed as soon
    # as it is seen, so a step retried after a kill reuses it (orchestrator/replies.py);
    # read with getattr, so a gate without it keeps replies with the step's result only.

    def admit(self, *, step_id: str, model: str, worst_cost: float | None) -> float:
        """Before a call: raise ``PolicyViolation`` when the batch's cost cap could be
        passed; else reserve the call's worst-case cost and return the reservation."""
        ...

    def settle(self, reserved: float, cost: float | None) -> None:
        """After a call (or its failure): release the reservation, charge the real cost."""
        ...

    def acquire(self) -> None:
        """Wait for a slot of the batch's in-flight window (blocks while backing off)."""
        ...

    def release(self, outcome: str) -> None:
        """Give the slot back; ``outcome`` is ``ok`` or the provider's error kind."""
        ...


_GATE: ContextVar[CallGate | None] = ContextVar("master_sdk_call_gate", default=None)


def current_gate() -> CallGate | None:
    """The gate of the batch this thread is working for, if any."""
    return _GATE.get()


@contextmanager
def gated(gate: CallGate | None) -> Iterator[None]:
    """Route this thread's model calls through ``gate`` for the duration of the block."""
    token = _GATE.set(gate)
    try:
        yield
    finally:
        _GATE.reset(token)
