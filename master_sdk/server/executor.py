"""The server's executor: runs started and runs decided over HTTP continue here, never
inside the request.

A request commits what it must (a decision; a new run's first commit) and returns
``202`` with the run's URL; a thread of this executor then continues the run until it
pauses or ends. Exactly one executor continues a run whichever process also works on it
(``review/work.py``): if this server dies between a decision and its continuation, the run
stays ``decided`` for the next pass here, ``wb.work()`` or ``master work``.
A worker pass every ``work_interval_s`` also continues runs decided elsewhere
(a notebook's ``proceed=False``, an inbox whose kernel died).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from typing import TYPE_CHECKING, Any

from master_sdk.errors import MasterError
from master_sdk.server.errors import ExecutorBusy

if TYPE_CHECKING:
    from master_sdk import Workbench

log = logging.getLogger("master_sdk.server")


class _Start:
    """One run being started: its id once its first commit is durable."""

    def __init__(self) -> None:
        self.run_id: str | None = None
        self.known = threading.Event()


class _FirstCommit:
    """A commit hook that tells a starting run's waiter its id (hooks run in the
    committing thread, so a thread-local names the start being watched)."""

    def __init__(self) -> None:
        self.local = threading.local()

    def before_commit(self, commit: Any) -> None:
        return None

    def after_commit(self, commit: Any) -> None:
        start: _Start | None = getattr(self.local, "start", None)
        if start is not None and start.run_id is None:
            start.run_id = commit.run.run_id
            start.known.set()


class Executor:
    """Threads that start and continue runs for the server.

    Args:
        wb: the workbench served.
        workers: threads continuing runs at once.
        work_interval_s: seconds between passes continuing runs decided elsewhere
            (0: no such passes).
        start_wait_s: how long a start waits for a free thread before it is refused
            (:class:`~master_sdk.server.errors.ExecutorBusy`; nothing is stored).
    """

    def __init__(
        self,
        wb: Workbench,
        *,
        workers: int = 4,
        work_interval_s: float = 2.0,
        start_wait_s: float = 10.0,
    ) -> None:
        self.wb = wb
        self.start_wait_s = start_wait_s
        self._pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="master-serve")
        self._watch = _FirstCommit()
        wb.add_hook(self._watch)
        self._stop = threading.Event()
        self._busy: set[str] = set()
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None
        if work_interval_s > 0:
            self._worker = threading.Thread(
                target=self._work_loop, args=(work_interval_s,), name="master-serve-work",
                daemon=True,
            )  # fmt: skip
            self._worker.start()

    # ------------------------------------------------------------------ starting runs

    def start(self, ref: str, inputs: Mapping[str, Any], *, by: str) -> str:
        """Start ``ref`` in an executor thread; return its id once its first commit is
        durable (the run goes on in the thread). Raises what ``wb.run`` raises before
        anything is stored (invalid inputs, an unknown flow), and ExecutorBusy when no
        thread took the start within ``start_wait_s`` (it is then withdrawn, unstarted)."""
        start = _Start()

        def task() -> None:
            self._watch.local.start = start
            try:
                self.wb.run(ref, dict(inputs), by=by)
            finally:
                self._watch.local.start = None

        future = self._pool.submit(task)
        future.add_done_callback(lambda _f: start.known.set())
        if not start.known.wait(self.start_wait_s) and future.cancel():
            raise ExecutorBusy(
                f"cannot start {ref} now: every executor thread of this server stayed busy "
                f"for {self.start_wait_s:g} s; nothing was stored, try again later (or serve "
                "with more --workers)",
                retry_after_s=max(1, math.ceil(self.start_wait_s)),
            )
        # a thread has it: its first commit comes next (or the refusal, stored nothing)
        start.known.wait()
        if start.run_id is None:
            future.result()  # raises the refusal (nothing was stored)
            raise MasterError(f"starting {ref} stored nothing")  # pragma: no cover - defensive
        future.add_done_callback(_log_failure)
        return start.run_id

    # ------------------------------------------------------------------ continuing runs

    def proceed(self, run_id: str) -> Future[Any]:
        """Continue a decided run in an executor thread."""
        return self._pool.submit(self._continue, run_id)

    def _continue(self, run_id: str) -> None:
        with self._lock:
            if run_id in self._busy:
                return
            self._busy.add(run_id)
        try:
            outcomes = self.wb.work([run_id])
            for outcome, error in zip(outcomes["outcome"], outcomes["error"], strict=True):
                if outcome == "failed":
                    log.warning("run %s: continuation failed: %s", run_id, error)
        finally:
            with self._lock:
                self._busy.discard(run_id)

    def _work_loop(self, interval_s: float) -> None:
        import master_sdk as ms

        while not self._stop.wait(interval_s):
            try:
                ids = list(self.wb.runs(status=ms.RunStatus.DECIDED)["run_id"])
            except MasterError as exc:
                log.warning("worker pass: %s", exc)
                continue
            for run_id in ids:
                if self._stop.is_set():
                    return
                with self._lock:
                    busy = run_id in self._busy
                if not busy:
                    self._continue(run_id)

    # ------------------------------------------------------------------ lifetime

    def close(self, *, wait: bool = True) -> None:
        """Stop the worker passes; finish (``wait``) the continuations under way."""
        self._stop.set()
        if self._worker is not None:
            self._worker.join(timeout=30)
        self._pool.shutdown(wait=wait)
        with suppress(ValueError):
            self.wb.store.hooks.remove(self._watch)


def _log_failure(future: Future[Any]) -> None:
    exc = future.exception()
    if exc is not None:
        log.warning("a run started over HTTP stopped with an error: %s", exc)
