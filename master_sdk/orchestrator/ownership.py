"""Who executes a run: owner tokens, and whether that executor still lives.

A run executing a step records its executor's *owner token* on the run row:
``host:pid:start:nonce`` — the machine, the process, the process's start time (so a
reused pid is not mistaken for the original) and a random nonce naming one
:class:`~master_sdk.orchestrator.engine.Engine` (one per workbench). Nothing may declare a
run interrupted while its executor lives:

* **this process**, another engine (a second ``Workbench`` in the same kernel): every live
  engine is in :class:`LiveEngines`; the run is live while its engine is registered *and*
  is advancing that run right now. An engine that gave a run up (a ``StoreBusy`` mid-run, an
  exception) or was closed or garbage-collected no longer counts.
* **another process on this machine**: live while that process exists (same pid and start
  time, not a zombie). A killed process's runs are found at once.
* **another machine**: nothing here can tell, so it is assumed live (a lease with expiry in
  the store is the later answer for runs shared across hosts).

Example:
    >>> token = owner_token("ab12")
    >>> token.endswith(":ab12")
    True
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
import weakref
from typing import Protocol

__all__ = [
    "LiveEngines",
    "executor_alive",
    "new_nonce",
    "owner_token",
    "process_alive",
    "process_identity",
]


class Executor(Protocol):
    """What the registry asks of an engine."""

    def executing(self, run_id: str) -> bool:
        """Whether this engine is advancing ``run_id`` right now."""
        ...


def new_nonce() -> str:
    """A random name for one engine instance."""
    return secrets.token_hex(6)


def process_identity() -> str:
    """``host:pid:start`` of this process; the start time guards against pid reuse."""
    stat = _proc_stat(os.getpid())
    return f"{socket.gethostname()}:{os.getpid()}:{stat[1] if stat else '?'}"


def owner_token(nonce: str) -> str:
    """The owner token of an engine of this process: ``host:pid:start:nonce``."""
    return f"{process_identity()}:{nonce}"


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """``(state, start time)`` of a process from ``/proc``; None if it is not there."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            stat = handle.read()
    except OSError:
        return None
    # the command name (field 2) may hold spaces; fields after it are space-separated
    fields = stat.rsplit(")", 1)[1].split()
    return fields[0], fields[19]


def process_alive(owner: str | None) -> bool:
    """Whether the process named by an owner token (``host:pid:start[:nonce]``) exists.

    A zombie (killed, not yet reaped by its parent) counts as dead: it executes nothing.
    """
    if not owner:
        return False
    host, _, rest = owner.partition(":")
    pid_text, _, rest = rest.partition(":")
    started = rest.partition(":")[0]
    if host != socket.gethostname():
        return True  # another machine: nothing here can tell, assume it is working
    try:
        pid = int(pid_text)
    except ValueError:
        return False
    if started not in ("", "?"):
        stat = _proc_stat(pid)
        return stat is not None and stat[1] == started and stat[0] not in ("Z", "X")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class LiveEngines:
    """The engines alive in this process, by nonce (held weakly: a workbench dropped without
    ``close()`` stops counting once it is collected), plus the runs each is advancing.

    Thread-safe. One instance per process (:data:`LIVE`): ownership across workbenches in
    one process is a fact about the process, so this is the one place it is kept.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._engines: weakref.WeakValueDictionary[str, Executor] = weakref.WeakValueDictionary()

    def register(self, nonce: str, engine: Executor) -> None:
        """Count ``engine`` as alive under ``nonce``."""
        with self._lock:
            self._engines[nonce] = engine

    def unregister(self, nonce: str) -> None:
        """Stop counting the engine of ``nonce`` (its workbench closed)."""
        with self._lock:
            self._engines.pop(nonce, None)

    def executing(self, nonce: str, run_id: str) -> bool:
        """Whether the engine of ``nonce`` is alive and advancing ``run_id`` now."""
        with self._lock:
            engine = self._engines.get(nonce)
        return engine is not None and engine.executing(run_id)


LIVE = LiveEngines()
"""The registry of this process."""


def executor_alive(owner: str | None, run_id: str, *, here: str) -> bool:
    """Whether the executor an owner token names is still executing ``run_id``.

    Args:
        owner: the token stored on the run (``None``: nobody owns it).
        run_id: the run.
        here: :func:`process_identity` of this process.
    """
    if not owner:
        return False
    process, _, nonce = owner.rpartition(":")
    if process == here:
        return LIVE.executing(nonce, run_id)
    if owner.count(":") < 3:
        # a token without a nonce (written before nonces existed), of this very process
        return owner != here and process_alive(owner)
    return process_alive(owner)


class ExecutingRuns:
    """The runs one engine is advancing right now (thread-safe; a run advanced by two
    threads at once — one of them about to lose the compare-and-set — counts until both
    are done)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: dict[str, int] = {}  # run id -> threads advancing it

    def enter(self, run_id: str) -> None:
        """A thread starts advancing ``run_id``."""
        runs = self._runs
        with self._lock:
            runs[run_id] = runs.get(run_id, 0) + 1

    def leave(self, run_id: str) -> None:
        """A thread stopped advancing ``run_id`` (returned, raised or gave it up)."""
        runs = self._runs
        with self._lock:
            left = runs.pop(run_id) - 1
            if left > 0:
                runs[run_id] = left

    def __contains__(self, run_id: object) -> bool:
        return run_id in self._runs
