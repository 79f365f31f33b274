"""``wb.evaluate``: admit the cases, store the experiment, run it; and ``resume``'s plan.

See :meth:`master_sdk.workbench.Workbench.evaluate` for the user-facing description.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from master_sdk.errors import ConfigError, MasterError, PolicyViolation
from master_sdk.experiments.answers import Answers, describe
from master_sdk.experiments.cases import Case, admit_cases, case_keys, input_columns, rows_of
from master_sdk.experiments.experiment import Experiment
from master_sdk.experiments.limiter import COST_RULE
from master_sdk.experiments.results import FINISHED, PAUSED
from master_sdk.experiments.runner import Task
from master_sdk.experiments.scorers import scorer_name

if TYPE_CHECKING:
    from master_sdk.experiments.ray_backend import RayPool, RayRunner
    from master_sdk.memory.experiments import CaseRun
    from master_sdk.products.compiler import CompiledFlow
    from master_sdk.workbench import Workbench

BACKENDS = ("threads", "ray")


def evaluate(
    wb: Workbench,
    ref: str,
    cases: Any,
    *,
    name: str,
    scorers: Sequence[Callable[..., Any]] = (),
    answers: Answers = None,
    models: Mapping[str, str] | None = None,
    concurrency: int = 8,
    max_cost_usd: float | None = None,
    backend: str = "threads",
    wait: bool = True,
    progress: bool = True,
    ray_address: str | None = None,
    workers: int | None = None,
) -> Experiment:
    """See :meth:`Workbench.evaluate`."""
    from master_sdk.memory.experiments import CaseRecord, ExperimentRecord
    from master_sdk.tracing.events import now_us

    if backend not in BACKENDS:
        raise MasterError(
            f"backend={backend!r} is not a backend: 'threads' (in this kernel) or 'ray' "
            "(a Ray cluster; pip install 'master-sdk[ray]')"
        )
    if backend != "ray" and (ray_address is not None or workers is not None):
        raise MasterError(
            "ray_address= and workers= choose where backend='ray' runs; add backend='ray' "
            "(or leave them out to run on threads in this kernel)"
        )
    if not isinstance(name, str) or not name.strip():
        raise MasterError("an experiment needs a name (name='prompt-v2'), unique per store")
    if int(concurrency) < 1:
        raise MasterError(f"concurrency must be at least 1, not {concurrency}")
    if max_cost_usd is not None and max_cost_usd < 0:
        raise MasterError(f"max_cost_usd must be 0 or more, not {max_cost_usd}")
    flow = wb.catalog.flow(ref)
    overrides = _check_models(wb, flow, models or {})
    rows = rows_of(cases)
    keys = case_keys(rows)
    admitted, rejected = admit_cases(rows, keys, flow, scrub=wb._redact)
    at = now_us()
    params: dict[str, Any] = {
        "concurrency": int(concurrency),
        "max_cost_usd": max_cost_usd,
        "models": overrides,
        "scorers": [scorer_name(s, i) for i, s in enumerate(scorers)],
        "answers": describe(answers),
        "inputs": list(input_columns(flow) or ()),
        "invalid": len(rejected),
        "backend": backend,
        "owner": wb.engine.owner,
    }
    if backend == "ray":
        params.update(ray_address=ray_address, workers=workers)
    record = ExperimentRecord(
        name=name,
        ref=flow.ref,
        flow_hash=flow.flow_hash,
        product_version=flow.product_version,
        status="running",
        created_us=at,
        updated_us=at,
        created_by=wb.user,
        params=params,
    )
    stored = [CaseRecord(c.key, c.index, wb._redact(c.row)) for c in admitted]
    stored += [
        CaseRecord(r.key, r.index, wb._redact(r.row), error=r.message, invalid=True)
        for r in rejected
    ]
    stored.sort(key=lambda c: c.idx)
    pool = None
    if backend == "ray":
        from master_sdk.errors import NotFound
        from master_sdk.experiments.ray_backend import RayOptions, RayPool
        from master_sdk.memory.experiments import experiment_exists

        try:  # before workers start (seconds): the name is taken
            wb.store.get_experiment(name)
        except NotFound:
            pass
        else:
            raise experiment_exists(name)
        pool = RayPool.start(
            wb, flow, name=name, scorers=scorers, answers=answers,
            concurrency=int(concurrency), max_cost_usd=max_cost_usd, models=overrides,
            spent_usd=0.0, options=RayOptions(ray_address, workers),
        )  # fmt: skip
    try:
        wb.store.create_experiment(record, stored)
    except BaseException:
        if pool is not None:
            pool.close()
        raise
    experiment = Experiment(wb, name, scorers=scorers, answers=answers)
    launch(
        experiment,
        flow,
        [Task(case) for case in admitted],
        concurrency=int(concurrency),
        max_cost_usd=max_cost_usd,
        models=overrides,
        spent_usd=0.0,
        wait=wait,
        progress=progress,
        invalid=len(rejected),
        fresh=True,
        pool=pool,
    )
    return experiment


def _check_models(wb: Workbench, flow: CompiledFlow, models: Mapping[str, str]) -> dict[str, str]:
    """Overrides must name configured models the flow's policy allows."""
    known = wb.router.names
    for logical, target in models.items():
        for name in (logical, target):
            if name not in known:
                raise ConfigError(
                    f"models={{{logical!r}: {target!r}}}: '{name}' is not a configured model "
                    f"(models: {', '.join(sorted(known))})",
                    file="configs/models.yaml",
                    key=f"models.{name}",
                )
        refusal = flow.allow.model_refusal(target) if flow.allow is not None else None
        if refusal is not None:
            raise PolicyViolation(
                "allowed_models",
                limit=flow.policy.allowed_models,
                value=target,
                message=f"models= override for {flow.ref}: {refusal}",
            )
    return dict(models)


def plan_resume(
    experiment: Experiment, flow: CompiledFlow, cases: Sequence[CaseRun], *, rescore: bool
) -> tuple[list[Task], float]:
    """What ``resume()`` drives, and what the experiment has spent so far.

    A case whose link row was lost with a killed process is found by the tag its run
    carries; such links are written back here.
    """
    from master_sdk.memory.experiments import CaseUpdate

    store = experiment._wb.store
    tagged = store.tagged_runs(experiment.name)
    columns = input_columns(flow)
    tasks: list[Task] = []
    relinked: list[CaseUpdate] = []
    spent = 0.0
    statuses: dict[str, str | None] = {}
    missing = [c.case_key for c in cases if c.run_id is None and c.case_key in tagged]
    if missing:
        relinked = [CaseUpdate(key, run_id=tagged[key]) for key in missing]
        store.update_cases(experiment.name, relinked)
        cases = store.experiment_cases(experiment.name)
    for case in cases:
        spent += case.cost_usd or 0.0
        for key, value in ((case.scores or {}).get("meta") or {}).items():
            if key.endswith(".cost_usd") and isinstance(value, int | float):
                spent += float(value)
        statuses[case.case_key] = case.status
        if case.invalid:
            continue
        if columns is None:
            inputs = {k: v for k, v in case.row.items() if k not in ("case_key", "id")}
        else:
            inputs = {k: case.row[k] for k in columns if case.row.get(k) is not None}
        item = Case(case.idx, case.case_key, case.row, inputs)
        if case.run_id is None or (case.status == "blocked" and case.blocked_rule == COST_RULE):
            # never started, or stopped by this experiment's cost cap (not by the flow's
            # policy): a new run, the blocked one stays in the store
            tasks.append(Task(item, replaces=case.run_id))
        elif case.status in FINISHED:
            if case.status == "completed" and rescore and not case.scores:
                tasks.append(Task(item, case.run_id))  # scores lost with a killed process
        elif case.status in PAUSED:
            if experiment._answers is not None:
                tasks.append(Task(item, case.run_id))
        else:  # interrupted, or left running by a process that died
            tasks.append(Task(item, case.run_id))
    return tasks, spent


def launch(
    experiment: Experiment,
    flow: CompiledFlow,
    tasks: list[Task],
    *,
    concurrency: int,
    max_cost_usd: float | None,
    models: Mapping[str, str],
    spent_usd: float,
    wait: bool,
    progress: bool,
    invalid: int = 0,
    fresh: bool = False,
    pool: RayPool | None = None,
) -> None:
    """Run ``tasks`` now (``wait=True``) or on a background thread, recording the end;
    on ``pool``'s Ray workers when given (it is closed at the end), else on threads."""
    from collections import Counter

    from master_sdk.experiments.limiter import ExperimentGate
    from master_sdk.experiments.progress import Progress
    from master_sdk.experiments.runner import Runner
    from master_sdk.tracing.events import now_us

    wb = experiment._wb
    store = wb.store
    record = store.get_experiment(experiment.name)
    done: Counter[str] = Counter()
    if not fresh:
        planned = {t.case.key for t in tasks}
        done.update(
            c.status or "error"
            for c in store.experiment_cases(experiment.name)
            if not c.invalid
            and c.case_key not in planned
            and (c.status is not None or c.case_error)
        )
    invalid = invalid or int((record.params or {}).get("invalid", 0))
    gate: Any = (
        pool.gate
        if pool is not None
        else ExperimentGate(
            concurrency=concurrency, max_cost_usd=max_cost_usd, models=models, spent_usd=spent_usd
        )
    )
    display = Progress(
        experiment.name,
        total=record.cases,
        gate=gate,
        show=progress,
        already=done,
        invalid=invalid,
    )
    runner: Runner | RayRunner
    if pool is not None:
        from master_sdk.experiments.ray_backend import RayRunner

        runner = RayRunner(
            pool, store, name=experiment.name, progress=display, concurrency=concurrency,
            resuming=not fresh,
        )  # fmt: skip
    else:
        runner = Runner(
            wb,
            store,
            name=experiment.name,
            flow=flow,
            scorers=experiment._scorers,
            answers=experiment._answers,
            gate=gate,
            progress=display,
            concurrency=concurrency,
            by=wb.user,
        )
    experiment._runner = runner
    params = dict(record.params or {})
    params.update(owner=wb.engine.owner, concurrency=concurrency, max_cost_usd=max_cost_usd)
    store.set_experiment_status(
        experiment.name, "running", error=None, at_us=now_us(), params=params
    )

    def finish(outcome: str) -> None:
        error = None
        if outcome == "done":
            counts = store.case_statuses(experiment.name)
            status = "waiting" if any(counts.get(s) for s in PAUSED) else "completed"
        else:
            status = outcome
            error = gate.blocked if outcome == "blocked" else runner.stop_reason
        store.set_experiment_status(experiment.name, status, error=error, at_us=now_us())

    if wait:
        finish(runner.execute(tasks))
        return

    def background() -> None:
        try:
            finish(runner.execute(tasks))
        except BaseException as exc:  # handed to wait()
            experiment._error = exc
            store.set_experiment_status(
                experiment.name, "interrupted", error=str(exc), at_us=now_us()
            )

    thread = threading.Thread(target=background, name=f"experiment:{experiment.name}", daemon=True)
    experiment._thread = thread
    thread.start()
