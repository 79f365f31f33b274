"""Scoring one finished case: every scorer, its errors kept per case, judges governed.

The result is stored with the case as ``{"values": {column: number}, "meta": {column:
value}, "errors": {scorer: message}}``: numbers are what summaries average, ``meta`` holds
a judge's reason, tokens and cost, ``errors`` a scorer that raised (the others still ran).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from master_sdk.experiments.scorers import Judge, scorer_name

if TYPE_CHECKING:
    from master_sdk.authoring import Reply
    from master_sdk.models.router import Router
    from master_sdk.orchestrator.context import RunContext
    from master_sdk.products.compiler import CompiledFlow
    from master_sdk.run import Run
    from master_sdk.tracing.events import TraceBuffer
    from master_sdk.workbench import Workbench


def number(value: Any) -> float:
    """A score as a float (bool -> 1/0; None or not a number -> NaN)."""
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return float(value)
    return math.nan


def _nothing() -> None:
    """Nothing to commit before a judge's call."""


class JudgeRouter:
    """A judge's door to models: the workbench's router under the flow's policy.

    Each call gets a budget of its own under the flow's effective policy (allowed models,
    token and cost limits per call) and passes the experiment's gate (cost cap, backoff)
    like an agent's call. With ``trace`` (the case's run's buffer, see
    :class:`JudgeTrace`) the call is traced in that run like an agent step's: a
    ``judge:<scorer>`` step of type ``agent`` holding its ``model_called`` event with
    tokens and cost; the run's own usage counters are not changed (the judge's usage has
    its own columns in the results).
    """

    def __init__(
        self,
        router: Router,
        flow: CompiledFlow,
        case_key: str,
        *,
        trace: TraceBuffer | None = None,
    ) -> None:
        self.router = router
        self.flow = flow
        self.case_key = case_key
        self.trace = trace
        self.scorer = "judge"  # the scorer calling: set by score_case

    def complete(self, model: str, *, prompt: str, system: str, output: type[Any]) -> Reply:
        """One governed call (see the class docstring)."""
        from master_sdk.governance.budgets import RunBudget
        from master_sdk.memory.records import RunRow
        from master_sdk.orchestrator.context import StepScope
        from master_sdk.tracing.events import TraceBuffer

        flow = self.flow
        row = RunRow(
            run_id=f"judge:{self.case_key}",
            product=flow.product,
            flow=flow.id,
            status="running",
            version=0,
            cursor=0,
            created_us=0,
            updated_us=0,
            flow_hash=flow.flow_hash,
            product_version=flow.product_version,
        )
        budget = RunBudget(row, flow.policy, flow.allow)
        step_id = f"judge:{self.scorer}"
        trace = self.trace if self.trace is not None else TraceBuffer(0, [])
        # a judge's call is no step of the run: there is no start to make durable first
        scope = StepScope(row.run_id, step_id, "agent", 1, budget, trace, flow.policy, _nothing)
        trace.emit("step_started", step_id=step_id, step_type="agent", name=model)
        status = "failed"
        try:
            budget.check_model_name(step_id, model, self.router.names)
            reply = self.router.complete(
                model,
                prompt=prompt,
                system=system,
                output=output,
                max_tokens=None,
                temperature=0.0,
                aliases=flow.model_aliases,
                scope=scope,
            )
            status = "completed"
            return reply
        finally:
            trace.emit(
                "step_completed" if status == "completed" else "step_failed",
                step_id=step_id,
                step_type="agent",
                name=model,
                status=status,
            )


class JudgeTrace:
    """Where the judges of one finished case trace their calls: the case's run, reopened
    (its stored trace sequence continues), committed once every scorer has run."""

    def __init__(self, wb: Workbench, flow: CompiledFlow, run_id: str) -> None:
        self._wb = wb
        row, steps = wb.store.load(run_id)
        self._ctx: RunContext = wb.engine.load(flow, row, steps)

    @property
    def trace(self) -> TraceBuffer:
        """The run's buffer of events for the next commit."""
        return self._ctx.trace

    def commit(self) -> None:
        """Commit the judges' events to the run (nothing if none was emitted)."""
        self._wb.engine.commit_events(self._ctx)


def score_case(
    scorers: Sequence[Callable[..., Any]],
    case: Mapping[str, Any],
    output: Any,
    *,
    judge_router: Callable[[], JudgeRouter],
) -> dict[str, Any]:
    """Run every scorer on one case (see the module docstring)."""
    values: dict[str, float] = {}
    meta: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for index, scorer in enumerate(scorers):
        name = scorer_name(scorer, index)
        try:
            if isinstance(scorer, Judge):
                router = judge_router()
                if isinstance(router, JudgeRouter):
                    router.scorer = name
                graded = scorer.grade(case, output, router)
                values[name] = number(graded["score"])
                meta[f"{name}.reason"] = graded["reason"]
                meta[f"{name}.tokens"] = graded["tokens"]
                meta[f"{name}.cost_usd"] = graded["cost_usd"]
                continue
            result = scorer(case, output)
        except Exception as exc:
            errors[name] = f"{type(exc).__name__}: {exc}"
            continue
        if isinstance(result, Mapping):
            for key, value in result.items():
                if isinstance(value, bool | int | float) or value is None:
                    values[f"{name}.{key}"] = number(value)
                else:
                    meta[f"{name}.{key}"] = value
        else:
            values[name] = number(result)
    return {"values": values, "meta": meta, "errors": errors}


def score_run(
    wb: Workbench,
    flow: CompiledFlow,
    scorers: Sequence[Callable[..., Any]],
    case_key: str,
    case: Mapping[str, Any],
    run: Run,
) -> dict[str, Any]:
    """:func:`score_case` on a completed run, its judges' calls traced in that run
    (:class:`JudgeTrace`). When they cannot be traced the scores are kept, and the reason
    is the ``trace`` entry of their ``errors``."""
    from master_sdk.errors import MasterError

    judged: JudgeTrace | None = None
    problem: str | None = None
    if any(isinstance(s, Judge) for s in scorers):
        try:
            judged = JudgeTrace(wb, flow, run.id)
        except MasterError as exc:
            problem = f"the judges' calls could not be traced in run {run.id}: {exc}"

    def judge_router() -> JudgeRouter:
        trace = judged.trace if judged is not None else None
        return JudgeRouter(wb.router, flow, case_key, trace=trace)

    scores = score_case(scorers, case, run.output, judge_router=judge_router)
    if judged is not None:
        try:
            judged.commit()
        except MasterError as exc:
            problem = f"the judges' calls could not be traced in run {run.id}: {exc}"
    if problem is not None:
        scores.setdefault("errors", {})["trace"] = problem
    return scores
