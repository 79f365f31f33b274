"""Reservations: a reviewer's lease on a paused run, so two reviewers do not work on the
same item. Stored apart from the run (``Store.reserve``), so reserving never changes the
run's version; granted atomically by the store; an expired lease is free again. A
decision on a run reserved by someone else is refused (``review/rules.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from master_sdk.contracts.status import PAUSED
from master_sdk.errors import DecisionRefused, NotWaiting
from master_sdk.tracing.events import now_us

if TYPE_CHECKING:
    from master_sdk.memory.store import Reservation
    from master_sdk.workbench import Workbench


def reserve(wb: Workbench, run_id: str, minutes: float | None, *, by: str) -> Reservation:
    """Reserve, renew (``by`` holds it) or release (``minutes=0``) ``run_id``."""
    row, _steps = wb.store.load(run_id)
    if row.status not in PAUSED:
        raise NotWaiting(
            f"cannot reserve run {run_id}: it is {row.status}, not waiting for a decision",
            run_id=run_id,
        )
    ceiling = wb.catalog.flow(f"{row.product}/{row.flow}").policy.max_reservation_minutes
    wanted = ceiling if minutes is None else minutes
    if wanted > ceiling:
        raise DecisionRefused(
            "max_reservation_minutes",
            limit=ceiling,
            value=wanted,
            message=f"{by} may not reserve run {run_id} for {wanted:g} minutes: the policy "
            f"allows at most {ceiling}; reserve it for less and renew it",
            run_id=run_id,
        )
    now = now_us()
    held = wb.store.reserve(run_id, by, now + int(wanted * 60_000_000), now_us=now)
    if held.by != by:
        raise DecisionRefused(
            "reservation",
            limit=held.by,
            value=by,
            message=f"{by} may not reserve run {run_id}: {held.by} holds it for "
            f"{(held.until_us - now) / 60e6:.0f} more minute(s); choose another item",
            run_id=run_id,
        )
    return held


def claim(
    wb: Workbench,
    ref: str,
    n: int,
    minutes: float | None,
    *,
    by: str,
    kind: str | None = None,
) -> list[Reservation]:
    """Reserve for ``by`` up to ``n`` paused runs of flow ``ref`` that nobody holds,
    oldest first; reviewers claiming at once get different runs."""
    from master_sdk.review.pending import statuses_for

    ceiling = wb.catalog.flow(ref).policy.max_reservation_minutes
    wanted = ceiling if minutes is None else minutes
    if not 0 < wanted <= ceiling:
        raise DecisionRefused(
            "max_reservation_minutes",
            limit=ceiling,
            value=wanted,
            message=f"{by} may not claim runs of {ref} for {wanted:g} minutes: give more than "
            f"0 and at most {ceiling} (the policy's max_reservation_minutes)",
        )
    product, _, flow = ref.partition("/")
    now = now_us()
    return wb.store.claim(
        by,
        now + int(wanted * 60_000_000),
        now_us=now,
        statuses=statuses_for(kind),
        product=product,
        flow=flow,
        limit=n,
    )
