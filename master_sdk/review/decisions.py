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
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from master_sdk.errors import AlreadyResumed, InputInvalid, MasterError, NotWaiting, PolicyViolation

if TYPE_CHECKING:
    import pandas as pd

    from master_sdk.workbench import Workbench

DECISIONS: tuple[str, ...] = ("approve", "reject", "submit")

OUTCOME_COLUMNS: tuple[str, ...] = ("run_id", "outcome", "status", "error")


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
) -> list[Outcome]:
    """Record one decision on each run, without continuing any of them."""
    if action not in DECISIONS:
        from master_sdk.errors import NotFound

        raise NotFound(f"no decision '{action}'; choose one of {', '.join(DECISIONS)}")
    arguments: dict[str, Any] = {"proceed": False}
    if action == "submit":
        arguments["data"] = dict(data or {})
    else:
        arguments["comment"] = comment
    out: list[Outcome] = []
    for run_id in run_ids:
        try:
            ctx = wb.resume(run_id, action, by=by, **arguments)
        except MasterError as exc:
            outcome = Outcome(run_id, _kind(exc), _status(wb, run_id), str(exc))
        else:
            outcome = Outcome(run_id, "decided", str(ctx.run.status))
        out.append(outcome)
        if on_progress is not None:
            on_progress(outcome, len(out), len(run_ids))
    return out


def continue_runs(
    wb: Workbench, run_ids: Iterable[str], *, on_progress: Progress | None = None
) -> list[Outcome]:
    """Continue each decided run until it pauses or ends (exactly once across executors:
    a run another executor continued first is ``taken``)."""
    ids = list(run_ids)
    out: list[Outcome] = []
    for run_id in ids:
        try:
            ctx = wb.resume(run_id, "proceed")
        except MasterError as exc:
            kind = _kind(exc)
            outcome = Outcome(
                run_id, "failed" if kind == "error" else kind, _status(wb, run_id), str(exc)
            )
        else:
            run = ctx.run
            failed = run.status in ("failed", "blocked", "interrupted")
            outcome = Outcome(
                run_id, "failed" if failed else "continued", str(run.status), run.error
            )
        out.append(outcome)
        if on_progress is not None:
            on_progress(outcome, len(out), len(ids))
    return out


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
