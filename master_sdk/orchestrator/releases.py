"""Giving a run up after a failed commit, so that others can act on it.

When a commit fails mid-run — the store locked by another process beyond its busy
timeout, a full disk — the step that was executing has run (or not) and the store still
shows the run ``running`` under this engine. Inside this process the run reads as
interrupted at once (the engine no longer advances it; see ``ownership.py``); other
processes can only learn it from the store. :class:`Releases` writes the interruption as
soon as the store takes writes again: one try at once, then tries in a background thread
with growing waits (10 ms up to 0.5 s) until it is written, someone else moved the run, or
the workbench closes (which tries a last time).
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from master_sdk.contracts.status import RunStatus
from master_sdk.errors import MasterError, StoreBusy

if TYPE_CHECKING:
    from master_sdk.orchestrator.engine import Engine
    from master_sdk.products.compiler import CompiledFlow

log = logging.getLogger("master_sdk.orchestrator")

_FIRST_WAIT_S = 0.01
_LAST_WAIT_S = 0.5


class Releases:
    """Runs an engine gave up whose interruption is not written yet (thread-safe)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._lock = threading.Lock()
        self._pending: dict[str, CompiledFlow] = {}
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def __len__(self) -> int:
        with self._lock:
            return len(self._pending)

    def add(self, flow: CompiledFlow, run_id: str) -> None:
        """Write ``run_id``'s interruption now if the store allows, else in the background."""
        with self._lock:
            self._pending[run_id] = flow
        self.flush()
        with self._lock:
            if not self._pending or self._stop.is_set():
                return
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="master-sdk-releases", daemon=True
                )
                self._thread.start()

    def flush(self) -> None:
        """Try once to write every pending interruption; keep the ones the store refused."""
        with self._lock:
            pending = list(self._pending.items())
        for run_id, flow in pending:
            try:
                done = self._release(run_id, flow)
            except StoreBusy:
                done = False
            except MasterError as exc:
                # the run is gone or cannot be read: nothing left to release
                log.warning("could not mark run %s interrupted: %s", run_id, exc)
                done = True
            if done:
                with self._lock:
                    self._pending.pop(run_id, None)

    def close(self) -> None:
        """A last try, then stop the background thread (runs still pending are found
        interrupted by others once this process ends)."""
        self.flush()
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=1.0)

    def _release(self, run_id: str, flow: CompiledFlow) -> bool:
        engine = self._engine
        run, steps = engine.store.load(run_id)
        if run.status != RunStatus.RUNNING or run.owner != engine.owner:
            return True  # someone else moved it: what they wrote is the truth
        if engine.executing(run_id):
            return True  # this engine took it up again (a retry in another thread)
        # not live here: load commits the interruption, or leaves it pending if the store
        # still takes no writes
        return engine.load(flow, run, steps).stored_status != RunStatus.RUNNING

    def _loop(self) -> None:
        wait = _FIRST_WAIT_S
        while not self._stop.wait(wait):  # a wait interrupted by close(), not a poll
            try:
                self.flush()
            except Exception:  # the store was closed under us: the process ends soon
                log.warning("stopped writing pending interruptions", exc_info=True)
                break
            with self._lock:
                if not self._pending:
                    self._thread = None
                    return
            wait = min(wait * 2, _LAST_WAIT_S)
