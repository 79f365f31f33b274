"""The engine: runs a compiled flow step by step, durably.

The engine object holds no per-run state; everything about a run lives in its
:class:`RunContext`. Commits are batched so that a run costs the fewest transactions a
crash-safe run needs: a step's completion is committed together with whatever comes
next (the start of the next side-effecting step, a pause, or the end), always before any
later step can have an effect. A tool or agent step is recorded as started, in its own
commit, before it runs: if the process dies mid-step, the next process sees the step
``running`` with a dead owner and marks the run ``interrupted`` instead of silently
running it again. Such a step is run again only by a human decision (:meth:`Engine.retry`)
or, for a tool declared idempotent, by :meth:`Engine.recover` within the policy's
``max_recoveries``.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from master_sdk.errors import (
    AlreadyResumed,
    MasterError,
    NotWaiting,
    PolicyViolation,
    RunError,
)
from master_sdk.governance.budgets import RunBudget
from master_sdk.governance.inputs import admit_input
from master_sdk.memory.records import Changes, RunRow, StepRow, VersionConflict
from master_sdk.orchestrator.agents import run_agent
from master_sdk.orchestrator.templating import TemplateError
from master_sdk.tracing.events import ENDED, EventRow, TraceBuffer, now_us

if TYPE_CHECKING:
    from master_sdk.contracts.policy import Policy
    from master_sdk.memory.records import Store
    from master_sdk.models.router import Router
    from master_sdk.products.compiler import CompiledFlow, CompiledStep
    from master_sdk.tools.executor import ToolExecutor

Scrub = Callable[[Any], Any]


def new_run_id() -> str:
    """A 32-hex-digit id that sorts by creation time (48-bit ms clock + 80 random bits)."""
    return f"{time.time_ns() // 1_000_000:012x}{secrets.token_hex(10)}"


def process_identity() -> str:
    """``host:pid:start`` of this process; the start time guards against pid reuse."""
    stat = _proc_stat(os.getpid())
    return f"{socket.gethostname()}:{os.getpid()}:{stat[1] if stat else '?'}"


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """``(state, start time)`` of a process from ``/proc``; None if it is not there."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            stat = handle.read()
    except OSError:
        return None
    # the command name (field 2) may hold spaces; fields after it are space-separated
    fields = stat.rsplit(")", 1)[1].split()
    return fields[0], fields[19]


def owner_alive(owner: str | None) -> bool:
    """Whether the process recorded as executing a run's step still exists.

    A zombie (killed, not yet reaped by its parent) counts as dead: it executes nothing.
    """
    if not owner:
        return False
    host, _, rest = owner.partition(":")
    pid_text, _, started = rest.partition(":")
    if host != socket.gethostname():
        return True  # another machine: nothing here can tell, assume it is working
    try:
        pid = int(pid_text)
    except ValueError:
        return False
    if started not in ("", "?"):
        stat = _proc_stat(pid)
        return stat is not None and stat[1] == started and stat[0] not in ("Z", "X")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(slots=True)
class StepScope:
    """What a tool or model call sees of its run: ids, budget, trace, policy."""

    run_id: str
    step_id: str
    step_type: str
    attempt: int
    budget: RunBudget
    trace: TraceBuffer
    policy: Policy


class RunContext:
    """Everything about one run in one process: its record, scope and pending changes."""

    __slots__ = (
        "budget",
        "changes",
        "flow",
        "has_results",
        "run",
        "scope",
        "step_rows",
        "steps_scope",
        "trace",
        "version",
    )

    def __init__(self, flow: CompiledFlow, run: RunRow, steps: list[StepRow]) -> None:
        self.flow = flow
        self.run = run
        self.version: int | None = run.version if run.pk is not None else None
        # whether the pending changes hold a tool or agent result (or one given by hand):
        # such a commit is always synced, even one that also records the next step's start
        self.has_results = False
        self.step_rows: dict[int, StepRow] = {s.idx: s for s in steps}
        self.steps_scope: dict[str, dict[str, Any]] = {
            s.step_id: {"output": s.output, "status": s.status} for s in steps
        }
        self.scope: dict[str, Any] = {
            "inputs": run.inputs if run.inputs is not None else {},
            "steps": self.steps_scope,
            "run": {"id": run.run_id, "product": run.product, "flow": run.flow},
        }
        self.trace = TraceBuffer(seq=int(run.state.get("seq", 0)), rows=[])
        self.changes = Changes(events=self.trace.rows)
        self.budget = RunBudget(run, flow.policy, flow.allow)

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
        self.set_step(
            step,
            StepRow(
                step.index,
                step.id,
                step.type,
                status,
                row.attempt if row is not None else 1,
                started_us if started_us is not None else (row.started_us if row else None),
                now_us() if ended else None,
                output,
                error,
            ),
        )


class Engine:
    """Runs flows; stateless between runs (see module docstring)."""

    def __init__(
        self,
        *,
        store: Store,
        router: Router,
        tools: ToolExecutor,
        scrub: Scrub,
        owner: str,
        crash: Callable[[str], None],
        on_commit: Callable[[RunRow, list[EventRow]], None] | None = None,
    ) -> None:
        self.store = store
        self.router = router
        self.tools = tools
        self.scrub = scrub
        self.owner = owner
        self.crash = crash
        # called with each commit's events once it succeeded (the trace log); None: off
        self.on_commit = on_commit
        # ids of the runs this engine is advancing right now: for a run whose recorded
        # owner is this very process, the only way to tell a step in progress from one
        # abandoned by an exception (a StoreBusy mid-run, say)
        self._executing: set[str] = set()

    def owner_alive(self, run: RunRow) -> bool:
        """Whether a process is still executing the step ``run`` records as running."""
        if run.owner == self.owner:
            return run.run_id in self._executing
        return owner_alive(run.owner)

    # ------------------------------------------------------------------ lifecycle

    def start(self, flow: CompiledFlow, inputs: Mapping[str, Any], *, by: str) -> RunContext:
        """Create a run from validated inputs and advance it until it pauses or ends."""
        at = now_us()
        run = RunRow(
            run_id=new_run_id(),
            product=flow.product,
            flow=flow.id,
            status="running",
            version=0,
            cursor=0,
            created_us=at,
            updated_us=at,
            flow_hash=flow.flow_hash,
            product_version=flow.product_version,
            created_by=by,
            inputs=self.scrub(dict(inputs)),
        )
        ctx = RunContext(flow, run, [])
        ctx.changes.flow_source = (
            flow.flow_hash,
            flow.product,
            flow.id,
            flow.product_version,
            flow.source,
        )
        ctx.trace.emit("run_started", attrs={"by": by})
        self.advance(ctx)
        return ctx

    def load(self, flow: CompiledFlow, run: RunRow, steps: list[StepRow]) -> RunContext:
        """A context for a stored run; a run left ``running`` by a dead process becomes
        ``interrupted`` (committed) rather than being run again. Never executes a step."""
        ctx = RunContext(flow, run, steps)
        if run.status == "running" and not self.owner_alive(run):
            try:
                self._interrupt(ctx)
            except AlreadyResumed:
                # another process noticed first (and may have recovered the run already):
                # what it wrote is the truth
                ctx = RunContext(flow, *self.store.load(run.run_id))
        return ctx

    def recover(self, ctx: RunContext) -> bool:
        """Retry a step interrupted by a crash when it may run again without a human.

        Only a tool declared ``idempotent=True`` qualifies, only when the policy's
        ``auto_retry_idempotent`` allows and the flow is the one the run started with.
        Recoveries of a step are counted in the run's state and committed with the retried
        step's start, before the tool runs again; once a step has been recovered
        ``max_recoveries`` times, the next interruption fails the run with the reason
        instead (no crash loop when a kernel starts). Returns True when it acted.
        """
        run = ctx.run
        flow = ctx.flow
        if run.status != "interrupted" or run.cursor >= len(flow.steps):
            return False
        step = flow.steps[run.cursor]
        if run.state.get("interrupted") != step.id or step.tool is None:
            return False
        policy = flow.policy
        if not (step.tool.idempotent and policy.auto_retry_idempotent):
            return False
        if run.flow_hash != flow.flow_hash or run.product_version != flow.product_version:
            return False  # a human must accept the new flow first
        previous = run.state.get("recoveries") or {}
        count = int(previous.get("count", 0)) if previous.get("step") == step.id else 0
        if policy.max_recoveries == 0:
            return False  # automatic recovery is switched off: a human decides
        run.state.pop("interrupted", None)
        if count >= policy.max_recoveries:
            reason = (
                f"step '{step.id}' was interrupted again after {count} automatic "
                f"recover{'y' if count == 1 else 'ies'}; max_recoveries is "
                f"{policy.max_recoveries}, so the run stopped here (retry it by hand once "
                "the cause is fixed)"
            )
            run.status = "failed"
            run.error = reason
            ctx.trace.emit(
                "run_failed",
                step_id=step.id,
                step_type=step.type,
                status="failed",
                attrs={"error": reason, "recoveries": count},
            )
            self._commit(ctx, "end", resume=True)
            return True
        run.state["recoveries"] = {"step": step.id, "count": count + 1}
        row = ctx.step_rows.get(step.index)
        attempt = (row.attempt + 1) if row is not None else 1
        ctx.trace.emit(
            "step_retried",
            step_id=step.id,
            step_type=step.type,
            name=step.name,
            attrs={"by": "recovery", "attempt": attempt, "recovery": count + 1},
        )
        run.status = "running"
        run.error = None
        self.advance(ctx, resume_label="recovery", attempt=attempt)
        return True

    def decide(self, ctx: RunContext, *, approved: bool, comment: str | None, by: str) -> None:
        """Record an approval decision on a paused run and continue it."""
        run = ctx.run
        step = self._pending(ctx, "waiting_approval", "approve" if approved else "reject")
        at = now_us()
        decision = "approved" if approved else "rejected"
        output = {
            "approved": approved,
            "by": by,
            "comment": comment,
            "at": datetime.fromtimestamp(at / 1e6, tz=UTC).isoformat(),
        }
        ctx.changes.approvals.append((step.id, decision, by, comment, at))
        ctx.trace.emit(
            "approval_decided",
            step_id=step.id,
            step_type="hitl",
            name=step.name,
            status=decision,
            attrs={"by": by},
        )
        self._complete(
            ctx, step, self.scrub(output), status="completed" if approved else "rejected"
        )
        run.state.pop("pending", None)
        if approved:
            run.cursor += 1
        elif step.reject_to is None:
            run.status = "rejected"
            run.owner = None
            ctx.trace.emit("run_rejected", step_id=step.id, status="rejected", attrs={"by": by})
            self._commit(ctx, "approval", resume=True)
            return
        else:
            self._skip_until(ctx, step.index + 1, step.reject_to)
            run.cursor = step.reject_to
        run.status = "running"
        self.advance(ctx, resume_label="approval")

    def submit(self, ctx: RunContext, data: Any, *, by: str) -> None:
        """Validate user input for a paused run; if valid, record it and continue.

        Invalid input raises :class:`InputInvalid` listing every failing field and changes
        nothing, in memory or in the store.
        """
        run = ctx.run
        step = self._pending(ctx, "waiting_input", "submit")
        if step.validator is None:
            from master_sdk.orchestrator.validation import SchemaValidator

            step.validator = SchemaValidator(step.schema or {"type": "object"})
        clean, size = admit_input(
            data,
            limit=ctx.flow.policy.max_input_bytes,
            validator=step.validator,
            scrub=self.scrub,
            what="user input",
            run_id=run.run_id,
            step=step.id,
        )
        at = now_us()
        ctx.changes.inputs.append((step.id, clean, by, at))
        ctx.trace.emit(
            "input_received",
            step_id=step.id,
            step_type="user_input",
            name=step.name,
            attrs={"by": by, "bytes": size},
        )
        self._complete(ctx, step, clean, status="completed")
        run.state.pop("pending", None)
        run.cursor += 1
        run.status = "running"
        self.advance(ctx, resume_label="input")

    def retry(self, ctx: RunContext, *, by: str) -> None:
        """Run the interrupted or failed step again (a new attempt)."""
        run = ctx.run
        self._require_recoverable(ctx, "retry")
        step = ctx.flow.steps[run.cursor]
        row = ctx.step_rows.get(step.index)
        attempt = (row.attempt + 1) if row is not None else 1
        ctx.trace.emit(
            "step_retried",
            step_id=step.id,
            step_type=step.type,
            name=step.name,
            attrs={"by": by, "attempt": attempt},
        )
        run.state.pop("interrupted", None)
        run.status = "running"
        run.error = None
        self.advance(ctx, resume_label="recovery", attempt=attempt)

    def skip(self, ctx: RunContext, *, output: Any, by: str) -> None:
        """Give the interrupted or failed step an output by hand and continue."""
        run = ctx.run
        self._require_recoverable(ctx, "skip")
        step = ctx.flow.steps[run.cursor]
        ctx.trace.emit(
            "step_skipped",
            step_id=step.id,
            step_type=step.type,
            name=step.name,
            status="skipped",
            attrs={"by": by, "manual": True},
        )
        ctx.end_step(step, "skipped", output=self.scrub(output))
        ctx.has_results = True
        run.state.pop("interrupted", None)
        run.cursor += 1
        run.status = "running"
        run.error = None
        self.advance(ctx, resume_label="recovery")

    def abort(self, ctx: RunContext, *, reason: str | None, by: str) -> None:
        """End a run that has not ended, as ``failed``, with the reason recorded."""
        run = ctx.run
        if run.status in ENDED:
            raise NotWaiting(
                f"run {run.run_id} has already ended ({run.status}); nothing to abort",
                run_id=run.run_id,
            )
        if run.status == "running" and self.owner_alive(run):
            raise RunError(
                f"run {run.run_id} is executing a step in process {run.owner}; wait for it "
                "or stop that process first",
                run_id=run.run_id,
            )
        run.status = "failed"
        run.owner = None
        run.error = f"aborted by {by}" + (f": {reason}" if reason else "")
        run.state.pop("pending", None)
        run.state.pop("interrupted", None)
        run.state["aborted"] = {"by": by, "reason": reason}
        ctx.trace.emit("run_aborted", status="failed", attrs={"by": by, "reason": reason})
        self._commit(ctx, "end", resume=True)

    # ------------------------------------------------------------------ the loop

    def advance(
        self, ctx: RunContext, *, resume_label: str | None = None, attempt: int = 1
    ) -> None:
        """Run steps from the cursor until the run pauses or ends.

        ``resume_label`` marks the first commit as a resume of a pause (so losing the
        compare-and-set race raises :class:`AlreadyResumed`).
        """
        executing = self._executing
        executing.add(ctx.run.run_id)
        try:
            self._advance(ctx, resume_label, attempt)
        finally:
            executing.discard(ctx.run.run_id)

    def _advance(self, ctx: RunContext, resume_label: str | None, attempt: int) -> None:
        flow = ctx.flow
        run = ctx.run
        steps = flow.steps
        label = resume_label
        while True:
            if run.cursor >= len(steps):
                self._finish(ctx, label)
                return
            step = steps[run.cursor]
            if step.when is not None:
                try:
                    go = step.when.render(ctx.scope)
                except TemplateError as exc:
                    self._fail(ctx, step, f"`when:` guard failed: {exc}", label)
                    return
                if not go:
                    self._skip_step(ctx, step)
                    run.cursor += 1
                    continue
            try:
                ctx.budget.check_step(step.id)
            except PolicyViolation as exc:
                self._block(ctx, step, exc, label)
                return
            if step.type == "hitl":
                self._pause(ctx, step, "waiting_approval", label)
                return
            if step.type == "user_input":
                self._pause(ctx, step, "waiting_input", label)
                return
            try:
                raw = step.input.render(ctx.scope) if step.input is not None else {}
            except TemplateError as exc:
                self._fail(ctx, step, f"input: {exc}", label)
                return
            self.crash("before_step_start")
            started = now_us()
            run.steps_used += 1
            run.status = "running"
            run.owner = self.owner
            ctx.trace.emit("step_started", step_id=step.id, step_type=step.type, name=step.name)
            ctx.set_step(step, StepRow(step.index, step.id, step.type, "running", attempt, started))
            # a start record alone survives a crashed process without an fsync of its own:
            # the step's result is synced, with it, before anything else runs
            self._commit(ctx, "step_start", resume=label is not None, sync=ctx.has_results)
            label = None
            self.crash("after_step_start")
            clock = time.perf_counter()
            try:
                output = self._execute(ctx, step, raw, attempt)
            except PolicyViolation as exc:
                self._block(ctx, step, exc, None)
                return
            except (MasterError, TemplateError) as exc:
                self._fail(ctx, step, str(exc), None)
                return
            except KeyboardInterrupt:
                self._fail(
                    ctx,
                    step,
                    "interrupted by the user (KeyboardInterrupt)",
                    None,
                    status="interrupted",
                )
                raise
            except Exception as exc:
                self._fail(ctx, step, f"{type(exc).__name__}: {exc}", None)
                return
            self.crash("after_tool_return")
            self._complete(
                ctx,
                step,
                self.scrub(output),
                status="completed",
                started=started,
                duration_ms=(time.perf_counter() - clock) * 1000,
            )
            run.cursor += 1
            attempt = 1

    def _execute(self, ctx: RunContext, step: CompiledStep, raw: Any, attempt: int) -> Any:
        run = ctx.run
        scope = StepScope(
            run.run_id, step.id, step.type, attempt, ctx.budget, ctx.trace, ctx.flow.policy
        )
        if step.tool is not None:
            return self.tools.call(step.tool, raw, scope)
        assert step.agent is not None and step.model is not None  # noqa: S101  # compiler invariant
        return run_agent(
            step.agent,
            raw,
            model=step.model,
            router=self.router,
            aliases=ctx.flow.model_aliases,
            scope=scope,
        )

    # ------------------------------------------------------------------ step outcomes

    def _complete(
        self,
        ctx: RunContext,
        step: CompiledStep,
        output: Any,
        *,
        status: str,
        started: int | None = None,
        duration_ms: float | None = None,
    ) -> None:
        ctx.end_step(step, status, output=output, started_us=started)
        if step.type in ("tool", "agent"):
            ctx.has_results = True
        ctx.trace.emit(
            "step_completed",
            step_id=step.id,
            step_type=step.type,
            name=step.name,
            status=status,
            duration_ms=duration_ms,
        )

    def _skip_step(self, ctx: RunContext, step: CompiledStep) -> None:
        ctx.set_step(step, StepRow(step.index, step.id, step.type, "skipped", 1, None, now_us()))
        ctx.trace.emit(
            "step_skipped", step_id=step.id, step_type=step.type, name=step.name, status="skipped"
        )

    def _skip_until(self, ctx: RunContext, first: int, stop: int) -> None:
        for index in range(first, stop):
            self._skip_step(ctx, ctx.flow.steps[index])

    def _pause(self, ctx: RunContext, step: CompiledStep, status: str, label: str | None) -> None:
        run = ctx.run
        pending: dict[str, Any] = {"step": step.id, "kind": step.type}
        if step.show is not None:
            try:
                pending["show"] = self.scrub(step.show.render(ctx.scope))
            except TemplateError as exc:
                self._fail(ctx, step, f"show: {exc}", label)
                return
        run.steps_used += 1
        run.status = status
        run.owner = None
        run.state["pending"] = pending
        ctx.trace.emit("step_started", step_id=step.id, step_type=step.type, name=step.name)
        ctx.trace.emit(
            "approval_requested" if step.type == "hitl" else "input_requested",
            step_id=step.id,
            step_type=step.type,
            name=step.name,
            status=status,
        )
        ctx.set_step(step, StepRow(step.index, step.id, step.type, status, 1, now_us()))
        self._commit(ctx, "pause", resume=label is not None)

    def _finish(self, ctx: RunContext, label: str | None) -> None:
        run = ctx.run
        flow = ctx.flow
        try:
            if flow.output is not None:
                output = flow.output.render(ctx.scope)
            else:
                last = [r for i, r in sorted(ctx.step_rows.items()) if r.status == "completed"]
                output = last[-1].output if last else None
        except TemplateError as exc:
            run.status = "failed"
            run.error = f"flow output: {exc}"
            run.owner = None
            ctx.trace.emit("run_failed", status="failed", attrs={"error": run.error})
            self._commit(ctx, "end", resume=label is not None)
            return
        run.output = self.scrub(output)
        run.status = "completed"
        run.owner = None
        ctx.trace.emit("run_completed", status="completed")
        self._commit(ctx, "end", resume=label is not None)

    def _fail(
        self,
        ctx: RunContext,
        step: CompiledStep,
        message: str,
        label: str | None,
        *,
        status: str = "failed",
    ) -> None:
        run = ctx.run
        error = self.scrub(message)
        ctx.end_step(step, status, error=error)
        ctx.trace.emit(
            "step_failed",
            step_id=step.id,
            step_type=step.type,
            name=step.name,
            status=status,
            attrs={"error": error},
        )
        run.status = status
        run.error = f"step '{step.id}': {error}"
        run.owner = None
        if status == "failed":
            ctx.trace.emit("run_failed", step_id=step.id, status="failed")
        else:
            ctx.trace.emit("run_interrupted", step_id=step.id, status="interrupted")
        self._commit(ctx, "end", resume=label is not None)

    def _block(
        self, ctx: RunContext, step: CompiledStep, exc: PolicyViolation, label: str | None
    ) -> None:
        run = ctx.run
        ctx.trace.emit(
            "policy_violation",
            step_id=step.id,
            step_type=step.type,
            name=step.name,
            status="blocked",
            attrs={"rule": exc.rule, "limit": exc.limit, "value": exc.value, "message": str(exc)},
        )
        ctx.end_step(step, "blocked", error=self.scrub(str(exc)))
        run.status = "blocked"
        run.owner = None
        run.error = self.scrub(f"policy {exc.rule}: {exc}")
        run.state.pop("pending", None)
        run.state["violation"] = {
            "rule": exc.rule,
            "limit": exc.limit,
            "value": exc.value,
            "step": step.id,
        }
        ctx.trace.emit("run_blocked", step_id=step.id, status="blocked", attrs={"rule": exc.rule})
        self._commit(ctx, "end", resume=label is not None)

    def _interrupt(self, ctx: RunContext) -> None:
        run = ctx.run
        step = ctx.flow.steps[run.cursor] if run.cursor < len(ctx.flow.steps) else None
        if step is not None and step.index in ctx.step_rows:
            ctx.end_step(
                step,
                "interrupted",
                error="the process running this step ended before it finished",
                ended=False,
            )
        run.status = "interrupted"
        run.error = (
            f"step '{step.id if step else '?'}' was interrupted: the process running it "
            f"({run.owner}) ended; retry, skip or abort"
        )
        if step is not None:
            run.state["interrupted"] = step.id  # a crash, which recover() may handle
        run.owner = None
        ctx.trace.emit(
            "run_interrupted",
            step_id=step.id if step else None,
            step_type=step.type if step else None,
            status="interrupted",
        )
        self._commit(ctx, "interrupted", resume=True)

    # ------------------------------------------------------------------ guards and commits

    def _pending(self, ctx: RunContext, status: str, action: str) -> CompiledStep:
        run = ctx.run
        if run.status != status:
            wanted = "approval" if status == "waiting_approval" else "input"
            raise NotWaiting(
                f"cannot {action} run {run.run_id}: it is {run.status}, not waiting for {wanted}",
                run_id=run.run_id,
            )
        return ctx.flow.steps[run.cursor]

    def _require_recoverable(self, ctx: RunContext, action: str) -> None:
        run = ctx.run
        if "aborted" in run.state:
            raise NotWaiting(
                f"cannot {action} run {run.run_id}: it was aborted by "
                f"{run.state['aborted'].get('by')}; start a new run instead",
                run_id=run.run_id,
            )
        if run.status not in ("interrupted", "failed") or run.cursor >= len(ctx.flow.steps):
            raise NotWaiting(
                f"cannot {action} run {run.run_id}: it is {run.status}; only an interrupted "
                "or failed step can be retried or skipped",
                run_id=run.run_id,
            )

    def _commit(
        self, ctx: RunContext, label: str, *, resume: bool = False, sync: bool = True
    ) -> None:
        run = ctx.run
        changes = ctx.changes
        # name a commit after the human decision it carries, whatever else it holds, so a
        # crash test can stop the process while that decision is being written
        if changes.approvals:
            label = "approval"
        elif changes.inputs:
            label = "input"
        expect = ctx.version
        run.version = (expect or 0) + 1
        run.updated_us = now_us()
        run.state["seq"] = ctx.trace.seq
        try:
            self.store.commit(run, changes, expect_version=expect, label=label, sync=sync)
        except VersionConflict as exc:
            run.version = expect or 0
            if resume:
                raise AlreadyResumed(
                    f"run {run.run_id} was already resumed elsewhere (it is now {exc.status}); "
                    "nothing was changed here — reload it with wb.get_run()",
                    run_id=run.run_id,
                ) from None
            raise RunError(
                f"run {run.run_id} was changed by another process while this one ran it "
                f"(now {exc.status}); reload it with wb.get_run()",
                run_id=run.run_id,
            ) from None
        ctx.version = run.version
        ctx.has_results = False
        if self.on_commit is not None:
            self.on_commit(run, changes.events)
        changes.clear()
        self.crash("after_commit")
