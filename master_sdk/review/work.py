"""The worker: continue every decided run, exactly once, from any process.

A decision is committed on its own; the run then waits, ``decided``, for an executor.
``run.approve()`` continues it at once by default; an inbox continues its selection in a
background thread; and :func:`work` — ``wb.work()`` in a kernel, ``master work`` in a
terminal or a service — continues whatever is left, such as the runs of a kernel that
died between a decision and its continuation. Two workers racing on the same runs
continue each once: the continuation's first commit is a compare-and-set on the version
the decision left, and nothing with an effect happens before it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from master_sdk.contracts.status import RunStatus
from master_sdk.review.decisions import Outcome, Progress, continue_runs

if TYPE_CHECKING:
    from master_sdk.workbench import Workbench


def decided_runs(wb: Workbench, *, limit: int | None = None) -> list[str]:
    """Ids of the decided runs, oldest first (through the status index)."""
    ids = [run_id for run_id, _owner in wb.store.find_runs(status=RunStatus.DECIDED)]
    return ids if limit is None else ids[:limit]


def work(
    wb: Workbench, *, limit: int | None = None, on_progress: Progress | None = None
) -> list[Outcome]:
    """Continue the decided runs found now (at most ``limit``); one pass."""
    return continue_runs(wb, decided_runs(wb, limit=limit), on_progress=on_progress)


def work_forever(
    wb: Workbench,
    *,
    interval_s: float = 1.0,
    on_progress: Progress | None = None,
    stop: Callable[[], bool] = lambda: False,
) -> int:
    """Pass after pass until ``stop()`` (or Ctrl-C); sleeps ``interval_s`` between passes
    that found nothing. Returns how many runs this worker continued."""
    done = 0
    while not stop():
        outcomes = work(wb, on_progress=on_progress)
        done += sum(o.outcome == "continued" for o in outcomes)
        if not outcomes:
            time.sleep(interval_s)
    return done
