"""Planning a fork: which steps of the parent run are copied, checked against the flow as
it is now, before anything is written.

A fork copies the steps before the fork step from its parent run and runs the fork step
and everything after it on the current flow. The copy is only sound when the parent's
upstream still fits that flow; :func:`plan_fork` refuses, naming the step and field, when

* the fork step is not a step of the current flow;
* a step before it is not in the parent run (added or renamed since), did not finish
  there (paused, failed, never reached), or changed type;
* the parent ran a step before the fork point that the current flow no longer has
  (removed or renamed);
* a copied tool or agent output lacks a field its current output model declares, or a
  step that re-runs (or the flow's output) reads ``steps.<id>.output.<field>`` of a copied
  step whose copied output has no such field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from master_sdk.errors import RunError
from master_sdk.memory.store import StepAttempt

if TYPE_CHECKING:
    from master_sdk.memory.store import RunRecord
    from master_sdk.products.compiler import CompiledFlow, CompiledStep

__all__ = ["COPYABLE", "ForkPlan", "plan_fork", "references"]

COPYABLE = frozenset({"completed", "skipped", "rejected"})
"""Statuses of a parent's step that can be copied: the step finished there."""

# steps.<id>.output.<field> and steps.<id>.output['<field>'] in a template
_READ = re.compile(r"steps\s*\.\s*(\w+)\s*\.\s*output\s*(?:\.\s*(\w+)|\[\s*['\"](\w+)['\"]\s*\])")


@dataclass(slots=True, frozen=True)
class ForkPlan:
    """What a fork copies (``copied``: new step attempts, in flow order) and where it
    starts executing (``at``)."""

    parent: RunRecord
    at: CompiledStep
    copied: list[StepAttempt]


def references(text: str) -> Iterable[tuple[str, str]]:
    """``(step_id, field)`` of every ``steps.<id>.output.<field>`` read in ``text``."""
    for match in _READ.finditer(text):
        yield match.group(1), match.group(2) or match.group(3)


def plan_fork(
    flow: CompiledFlow, parent: RunRecord, steps: Sequence[StepAttempt], at: str
) -> ForkPlan:
    """Check that ``parent``'s steps before ``at`` fit ``flow`` as it is now; return what
    to copy.

    Raises:
        RunError: the fork is refused (the message names the step and field and says
            what to do); nothing was written.
    """
    where = f"run {parent.run_id} ({parent.product}/{parent.flow})"
    if (parent.product, parent.flow) != (flow.product, flow.id):
        raise RunError(
            f"{where} cannot be forked on flow {flow.ref}: a fork runs on its parent's flow",
            run_id=parent.run_id,
        )
    index = flow.index.get(at)
    if index is None:
        raise RunError(
            f"cannot fork {where} at step '{at}': flow {flow.ref} has no such step (its steps: "
            f"{', '.join(s.id for s in flow.steps)})",
            run_id=parent.run_id,
            step=at,
        )
    by_id = {s.step_id: s for s in steps}
    copied: list[StepAttempt] = []
    for step in flow.steps[:index]:
        copied.append(_copy(step, by_id.get(step.id), where, parent.run_id, at))
    _refuse_dropped(flow, steps, by_id, copied, at, where, parent.run_id)
    outputs = {c.step_id: c for c in copied}
    for step in flow.steps[:index]:
        _check_output_model(step, outputs[step.id], where, parent.run_id)
    _check_reads(flow, index, outputs, where, parent.run_id)
    return ForkPlan(parent, flow.steps[index], copied)


def _copy(
    step: CompiledStep, found: StepAttempt | None, where: str, run_id: str, at: str
) -> StepAttempt:
    if found is None:
        raise RunError(
            f"cannot fork {where} at '{at}': step '{step.id}' of the flow as it is now is not "
            f"in that run (added or renamed since it ran); fork at '{step.id}' or earlier, or "
            "start a new run",
            run_id=run_id,
            step=step.id,
        )
    if found.status not in COPYABLE:
        raise RunError(
            f"cannot fork {where} at '{at}': step '{step.id}' did not finish in that run (it "
            f"is {found.status}); fork at '{step.id}' or earlier",
            run_id=run_id,
            step=step.id,
        )
    if found.type != step.type:
        raise RunError(
            f"cannot fork {where} at '{at}': step '{step.id}' was a {found.type} step and is "
            f"now a {step.type} step; fork at '{step.id}' or earlier",
            run_id=run_id,
            step=step.id,
        )
    return StepAttempt(
        idx=step.index,
        step_id=step.id,
        type=step.type,
        status=found.status,
        attempt=1,
        started_us=found.started_us,
        ended_us=found.ended_us,
        output=found.output,
        error=found.error,
    )


def _refuse_dropped(
    flow: CompiledFlow,
    steps: Sequence[StepAttempt],
    by_id: dict[str, StepAttempt],
    copied: list[StepAttempt],
    at: str,
    where: str,
    run_id: str,
) -> None:
    """A step the parent ran upstream of the fork point that the flow no longer has."""
    forked = by_id.get(at)
    if forked is not None:
        boundary = forked.idx
    else:
        boundary = 1 + max((by_id[c.step_id].idx for c in copied), default=-1)
    for old in steps:
        if old.idx < boundary and old.step_id not in flow.index:
            raise RunError(
                f"cannot fork {where} at '{at}': step '{old.step_id}' ran before it there but "
                f"flow {flow.ref} no longer has it (removed or renamed); fork at an earlier "
                "step or start a new run",
                run_id=run_id,
                step=old.step_id,
            )


def _check_output_model(step: CompiledStep, copied: StepAttempt, where: str, run_id: str) -> None:
    """A copied tool or agent output holds every field its current output model declares
    (model outputs are stored whole, so a missing field means the model changed)."""
    fields = step.output_fields
    output = copied.output
    if step.type not in ("tool", "agent") or not fields or not isinstance(output, dict):
        return
    missing = sorted(set(fields) - set(output))
    if missing:
        raise RunError(
            f"cannot fork {where}: the copied output of step '{step.id}' has no field "
            f"'{missing[0]}', which its {step.type} '{step.name}' now returns (the output model "
            f"changed); fork at '{step.id}' or earlier",
            run_id=run_id,
            step=step.id,
        )


def _check_reads(
    flow: CompiledFlow, index: int, outputs: dict[str, StepAttempt], where: str, run_id: str
) -> None:
    """Every field a re-run step (or the flow's output) reads from a copied output is there."""
    readers: list[tuple[str, Any]] = [
        (s.id, s.spec.model_dump(mode="json", by_alias=True)) for s in flow.steps[index:]
    ]
    readers.append(("the flow's output", flow.spec.output))
    for reader, spec in readers:
        for step_id, field in references(json.dumps(spec)):
            found = outputs.get(step_id)
            if found is None or found.status != "completed" or not isinstance(found.output, dict):
                continue
            if field not in found.output:
                who = reader if reader.startswith("the ") else f"step '{reader}'"
                raise RunError(
                    f"cannot fork {where}: {who} reads steps.{step_id}.output.{field}, but the "
                    f"copied output of step '{step_id}' has no field '{field}' (it has: "
                    f"{', '.join(sorted(found.output)) or 'none'}); fork at '{step_id}' or "
                    "earlier, or change the template",
                    run_id=run_id,
                    step=step_id,
                )
