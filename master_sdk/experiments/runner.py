"""Drives an experiment's cases: ``concurrency`` worker threads over one Workbench.

Each worker takes the next case, starts its run (tagged with the experiment and the case
key in the run's first commit), answers its human steps from ``answers``, scores it, and
hands the result to the calling thread, which writes results in batches and refreshes the
progress display. Model calls of every case pass the experiment's gate (shared backoff,
cost cap).

Stopping: a KeyboardInterrupt in the calling thread, :meth:`Runner.stop` (``cancel()``), or
the cost cap stops new cases from starting; cases in flight finish their current run (a
step is never cut in half by this), so ``resume()`` later starts exactly the cases that
have no run and continues the ones that were interrupted.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from master_sdk.errors import MasterError
from master_sdk.experiments.answers import Answers, answer_run
from master_sdk.experiments.scoring import score_run
from master_sdk.memory.experiments import CaseUpdate
from master_sdk.models.gates import gated

if TYPE_CHECKING:
    from master_sdk.experiments.cases import Case
    from master_sdk.experiments.limiter import ExperimentGate
    from master_sdk.experiments.progress import Progress
    from master_sdk.memory.experiments import ExperimentStore
    from master_sdk.products.compiler import CompiledFlow
    from master_sdk.run import Run
    from master_sdk.workbench import Workbench

# results are written when this many are waiting, or at each progress tick
_BATCH = 256
_TICK_S = 0.2


@dataclass(frozen=True, slots=True)
class Task:
    """One case to drive: start it (``run_id`` None) or continue its run. ``replaces``: the
    run a new one replaces (a case stopped by the experiment's cost cap)."""

    case: Case
    run_id: str | None = None
    replaces: str | None = None


class Runner:
    """One pass over an experiment's cases (see the module docstring)."""

    def __init__(
        self,
        wb: Workbench,
        store: ExperimentStore,
        *,
        name: str,
        flow: CompiledFlow,
        scorers: Sequence[Callable[..., Any]],
        answers: Answers,
        gate: ExperimentGate,
        progress: Progress,
        concurrency: int,
        by: str,
    ) -> None:
        self.wb = wb
        self.store = store
        self.name = name
        self.flow = flow
        self.scorers = tuple(scorers)
        self.answers = answers
        self.gate = gate
        self.progress = progress
        self.concurrency = max(1, int(concurrency))
        self.by = by
        self._stop = threading.Event()
        self.stop_reason: str | None = None
        self._updates: list[CaseUpdate] = []
        self._lock = threading.Lock()
        self._paused = 0

    def stop(self, reason: str) -> None:
        """Start no new case; cases in flight finish their run."""
        if self.stop_reason is None:
            self.stop_reason = reason
            self.progress.stopping = reason
        self._stop.set()

    # ------------------------------------------------------------------ the pass

    def execute(self, tasks: Sequence[Task]) -> str:
        """Drive ``tasks``; returns how the pass ended: ``done``, ``interrupted``,
        ``cancelled`` or ``blocked``."""
        work: queue.SimpleQueue[Task] = queue.SimpleQueue()
        for task in tasks:
            work.put(task)
        workers = [
            threading.Thread(target=self._work, args=(work,), name=f"experiment-{i}", daemon=True)
            for i in range(min(self.concurrency, len(tasks)))
        ]
        for worker in workers:
            worker.start()
        interrupted = False
        try:
            self._watch(workers)
        except KeyboardInterrupt:
            interrupted = True
            self.stop("interrupted (KeyboardInterrupt): cases in flight are finishing")
            self._watch(workers)
        finally:
            self._flush()
            self.progress.finish()
        if interrupted:
            return "interrupted"
        if self.gate.blocked is not None:
            return "blocked"
        if self._stop.is_set():
            return "cancelled"
        return "done"

    def _watch(self, workers: list[threading.Thread]) -> None:
        for worker in workers:
            while worker.is_alive():
                worker.join(_TICK_S)
                self._flush()
                self.progress.tick()

    def _work(self, work: queue.SimpleQueue[Task]) -> None:
        with gated(self.gate):
            while not self._stop.is_set():
                try:
                    task = work.get_nowait()
                except queue.Empty:
                    return
                self._drive(task)
                if self.gate.blocked is not None:
                    self.stop(self.gate.blocked)

    # ------------------------------------------------------------------ one case

    def _drive(self, task: Task) -> None:
        case = task.case
        try:
            run = self._run_of(task)
            run = answer_run(self.answers, case.row, run, by=self.by)
        except MasterError as exc:
            self._record(CaseUpdate(case.key, error=str(exc), set_error=True), "error")
            return
        except Exception as exc:
            message = f"{type(exc).__name__}: {exc}"
            self._record(CaseUpdate(case.key, error=message, set_error=True), "error")
            return
        update = CaseUpdate(case.key, run_id=run.id)
        if run.status == "completed" and self.scorers:
            update.scores = self._score(case, run)
        self._record(update, run.status)

    def _score(self, case: Case, run: Run) -> dict[str, Any]:
        """Every scorer on a completed case; judges' calls traced in the case's run."""
        return score_run(self.wb, self.flow, self.scorers, case.key, case.row, run)

    def _run_of(self, task: Task) -> Run:
        from master_sdk.run import Run

        wb = self.wb
        if task.run_id is None:
            ctx = wb.engine.start(
                self.flow,
                task.case.inputs,
                by=self.by,
                tags={"experiment": {"name": self.name, "case": task.case.key}},
            )
            return Run(wb, ctx.run, ctx)
        run = wb.get_run(task.run_id, recover=False)
        if run.status == "interrupted":
            # resume() is the decision to run the interrupted step again (its completed
            # steps are never run again)
            run.retry(by=self.by)
        return run

    def _record(self, update: CaseUpdate, status: str) -> None:
        with self._lock:
            self._updates.append(update)
            full = len(self._updates) >= _BATCH
        self.progress.count(status)
        if full:
            self._flush()

    def _flush(self) -> None:
        with self._lock:
            updates, self._updates = self._updates, []
        if updates:
            self.store.update_cases(self.name, updates)
