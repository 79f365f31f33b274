"""Forks: a new run that copies its parent's steps before a fork step and runs the rest on
the flow as it is now; lineage between runs (DESIGN.md §10).

:func:`fork_run` is what ``Run.fork`` calls and :func:`fork_many` what ``Workbench.fork``
calls; :mod:`.planning` checks that the parent's upstream fits the current flow,
:mod:`.copying` makes the new run, :mod:`.lineage` lists a run's ancestors and children.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from master_sdk.errors import PolicyViolation, RunError

if TYPE_CHECKING:
    from master_sdk.forks.planning import ForkPlan
    from master_sdk.products.compiler import CompiledFlow
    from master_sdk.run import Run
    from master_sdk.workbench import Workbench

__all__ = ["fork_many", "fork_run"]


@dataclass(slots=True, frozen=True)
class _Prepared:
    flow: CompiledFlow
    plan: ForkPlan
    inputs: dict[str, Any]


def fork_run(
    wb: Workbench,
    run_id: str,
    at: str,
    *,
    inputs: Mapping[str, Any] | None = None,
    model: str | None = None,
    by: str | None = None,
    name: str | None = None,
) -> Run:
    """Fork stored run ``run_id`` at step ``at`` (see :meth:`master_sdk.run.Run.fork`)."""
    prepared = _prepare(wb, run_id, at, inputs=inputs, model=model)
    return _start(wb, prepared, model=model, by=by, name=name)


def fork_many(
    wb: Workbench,
    run_ids: Sequence[str],
    at: str,
    *,
    name: str | None = None,
    inputs: Mapping[str, Any] | None = None,
    model: str | None = None,
    by: str | None = None,
) -> list[Run]:
    """Fork every run of ``run_ids`` at ``at``: all are checked before the first is made."""
    prepared = [_prepare(wb, run_id, at, inputs=inputs, model=model) for run_id in run_ids]
    return [_start(wb, p, model=model, by=by, name=name) for p in prepared]


def _start(
    wb: Workbench,
    prepared: _Prepared,
    *,
    model: str | None,
    by: str | None,
    name: str | None,
    tags: Mapping[str, Any] | None = None,
) -> Run:
    from master_sdk.forks.copying import start_fork
    from master_sdk.run import Run

    ctx = start_fork(
        wb.engine,
        prepared.flow,
        prepared.plan,
        prepared.inputs,
        by=by or wb.user,
        model=model,
        name=name,
        tags=tags,
    )
    return Run(wb, ctx.run, ctx)


def _prepare(
    wb: Workbench,
    run_id: str,
    at: str,
    *,
    inputs: Mapping[str, Any] | None,
    model: str | None,
) -> _Prepared:
    """Read the parent, plan the copy and check ``inputs`` and ``model``; writes nothing."""
    from master_sdk.forks.planning import plan_fork
    from master_sdk.governance.budgets import RunBudget
    from master_sdk.governance.inputs import admit_input

    parent, steps = wb.store.load(run_id)
    flow = wb.catalog.flow(f"{parent.product}/{parent.flow}")
    plan = plan_fork(flow, parent, steps, at)
    merged = dict(parent.inputs or {})
    if inputs:
        merged.update(inputs)
        if flow.input_validator is None:
            from master_sdk.orchestrator.validation import SchemaValidator

            flow.input_validator = SchemaValidator(flow.spec.inputs)
        admit_input(
            merged,
            limit=flow.policy.max_input_bytes,
            validator=flow.input_validator,
            scrub=wb.redact,
            what=f"inputs for the fork of run {run_id} ({flow.ref})",
            run_id=run_id,
        )
    if model is not None:
        if not any(s.type == "agent" for s in flow.steps[plan.at.index :]):
            raise RunError(
                f"cannot fork run {run_id} at '{at}' with model='{model}': no agent step of "
                f"flow {flow.ref} runs from '{at}' on",
                run_id=run_id,
                step=at,
            )
        # configured and allowed, before anything is written (checked again at each call)
        known = set(wb.router.names) | set(flow.model_aliases)
        budget = RunBudget(parent, flow.policy, flow.allow)
        budget.check_model_name(at, model, known)
        refused = budget.allow.model_refusal(flow.model_aliases.get(model, model))
        if refused is not None:
            raise PolicyViolation(
                "allowed_models",
                limit=flow.policy.allowed_models,
                value=model,
                step=at,
                message=f"cannot fork run {run_id} with model='{model}': {refused}",
            )
    return _Prepared(flow, plan, merged)
