"""Many decisions with one comment, apart from their continuation.

A decision (approve, reject, submit) is committed on its own and is final; continuing the
run is a separate step that exactly one executor takes (a compare-and-set on the version
the decision left, see ``Engine.proceed``). :func:`decide_runs` records decisions and
:func:`continue_runs` continues decided runs, so an inbox can commit two hundred
approvals in a moment and continue the runs in a background thread, and a run whose
continuation never happens here (the kernel died) is continued by ``wb.work()`` or
``master work`` anywhere.

Each outcome says what happened to one run; one run's refusal or failure never stops
the others.

**Many decisions, few syncs.** Each decision is its own compare-and-set commit (so two
reviewers racing on a run still find exactly one winner, and one refused run leaves the
others alone), but the commits of a batch are issued from a few threads at once: the
store folds concurrent commits into shared transactions with one sync each
(``memory/group_commit.py`` for SQLite; separate connections for PostgreSQL), so a
thousand approvals pay a few dozen syncs instead of a thousand. A decision's outcome is
reported only once the transaction holding it is durable. Continuing the decided runs
works the same way: each continuation is exactly-once on its own, and their step
commits share syncs too.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from master_sdk.errors import AlreadyResumed, InputInvalid, MasterError, NotWaiting, PolicyViolation

if TYPE_CHECKING:
    import pandas as pd

    from master_sdk.workbench import Workbench

DECISIONS: tuple[str, ...] = ("approve", "reject", "submit")

OUTCOME_COLUMNS: tuple[str, ...] = ("run_id", "outcome", "status", "error")

WORKERS = 16
"""Threads deciding (or continuing) the runs of one batch at once: enough for the store to
share one sync among several commits, few enough to keep a kernel responsive."""


@dataclass(slots=True, frozen=True)
class Outcome:
    """What happened to one run.

    ``outcome``: ``decided`` (recorded; continued later), ``continued`` (decided and run
    until it paused or ended here), ``taken`` (another reviewer or executor got there
    first: nothing changed here), ``refused`` (a team rule, see ``error``), ``invalid``
    (input failing its schema), ``not_waiting`` (not paused, or not decided), ``failed``
    (an error while continuing; the decision stands).
    """

    run_id: str
    outcome: str
    status: str | None
    error: str | None = None


Progress = Callable[[Outcome, int, int], None]
"""Called after each run with its outcome, how many are done and how many in all."""


def decide_runs(
    wb: Workbench,
    run_ids: Sequence[str],
    action: str,
    *,
    comment: str | None = None,
    data: Mapping[str, Any] | None = None,
    by: str | None = None,
    on_progress: Progress | None = None,
    workers: int = WORKERS,
) -> list[Outcome]:
    """Record one decision on each run, without continuing any of them.

    Outcomes come back in the order of ``run_ids``; ``on_progress`` is called once per run
    as each is durable (from one thread at a time, in the order they finish). ``workers``
    threads decide at once (see the module docstring); ``1`` decides one after another.
    """
    if action not in DECISIONS:
        from master_sdk.errors import NotFound

        raise NotFound(f"no decision '{action}'; choose one of {', '.join(DECISIONS)}")
    arguments: dict[str, Any] = {"proceed": False}
    if action == "submit":
        arguments["data"] = dict(data or {})
    else:
        arguments["comment"] = comment

    def one(run_id: str) -> Outcome:
        try:
            ctx = wb.resume(run_id, action, by=by, **arguments)
        except MasterError as exc:
            return Outcome(run_id, _kind(exc), _status(wb, run_id), str(exc))
        return Outcome(run_id, "decided", str(ctx.run.status))

    return _each(list(run_ids), one, on_progress, workers)


def continue_runs(
    wb: Workbench,
    run_ids: Iterable[str],
    *,
    on_progress: Progress | None = None,
    workers: int = WORKERS,
) -> list[Outcome]:
    """Continue each decided run until it pauses or ends (exactly once across executors:
    a run another executor continued first is ``taken``). Order, progress and
    ``workers`` as :func:`decide_runs`."""

    def one(run_id: str) -> Outcome:
        try:
            ctx = wb.resume(run_id, "proceed")
        except MasterError as exc:
            kind = _kind(exc)
            return Outcome(
                run_id, "failed" if kind == "error" else kind, _status(wb, run_id), str(exc)
            )
        run = ctx.run
        failed = run.status in ("failed", "blocked", "interrupted")
        return Outcome(run_id, "failed" if failed else "continued", str(run.status), run.error)

    return _each(list(run_ids), one, on_progress, workers)


def _each(
    run_ids: list[str],
    one: Callable[[str], Outcome],
    on_progress: Progress | None,
    workers: int,
) -> list[Outcome]:
    """``one(run_id)`` for every run, from up to ``workers`` threads; outcomes in input
    order, progress reported one call at a time as runs finish."""
    total = len(run_ids)
    done = 0
    lock = threading.Lock()

    def step(run_id: str) -> Outcome:
        nonlocal done
        outcome = one(run_id)
        if on_progress is not None:
            with lock:
                done += 1
                on_progress(outcome, done, total)
        return outcome

    if workers <= 1 or total <= 1:
        return [step(run_id) for run_id in run_ids]
    with ThreadPoolExecutor(min(workers, total), thread_name_prefix="master-decide") as pool:
        futures = [pool.submit(step, run_id) for run_id in run_ids]
        try:
            return [future.result() for future in futures]
        except BaseException:
            # an interrupt (or a bug) stops what has not started; what started finishes
            for future in futures:
                future.cancel()
            raise


def outcomes_frame(outcomes: Sequence[Outcome]) -> pd.DataFrame:
    """Outcomes as a frame (columns :data:`OUTCOME_COLUMNS`)."""
    import pandas as pd

    return pd.DataFrame(
        {
            "run_id": pd.array([o.run_id for o in outcomes], dtype="string"),
            "outcome": pd.array([o.outcome for o in outcomes], dtype="string"),
            "status": pd.array([o.status for o in outcomes], dtype="string"),
            "error": pd.array([o.error for o in outcomes], dtype="string"),
        },
        columns=list(OUTCOME_COLUMNS),
    )


def _kind(exc: MasterError) -> str:
    if isinstance(exc, AlreadyResumed):
        return "taken"
    if isinstance(exc, NotWaiting):
        return "not_waiting"
    if isinstance(exc, InputInvalid):
        return "invalid"
    if isinstance(exc, PolicyViolation):
        return "refused"
    return "error"


def _status(wb: Workbench, run_id: str) -> str | None:
    try:
        return str(wb.store.load(run_id)[0].status)
    except MasterError:
        return None
