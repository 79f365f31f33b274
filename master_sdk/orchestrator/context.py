"""What one run is in one process: its record, its pending changes, and the scope its
tool and model calls see. The engine is stateless between runs; all of this lives here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from master_sdk.governance.budgets import RunBudget
from master_sdk.memory.records import Changes, RunRow, StepRow
from master_sdk.orchestrator.replies import REPLIES
from master_sdk.tracing.events import TraceBuffer, now_us

if TYPE_CHECKING:
    from master_sdk.contracts.policy import Policy
    from master_sdk.orchestrator.replies import ReplyJournal
    from master_sdk.products.compiler import CompiledFlow, CompiledStep

__all__ = ["RunContext", "StepScope"]


@dataclass(slots=True)
class StepScope:
    """What a tool or model call sees of its run: ids, budget, trace, policy, and
    ``durable()``, which commits the run's counters before a model request is sent."""

    run_id: str
    step_id: str
    step_type: str
    attempt: int
    budget: RunBudget
    trace: TraceBuffer
    policy: Policy
    durable: Callable[[], None]
    flow: CompiledFlow | None = None  # the product and model aliases (ctx.embed, ctx.memory)
    # an agent step's kept replies (orchestrator/replies.py); None for tools and judges
    replies: ReplyJournal | None = None


class RunContext:
    """Everything about one run in one process: its record, scope and pending changes."""

    __slots__ = (
        "budget",
        "changes",
        "flow",
        "has_results",
        "now",
        "resume_start",
        "run",
        "scope",
        "start_pending",
        "step_rows",
        "steps_scope",
        "stored_status",
        "trace",
        "version",
    )

    def __init__(
        self,
        flow: CompiledFlow,
        run: RunRow,
        steps: list[StepRow],
        *,
        now: Callable[[], int] = now_us,
        clock_durations: bool = False,
    ) -> None:
        self.flow = flow
        # where timestamps come from: the engine's clock (a test clock in deterministic mode)
        self.now = now
        self.run = run
        self.version: int | None = run.version if run.pk is not None else None
        # the status the store holds for the run (None: not stored yet)
        self.stored_status: str | None = run.status if run.pk is not None else None
        # whether the pending changes hold a tool or agent result (or one given by hand):
        # such a commit is always synced, even one that also records the next step's start
        self.has_results = False
        # an agent step's start is committed with its first model request (see
        # Engine._durable); until then: pending, and whether that commit resumes a pause
        self.start_pending = False
        self.resume_start = False
        self.step_rows: dict[int, StepRow] = {s.idx: s for s in steps}
        self.steps_scope: dict[str, dict[str, Any]] = {
            s.step_id: {"output": s.output, "status": s.status} for s in steps
        }
        self.scope: dict[str, Any] = {
            "inputs": run.inputs if run.inputs is not None else {},
            "steps": self.steps_scope,
            "run": {"id": run.run_id, "product": run.product, "flow": run.flow},
        }
        self.trace = TraceBuffer(
            seq=int(run.state.get("seq", 0)), rows=[], clock=now, clock_durations=clock_durations
        )
        self.changes = Changes(events=self.trace.rows)
        self.budget = RunBudget(run, flow.policy, flow.allow)

    def pending_work(self) -> str:
        """What the pending changes hold, said as what was not stored (for an error
        message after a failed commit)."""
        if self.version is None:
            return f"run {self.run.run_id} was not created: nothing was written"
        said: list[str] = []
        for row in self.changes.steps.values():
            if row.status == "running":
                said.append(f"step '{row.step_id}' did not start")
            elif row.type in ("tool", "agent") and row.status in ("completed", "failed"):
                said.append(f"step '{row.step_id}' ran; its result was not stored")
        said.extend(
            f"the decision on step '{a.step_id}' was not stored" for a in self.changes.approvals
        )
        said.extend(f"the input for step '{i.step_id}' was not stored" for i in self.changes.inputs)
        if not said:
            said.append(f"the run's move to {self.run.status} was not stored")
        return f"run {self.run.run_id}: " + "; ".join(said)

    def set_step(self, step: CompiledStep, row: StepRow) -> None:
        """Record a step's latest state for the next commit and for later templates."""
        self.step_rows[step.index] = row
        self.changes.steps[step.index] = row
        self.steps_scope[step.id] = {"output": row.output, "status": row.status}

    def end_step(
        self,
        step: CompiledStep,
        status: str,
        *,
        output: Any = None,
        error: str | None = None,
        started_us: int | None = None,
        ended: bool = True,
    ) -> None:
        """Record a step's outcome, keeping the attempt and start time it already has."""
        row = self.step_rows.get(step.index)
        if status != "interrupted":
            # the step is over: the replies its attempts kept are of no further use
            self.run.state.pop(REPLIES, None)
        self.set_step(
            step,
            StepRow(
                step.index,
                step.id,
                step.type,
                status,
                row.attempt if row is not None else 1,
                started_us if started_us is not None else (row.started_us if row else None),
                self.now() if ended else None,
                output,
                error,
            ),
        )
