"""Team rules: who may decide a paused run, checked before the decision is recorded.

Three rules, from the run's effective policy (platform, product and flow, tighten-only):

* ``approvers`` — who may approve, reject or submit, by step (``'*'``: the other steps);
* ``four_eyes`` — the person who started a run may not decide its steps;
* reservations — a run reserved by someone else (``wb.reserve``), until the lease
  expires, may be decided only by them.

A refused decision raises :class:`DecisionRefused` saying who, which rule and what to do;
the workbench records it as a ``policy_violation`` trace event and changes nothing else.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from master_sdk.errors import DecisionRefused

if TYPE_CHECKING:
    from master_sdk.contracts.policy import Policy
    from master_sdk.memory.records import RunRow
    from master_sdk.memory.store import Reservation
    from master_sdk.orchestrator.context import RunContext
    from master_sdk.orchestrator.engine import Engine


__all__ = ["DecisionRefused", "allowed_approvers", "check_decision", "guard_decision"]


def allowed_approvers(policy: Policy, step_id: str) -> list[str] | None:
    """Who may decide ``step_id`` under ``policy`` (None: anyone)."""
    approvers = policy.approvers
    if approvers is None:
        return None
    return approvers.get(step_id, approvers.get("*"))


def check_decision(
    policy: Policy,
    run: RunRow,
    step_id: str,
    *,
    by: str,
    reservation: Reservation | None,
    now_us: int,
) -> None:
    """Raise :class:`DecisionRefused` when ``by`` may not decide ``step_id`` of ``run``."""
    where = f"run {run.run_id} ({run.product}/{run.flow}), step '{step_id}'"
    allowed = allowed_approvers(policy, step_id)
    if allowed is not None and by not in allowed:
        raise DecisionRefused(
            "approvers",
            limit=allowed,
            value=by,
            message=f"{by} may not decide {where}: the policy's approvers for this step are "
            f"{', '.join(allowed) or '(nobody)'}; ask one of them",
            run_id=run.run_id,
        )
    if policy.four_eyes and run.created_by is not None and by == run.created_by:
        raise DecisionRefused(
            "four_eyes",
            limit="the starter may not decide",
            value=by,
            message=f"{by} started {where} and may not decide it (four_eyes); ask another reviewer",
            run_id=run.run_id,
        )
    if reservation is not None and reservation.by != by and reservation.until_us > now_us:
        until = datetime.fromtimestamp(reservation.until_us / 1e6, tz=UTC)
        raise DecisionRefused(
            "reservation",
            limit=reservation.by,
            value=by,
            message=f"{by} may not decide {where}: {reservation.by} reserved it until "
            f"{until:%Y-%m-%d %H:%M:%S} UTC; wait for that, or ask {reservation.by}",
            run_id=run.run_id,
        )


def guard_decision(engine: Engine, ctx: RunContext, *, action: str, by: str) -> None:
    """Check the team rules for a decision on ``ctx``'s paused run; a refusal is recorded
    on the run as a ``policy_violation`` event (nothing else changes) and raised.

    A run not waiting for this ``action`` (approve / reject need an approval, submit an
    input) is left to the engine, which says why it cannot be decided.
    """
    from master_sdk.tracing.events import now_us

    run = ctx.run
    wanted = "waiting_input" if action == "submit" else "waiting_approval"
    if run.status != wanted or run.cursor >= len(ctx.flow.steps):
        return
    policy = ctx.flow.policy
    step = ctx.flow.steps[run.cursor]
    try:
        check_decision(policy, run, step.id, by=by, reservation=None, now_us=0)
        reservation = engine.store.reservation(run.run_id)
        check_decision(policy, run, step.id, by=by, reservation=reservation, now_us=now_us())
    except DecisionRefused as exc:
        engine.refuse(ctx, exc, by=by)
        raise
