"""Making a fork: a new run context holding the copied steps, advanced by the engine.

The copied steps, their ``step_copied`` trace events and the new run row are written by
the run's first commit (with the fork step's start or its first pause), so a fork is
stored whole or not at all, in one transaction. Copied steps never execute and are not
charged to the new run's budget (its counters start at zero).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from master_sdk.memory.store import FlowSource, RunRecord
from master_sdk.orchestrator.context import RunContext
from master_sdk.orchestrator.engine import MODEL_OVERRIDE, new_run_id
from master_sdk.tracing.events import now_us

if TYPE_CHECKING:
    from master_sdk.forks.planning import ForkPlan
    from master_sdk.orchestrator.engine import Engine
    from master_sdk.products.compiler import CompiledFlow

__all__ = ["fork_context", "start_fork"]


def fork_context(
    flow: CompiledFlow,
    plan: ForkPlan,
    inputs: Mapping[str, Any],
    *,
    by: str,
    scrub: Any,
    model: str | None = None,
    name: str | None = None,
    tags: Mapping[str, Any] | None = None,
) -> RunContext:
    """A new run's context at the fork step, its copied steps and trace pending (nothing
    is written until the engine commits)."""
    parent = plan.parent
    at = now_us()
    run = RunRecord(
        run_id=new_run_id(),
        product=flow.product,
        flow=flow.id,
        status="running",
        version=0,
        cursor=plan.at.index,
        created_us=at,
        updated_us=at,
        flow_hash=flow.flow_hash,
        product_version=flow.product_version,
        created_by=by,
        inputs=scrub(dict(inputs)),
        parent_run_id=parent.run_id,
        forked_at=plan.at.id,
    )
    if tags:
        run.state.update(tags)  # an experiment's case tag, kept from the first commit
    if model is not None:
        # read by the engine for agent steps from the fork step on; survives a pause
        run.state[MODEL_OVERRIDE] = {"model": model, "from": plan.at.index}
    ctx = RunContext(flow, run, [])
    ctx.changes.flow_source = FlowSource(
        flow.flow_hash, flow.product, flow.id, flow.product_version, flow.source
    )
    attrs: dict[str, Any] = {"by": by, "parent_run_id": parent.run_id, "forked_at": plan.at.id}
    if model is not None:
        attrs["model"] = model
    if name is not None:
        attrs["fork"] = name
    ctx.trace.emit("run_started", attrs=attrs)
    for row in plan.copied:
        step = flow.steps[row.idx]
        ctx.set_step(step, row)
        ctx.trace.emit(
            "step_copied",
            step_id=step.id,
            step_type=step.type,
            name=step.name,
            status=row.status,
            attrs={"copied_from": parent.run_id},
        )
    return ctx


def start_fork(
    engine: Engine,
    flow: CompiledFlow,
    plan: ForkPlan,
    inputs: Mapping[str, Any],
    *,
    by: str,
    model: str | None = None,
    name: str | None = None,
    tags: Mapping[str, Any] | None = None,
) -> RunContext:
    """Create the fork and advance it from the fork step until it pauses or ends."""
    ctx = fork_context(
        flow, plan, inputs, by=by, scrub=engine.scrub, model=model, name=name, tags=tags
    )
    engine.advance(ctx)
    return ctx
