"""Model replies kept as soon as they are seen, so a retried step never asks twice.

An agent step's result is committed after the agent returns, and in a batch it waits for a
group commit: a process killed in between has received (and paid for) replies that no
record holds, and the step's retry asks the model again. Where the caller asks for it (an
experiment's gate sets ``keep_replies``), the router hands each reply to the step's
:class:`ReplyJournal` right after it is counted; the journal puts it in the run's state
under :data:`REPLIES` and commits at once, unsynced (the write reaches the WAL before the
agent sees the reply, so it survives a killed process; the next synced commit covers a
power cut), together with the counters that charge it and its ``model_called`` event.

A retry of the step (an interrupted attempt, continued by ``resume()`` or by hand) gets
the replies its earlier attempts kept: its calls, in order, reuse them while each asks
exactly what the kept one asked (same model, messages, temperature and schema); the first
call that differs, and every call after it, goes to the model. A reused reply is traced as
``model_call_reused`` and is neither counted nor charged again. The record is dropped
when the step ends (completed, failed, blocked), so a run's state holds the replies of at
most its current step.

What cannot be kept: a request in flight when the process dies has no reply yet; its
retry asks again (it was counted at its worst case, see ``RESERVED``). The replies in a
journal are stored redacted, like everything else in the store; a retried step reads the
redacted text.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from master_sdk.memory.records import RunRow

__all__ = ["REPLIES", "ReplyJournal"]

REPLIES = "replies"
"""Key of the run state holding the current step's kept replies: ``{"step": id, "calls":
[{key, text, model, tokens_in, tokens_out, cost_usd}, ...]}``."""


class ReplyJournal:
    """The replies of one step of one run (see the module docstring).

    Args:
        run: the run (its state holds the record).
        step_id: the step whose calls are kept.
        commit: commits the run now (unsynced); called after each kept reply.
    """

    __slots__ = ("_calls", "_commit", "_position", "_run", "_step")

    def __init__(self, run: RunRow, step_id: str, commit: Callable[[], None]) -> None:
        kept = run.state.get(REPLIES)
        calls = None
        if isinstance(kept, dict) and kept.get("step") == step_id:
            calls = kept.get("calls")
        self._calls: list[dict[str, Any]] = list(calls) if isinstance(calls, list) else []
        self._position = 0
        self._run = run
        self._step = step_id
        self._commit = commit

    @property
    def kept(self) -> int:
        """How many replies earlier attempts (and this one) kept."""
        return len(self._calls)

    @property
    def pending(self) -> bool:
        """Whether a kept reply is still to be reused or dropped (:meth:`reuse` does
        nothing otherwise)."""
        return self._position < len(self._calls)

    def reuse(self, key: str) -> dict[str, Any] | None:
        """The kept reply for this call when the earlier attempt asked the same at the
        same place; None (and no reuse from here on) otherwise."""
        position = self._position
        if position < len(self._calls):
            entry = self._calls[position]
            if isinstance(entry, dict) and entry.get("key") == key:
                self._position = position + 1
                return entry
            del self._calls[position:]  # the attempt went another way: the rest is stale
        return None

    def keep(self, entry: dict[str, Any]) -> None:
        """Record a reply just seen and commit it before the agent gets it."""
        del self._calls[self._position :]
        self._calls.append(entry)
        self._position += 1
        self._run.state[REPLIES] = {"step": self._step, "calls": list(self._calls)}
        self._commit()
