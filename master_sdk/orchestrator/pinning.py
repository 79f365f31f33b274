"""Flow pinning: a run continues only on the flow (and product version) it started with.

A run records the hash of its flow's text and the product version. Resuming it after
the YAML (or the manifest's version) changed fails with :class:`FlowChanged` naming what
changed, unless the caller passes ``allow_flow_change=True``; then the change is recorded
in the trace (``flow_change_allowed``), the new flow text is kept in the store, and the
run continues at the same step *by id* — steps may have moved, been added or removed
around it. A run cannot continue when the step it waits at (or was interrupted in) is
gone from the new flow or is now of another type: that is refused even when allowed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from master_sdk.errors import FlowChanged
from master_sdk.memory.records import StepRow
from master_sdk.memory.store import FlowSource

if TYPE_CHECKING:
    from master_sdk.orchestrator.context import RunContext
    from master_sdk.products.compiler import CompiledFlow


def check_flow_pin(
    ctx: RunContext, *, allow_change: bool, previous_source: str | None, by: str | None = None
) -> None:
    """Refuse to resume a run whose flow changed since it started, unless allowed.

    Args:
        ctx: the run, loaded with the flow as it is now.
        allow_change: accept the change (recorded in the trace).
        previous_source: the flow text the run started from (``None`` if unknown).
        by: who accepted the change.

    Raises:
        FlowChanged: the flow or product version changed and ``allow_change`` is false,
            or the run's current step cannot be found in the new flow.
    """
    run = ctx.run
    flow = ctx.flow
    if run.flow_hash == flow.flow_hash and run.product_version == flow.product_version:
        return
    what = describe_flow_change(previous_source, flow, run.product_version)
    current = _current_step(ctx)
    if not allow_change:
        raise FlowChanged(
            f"flow {flow.ref} changed since run {run.run_id} started ({what}); pass "
            "allow_flow_change=True to resume it on the new flow",
            run_id=run.run_id,
            step=current[0] if current else None,
            changes=what,
            diff=flow_diff(previous_source, flow.source),
        )
    moved = _remap(ctx, current, what)
    if moved:
        what = f"{what}; {moved}"
    ctx.trace.emit(
        "flow_change_allowed",
        attrs={
            "by": by,
            "from_hash": run.flow_hash,
            "to_hash": flow.flow_hash,
            "from_version": run.product_version,
            "to_version": flow.product_version,
            "changes": what,
        },
    )
    run.flow_hash = flow.flow_hash
    run.product_version = flow.product_version
    ctx.changes.flow_source = FlowSource(
        flow.flow_hash,
        flow.product,
        flow.id,
        flow.product_version,
        flow.source,
    )


def _current_step(ctx: RunContext) -> tuple[str, str] | None:
    """``(id, type)`` of the step the run waits at or was stopped in, from stored data."""
    run = ctx.run
    pending = run.state.get("pending")
    if isinstance(pending, dict) and pending.get("step"):
        return str(pending["step"]), str(pending.get("kind", ""))
    row = ctx.step_rows.get(run.cursor)
    if row is not None:
        return row.step_id, row.type
    return None


def _remap(ctx: RunContext, current: tuple[str, str] | None, what: str) -> str:
    """Move the cursor and the stored step rows to the new flow's indexes, by step id."""
    run = ctx.run
    flow = ctx.flow
    if current is not None:
        step_id, kind = current
        if step_id not in flow.index:
            raise FlowChanged(
                f"flow {flow.ref} changed since run {run.run_id} started ({what}), and the "
                f"step the run is at, '{step_id}', is no longer in it; the run cannot "
                "continue on this flow — abort it, or restore the step",
                run_id=run.run_id,
                step=step_id,
            )
        new = flow.steps[flow.index[step_id]]
        if kind and new.type != kind:
            raise FlowChanged(
                f"flow {flow.ref} changed since run {run.run_id} started ({what}), and the "
                f"step the run is at, '{step_id}', is now a {new.type} step instead of "
                f"{kind}; the run cannot continue on this flow — abort it",
                run_id=run.run_id,
                step=step_id,
            )
        cursor = new.index
    else:
        cursor = min(run.cursor, len(flow.steps))
    rows = sorted(ctx.step_rows.values(), key=lambda r: r.idx)
    placed: dict[int, StepRow] = {}
    gone = len(flow.steps)
    for row in rows:
        target = flow.index.get(row.step_id)
        if target is None:  # a removed step keeps its record, after the flow's steps
            target = gone
            gone += 1
        placed[target] = _moved(row, target)
    note = ""
    skipped_new = [s.id for s in flow.steps[:cursor] if s.index not in placed]
    if skipped_new:
        note = "steps before the current one that will not run: " + ", ".join(skipped_new)
    if cursor != run.cursor or any(r.idx != i for i, r in placed.items()):
        run.cursor = cursor
        ctx.step_rows = placed
        ctx.changes.steps = dict(placed)
        ctx.changes.replace_steps = True
    return note


def _moved(row: StepRow, idx: int) -> StepRow:
    if row.idx == idx:
        return row
    return StepRow(
        idx,
        row.step_id,
        row.type,
        row.status,
        row.attempt,
        row.started_us,
        row.ended_us,
        row.output,
        row.error,
    )


def describe_flow_change(previous: str | None, flow: CompiledFlow, old_version: str) -> str:
    """A short account of what differs between a stored flow text and the current flow."""
    notes: list[str] = []
    if old_version != flow.product_version:
        notes.append(f"product version {old_version} -> {flow.product_version}")
    if previous is None:
        notes.append("the flow file's content changed")
        return "; ".join(notes)
    if previous == flow.source:
        # the run's hash covers its product's code too (products/compiler.py: flow_hash)
        return "; ".join(notes) or (
            "the product's code or settings changed (its Python modules, manifest.yaml or "
            "config/), the flow file did not"
        )
    from pydantic import ValidationError

    from master_sdk.config import safe_yaml
    from master_sdk.contracts.flow import FlowSpec

    try:
        old = FlowSpec.model_validate(safe_yaml.loads(previous) or {})
    except (safe_yaml.YamlProblem, ValidationError):
        notes.append("the flow file's content changed")
        return "; ".join(notes)
    old_steps = {s.id: _dump(s) for s in old.steps}
    new_steps = {s.id: _dump(s.spec) for s in flow.steps}
    added = [s for s in new_steps if s not in old_steps]
    removed = [s for s in old_steps if s not in new_steps]
    changed = [s for s in new_steps if s in old_steps and old_steps[s] != new_steps[s]]
    if added:
        notes.append("steps added: " + ", ".join(map(str, added)))
    if removed:
        notes.append("steps removed: " + ", ".join(map(str, removed)))
    if changed:
        notes.append("steps changed: " + ", ".join(map(str, changed)))
    kept_old = [s for s in old_steps if s in new_steps]
    kept_new = [s for s in new_steps if s in old_steps]
    if kept_old != kept_new:
        notes.append("steps reordered")
    for key in ("inputs", "output", "policy"):
        if getattr(old, key) != getattr(flow.spec, key):
            notes.append(f"{key} changed")
    return "; ".join(notes) or "the flow file's text changed (formatting or comments)"


def flow_diff(previous: str | None, current: str, *, max_lines: int = 40) -> str:
    """A short unified diff of a flow file, from the text a run started with to now."""
    if previous is None or previous == current:
        return ""
    import difflib

    lines = list(
        difflib.unified_diff(
            previous.splitlines(),
            current.splitlines(),
            "flow when the run started",
            "flow now",
            n=1,
            lineterm="",
        )
    )
    if len(lines) > max_lines:
        lines = [*lines[:max_lines], f"... ({len(lines) - max_lines} more lines)"]
    return "\n".join(lines)


def _dump(step: Any) -> dict[str, Any]:
    data: dict[str, Any] = step.model_dump(by_alias=True, exclude_defaults=True)
    data.pop("description", None)
    return data
