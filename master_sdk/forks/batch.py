"""Forking an experiment: every case's run forked at one step, as a new experiment.

The new experiment keeps the source's case keys and rows, so ``wb.compare(source, new)``
pairs each case with its fork. Every run is checked (:func:`plan_fork`) before anything is
written: one case whose upstream no longer fits the flow refuses the whole fork. A case
with no run in the source (an invalid row, a case never started) is kept as a case with
an error and no run. Each fork is tagged with the new experiment and its case key in its
first commit (as ``wb.evaluate`` tags its runs), its human steps at or after the fork step
are answered from ``answers`` (or left paused), and a completed fork is scored (a
judge's calls traced in the fork's run, as ``wb.evaluate`` traces them).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from master_sdk.errors import MasterError

if TYPE_CHECKING:
    from master_sdk.experiments.answers import Answers
    from master_sdk.experiments.experiment import Experiment
    from master_sdk.workbench import Workbench

__all__ = ["fork_experiment"]


def fork_experiment(
    wb: Workbench,
    source: str,
    at: str,
    *,
    name: str,
    inputs: Mapping[str, Any] | None = None,
    model: str | None = None,
    by: str | None = None,
    scorers: Sequence[Callable[..., Any]] = (),
    answers: Answers = None,
) -> Experiment:
    """See :meth:`master_sdk.workbench.Workbench.fork`."""
    from master_sdk.experiments.answers import describe
    from master_sdk.experiments.experiment import Experiment
    from master_sdk.experiments.scorers import scorer_name
    from master_sdk.forks import _prepare, _Prepared
    from master_sdk.memory.experiments import CaseRecord, ExperimentRecord
    from master_sdk.tracing.events import now_us

    if not isinstance(name, str) or not name.strip():
        raise MasterError("forking an experiment needs a name for the new one (name='v3')")
    store = wb.store
    record = store.get_experiment(source)
    cases = store.experiment_cases(source)
    prepared: dict[str, _Prepared] = {}
    for case in cases:
        if case.run_id is not None and not case.invalid:
            prepared[case.case_key] = _prepare(wb, case.run_id, at, inputs=inputs, model=model)
    flow = wb.catalog.flow(record.ref)
    who = by or wb.user
    at_us = now_us()
    params = dict(record.params or {})
    params.update(
        forked_from=source,
        forked_at=at,
        fork_model=model,
        scorers=[scorer_name(s, i) for i, s in enumerate(scorers)],
        answers=describe(answers),
        owner=wb.engine.owner,
    )
    stored = [
        CaseRecord(
            c.case_key,
            c.idx,
            c.row,
            error=None
            if c.case_key in prepared
            else (c.case_error or f"no run to fork in experiment '{source}'"),
            invalid=c.invalid,
        )
        for c in cases
    ]
    store.create_experiment(
        ExperimentRecord(
            name=name,
            ref=flow.ref,
            flow_hash=flow.flow_hash,
            product_version=flow.product_version,
            status="running",
            created_us=at_us,
            created_by=who,
            updated_us=at_us,
            params=params,
        ),
        stored,
    )
    updates = [
        _fork_case(wb, name, key, plan, c.row, who, model, scorers, answers)
        for c in cases
        if (plan := prepared.get(key := c.case_key)) is not None
    ]
    store.update_cases(name, updates)
    paused = any(u.run_id and wb.get_run(u.run_id, recover=False).status.paused for u in updates)
    store.set_experiment_status(
        name, "waiting" if paused else "completed", error=None, at_us=now_us()
    )
    return Experiment(wb, name, scorers=scorers, answers=answers)


def _fork_case(
    wb: Workbench,
    experiment: str,
    key: str,
    prepared: Any,
    row: dict[str, Any],
    by: str,
    model: str | None,
    scorers: Sequence[Callable[..., Any]],
    answers: Answers,
) -> Any:
    """Fork one case's run, answer its human steps, score it; the case's update."""
    from master_sdk.experiments.answers import answer_run
    from master_sdk.experiments.scoring import score_run
    from master_sdk.forks import _start
    from master_sdk.memory.experiments import CaseUpdate

    try:
        run = _start(
            wb,
            prepared,
            model=model,
            by=by,
            name=experiment,
            tags={"experiment": {"name": experiment, "case": key}},
        )
        run = answer_run(answers, row, run, by=by)
    except MasterError as exc:
        return CaseUpdate(key, error=str(exc), set_error=True)
    update = CaseUpdate(key, run_id=run.id)
    if run.status == "completed" and scorers:
        # judges' calls are traced in the fork's run, as in wb.evaluate
        update.scores = score_run(wb, prepared.flow, scorers, key, row, run)
    return update
