"""The engine: runs a compiled flow step by step, durably.

The engine object holds no per-run state; everything about a run lives in its
:class:`RunContext`. Commits are batched so that a run costs the fewest transactions a
crash-safe run needs: a step's completion is committed together with whatever comes
next (the start of the next side-effecting step, a pause, or the end), always before any
later step can have an effect. A tool step is recorded as started, in its own commit,
before it runs; an agent step (which has no effect but its model requests, law 7) just
before its first model request, a commit that also reserves that request in the run's
budget (see ``Engine._durable``). If the process dies mid-step, the next process sees the
step ``running`` with a dead executor and marks the run ``interrupted`` instead of silently
running it again (``orchestrator/ownership.py`` says who is alive). Such a step is run
again only by a human decision (:meth:`Engine.retry`) or, for a tool declared idempotent,
by :meth:`Engine.recover` within the policy's ``max_recoveries``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import suppress
from datetime import UTC, datetime
from inspect import isroutine
from typing import TYPE_CHECKING, Any

from master_sdk.contracts.status import ENDED, RECOVERABLE, RunStatus
from master_sdk.errors import (
    AlreadyResumed,
    FlowError,
    MasterError,
    NotWaiting,
    PolicyViolation,
    RunError,
    StoreBusy,
    StoreError,
)
from master_sdk.governance.inputs import admit_input
from master_sdk.governance.outputs import admit_skip_output
from master_sdk.memory.records import RunRow, StepRow, VersionConflict
from master_sdk.memory.store import ApprovalRecord, FlowSource, InputRecord
from master_sdk.orchestrator.context import RunContext, StepScope
from master_sdk.orchestrator.determinism import Clock, SystemClock, random_run_id
from master_sdk.orchestrator.ownership import (
    LIVE,
    ExecutingRuns,
    executor_alive,
    new_nonce,
    owner_token,
    process_identity,
)
from master_sdk.orchestrator.releases import Releases
from master_sdk.orchestrator.replies import REPLIES, ReplyJournal
from master_sdk.orchestrator.templating import TemplateError

if TYPE_CHECKING:
    from master_sdk.memory.records import Store
    from master_sdk.models.router import Router
    from master_sdk.products.compiler import CompiledFlow, CompiledStep
    from master_sdk.tools.executor import ToolExecutor

Scrub = Callable[[Any], Any]

MODEL_OVERRIDE = "model_override"  # run.state: a fork's model= {"model", "from": index}


def new_run_id() -> str:
    """A 32-hex-digit id that sorts by creation time (48-bit ms clock + 80 random bits)."""
    return random_run_id()


class Engine:
    """Runs flows; stateless between runs (see module docstring)."""

    def __init__(
        self,
        *,
        store: Store,
        router: Router | Callable[[], Router],
        tools: ToolExecutor | Callable[[], ToolExecutor],
        scrub: Scrub,
        clock: Clock | None = None,
        run_ids: Callable[[], str] | None = None,
    ) -> None:
        self.store = store
        # the router and the tool executor, or how to build them when a step first needs
        # one: resuming a run up to its next pause needs neither (nor pydantic)
        self._router: Router | None = None
        self._tools: ToolExecutor | None = None
        self._make_router: Callable[[], Router] | None = None
        self._make_tools: Callable[[], ToolExecutor] | None = None
        if isroutine(router):
            self._make_router = router
        else:
            self._router = router  # type: ignore[assignment]  # not a factory: a Router
        if isroutine(tools):
            self._make_tools = tools
        else:
            self._tools = tools  # type: ignore[assignment]  # not a factory: an executor
        self.scrub = scrub
        # where timestamps, durations and new run ids come from: the system, or a test
        # clock and a seeded id sequence in deterministic mode (see determinism.py)
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.run_ids: Callable[[], str] = (
            run_ids if run_ids is not None else lambda: random_run_id(self.clock)
        )
        self._clock_durations = not isinstance(self.clock, SystemClock)
        # this engine's owner token (see orchestrator/ownership.py), stored on the runs it
        # executes; other engines, here or in other processes, ask LIVE whether it lives
        self._nonce = new_nonce()
        self.owner = owner_token(self._nonce)
        self._here = process_identity()
        # the runs this engine is advancing right now: a run this engine owns but is not
        # advancing was given up (an exception, a StoreBusy mid-run) and is not live
        self._executing = ExecutingRuns()
        # runs given up after a failed commit, whose interruption is still to be written
        self.releases = Releases(self)
        LIVE.register(self._nonce, self)

    @property
    def router(self) -> Router:
        """The model router (built on first use when given as a factory)."""
        router = self._router
        if router is None:
            assert self._make_router is not None  # noqa: S101  # one of the two is set
            router = self._router = self._make_router()
        return router

    @property
    def tools(self) -> ToolExecutor:
        """The tool executor (built on first use when given as a factory)."""
        tools = self._tools
        if tools is None:
            assert self._make_tools is not None  # noqa: S101  # one of the two is set
            tools = self._tools = self._make_tools()
        return tools

    def _complete_flow(self, ctx: RunContext) -> CompiledFlow:
        """The run's flow with its tools and agents loaded: a flow read back from the flow
        cache has none, and is compiled from its files (components included) before a tool
        or agent step runs, skipped or recovered. Raises FlowError when the files changed
        since the run was loaded, or the product no longer loads."""
        flow = ctx.flow
        if flow.full is None:
            return flow
        full = flow.full()
        if (full.flow_hash, full.product_version, [s.id for s in full.steps]) != (
            flow.flow_hash,
            flow.product_version,
            [s.id for s in flow.steps],
        ):
            raise FlowError(
                "the product's files changed while this run was being resumed",
                file=flow.file,
                flow=flow.id,
                hint="open the run again: it is checked against the files as they are now",
            )
        ctx.flow = full
        return full

    def _new_context(self, flow: CompiledFlow, run: RunRow, steps: list[StepRow]) -> RunContext:
        return RunContext(
            flow, run, steps, now=self.clock.now_us, clock_durations=self._clock_durations
        )

    def executing(self, run_id: str) -> bool:
        """Whether this engine is advancing ``run_id`` right now (any thread)."""
        return run_id in self._executing

    def owner_alive(self, run: RunRow) -> bool:
        """Whether the executor ``run`` records as its owner is still executing it: a
        live engine in this process advancing it, or a live other process."""
        return executor_alive(run.owner, run.run_id, here=self._here)

    def close(self) -> None:
        """Stop counting as a live executor: runs this engine owned read as interrupted
        elsewhere in this process. Writes pending interruptions one last time."""
        self.releases.close()
        LIVE.unregister(self._nonce)

    # ------------------------------------------------------------------ lifecycle

    def start(
        self,
        flow: CompiledFlow,
        inputs: Mapping[str, Any],
        *,
        by: str,
        tags: Mapping[str, Any] | None = None,
        run_id: str | None = None,
    ) -> RunContext:
        """Create a run from validated inputs and advance it until it pauses or ends.

        ``tags`` are kept in the run's state from its first commit (an experiment's case
        names its experiment and case key there, so a crash cannot separate the two).
        ``run_id`` is the id to create (one claimed for a case beforehand); the run's first
        commit fails with a StoreError if a run of that id exists already.
        """
        at = self.clock.now_us()
        run = RunRow(
            run_id=run_id if run_id is not None else self.run_ids(),
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
        if tags:
            run.state.update(tags)
        ctx = self._new_context(flow, run, [])
        ctx.changes.flow_source = FlowSource(
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
        if run.status == RunStatus.FAILED and "aborted" in run.state:
            # aborted before `aborted` was a status of its own: it has ended all the same
            run.status = RunStatus.ABORTED
        ctx = self._new_context(flow, run, steps)
        if run.status == RunStatus.RUNNING and not self.owner_alive(run):
            try:
                self._interrupt(ctx)
            except AlreadyResumed:
                # another process noticed first (and may have recovered the run already):
                # what it wrote is the truth
                ctx = self._new_context(flow, *self.store.load(run.run_id))
            except StoreBusy:
                # the store takes no writes now: the run is shown interrupted (which it is)
                # and the interruption is written with whatever is done to it next
                pass
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
        if flow.full is not None and step.type == "tool":
            try:
                flow = self._complete_flow(ctx)
            except FlowError:
                return False  # a human decides, as for a product that does not load
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

    def decide(
        self,
        ctx: RunContext,
        *,
        approved: bool,
        comment: str | None,
        by: str,
        proceed: bool = True,
    ) -> None:
        """Record an approval decision on a paused run (its own commit, final), then
        continue it unless ``proceed`` is False (see :meth:`proceed`)."""
        run = ctx.run
        step = self._pending(ctx, "waiting_approval", "approve" if approved else "reject")
        at = self.clock.now_us()
        decision = "approved" if approved else "rejected"
        output = {
            "approved": approved,
            "by": by,
            "comment": comment,
            "at": datetime.fromtimestamp(at / 1e6, tz=UTC).isoformat(),
        }
        ctx.changes.approvals.append(ApprovalRecord(step.id, decision, by, comment, at))
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
        self._decided(ctx, proceed)

    def _decided(self, ctx: RunContext, proceed: bool) -> None:
        """Commit a decision on its own: the run is ``decided``, owned by nobody, until an
        executor continues it (here at once when ``proceed``, or any other later)."""
        run = ctx.run
        run.status = RunStatus.DECIDED
        run.owner = None
        # Continued here at once, the decision needs no sync of its own: it is written now
        # (it survives this process dying) and the continuation's next synced commit (a
        # pause, the end, a step's result) covers it before this call returns. Nothing
        # the sync would protect happens in between: the next step's start record rides
        # on that same sync (see sync_step_starts, which syncs both at once).
        self._commit(ctx, "approval", resume=True, sync=not proceed)
        if proceed:
            try:
                self.proceed(ctx)
            except BaseException:
                self._settle_decision()
                raise

    def _settle_decision(self) -> None:
        """A continuation stopped before a synced commit: make the decision written
        before it durable (best effort; the error being raised says what happened)."""
        sync = getattr(self.store, "sync", None)
        if sync is not None:
            with suppress(MasterError):
                sync()

    def proceed(self, ctx: RunContext) -> None:
        """Continue a ``decided`` run until it pauses or ends: exactly once.

        Nothing with an effect happens before the first commit of the continuation (a
        tool's start, an agent's first model request, a pause, the end), and that commit
        is a compare-and-set on the version the decision left: of two executors
        continuing the same run, one wins and the other gets :class:`AlreadyResumed`
        having done nothing.
        """
        run = ctx.run
        if run.status != RunStatus.DECIDED:
            raise NotWaiting(
                f"cannot continue run {run.run_id}: it is {run.status}, not decided",
                run_id=run.run_id,
            )
        run.status = RunStatus.RUNNING
        run.owner = self.owner
        self.advance(ctx, resume_label="continue")

    def refuse(self, ctx: RunContext, exc: PolicyViolation, *, by: str) -> None:
        """Record a decision refused by a team rule as a ``policy_violation`` event, and
        nothing else (the run keeps its status). Losing the compare-and-set to another
        writer only loses this record: the refusal stands either way."""
        run = ctx.run
        step = ctx.flow.steps[run.cursor] if run.cursor < len(ctx.flow.steps) else None
        ctx.trace.emit(
            "policy_violation",
            step_id=step.id if step else None,
            step_type=step.type if step else None,
            name=step.name if step else None,
            status="blocked",
            attrs={
                "rule": exc.rule,
                "limit": exc.limit,
                "value": exc.value,
                "by": by,
                "message": str(exc),
            },
        )
        try:
            self._commit(ctx, "refusal", resume=True)
        except AlreadyResumed:
            ctx.changes.clear()

    def submit(self, ctx: RunContext, data: Any, *, by: str, proceed: bool = True) -> None:
        """Validate user input for a paused run; if valid, record it (its own commit) and
        continue unless ``proceed`` is False.

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
        at = self.clock.now_us()
        ctx.changes.inputs.append(InputRecord(step.id, clean, by, at))
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
        self._decided(ctx, proceed)

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
        step = self._complete_flow(ctx).steps[run.cursor]
        output = admit_skip_output(
            output, flow=ctx.flow, step=step, scrub=self.scrub, run_id=run.run_id
        )
        ctx.trace.emit(
            "step_skipped",
            step_id=step.id,
            step_type=step.type,
            name=step.name,
            status="skipped",
            attrs={"by": by, "manual": True},
        )
        # a skip by hand is the step's next attempt: the failed one stays in the history
        row = ctx.step_rows.get(step.index)
        at = self.clock.now_us()
        ctx.set_step(
            step,
            StepRow(
                step.index,
                step.id,
                step.type,
                "skipped",
                (row.attempt + 1) if row is not None else 1,
                at,
                at,
                output,  # admitted above: checked and redacted
            ),
        )
        ctx.has_results = True
        run.state.pop("interrupted", None)
        run.state.pop(REPLIES, None)  # replies kept by the skipped step's attempts
        run.cursor += 1
        run.status = "running"
        run.error = None
        self.advance(ctx, resume_label="recovery")

    def abort(self, ctx: RunContext, *, reason: str | None, by: str) -> None:
        """End a run that has not ended as ``aborted``, with the reason recorded."""
        run = ctx.run
        if run.status in ENDED:
            raise NotWaiting(
                f"run {run.run_id} has already ended ({run.status}); nothing to abort",
                run_id=run.run_id,
            )
        if run.status == RunStatus.RUNNING and self.owner_alive(run):
            raise RunError(
                f"run {run.run_id} is executing a step in {run.owner} (host:pid:start:engine); "
                "wait for it or stop that process first",
                run_id=run.run_id,
            )
        run.status = RunStatus.ABORTED
        run.owner = None
        run.error = f"aborted by {by}" + (f": {reason}" if reason else "")
        run.state.pop("pending", None)
        run.state.pop("interrupted", None)
        run.state["aborted"] = {"by": by, "reason": reason}
        ctx.trace.emit("run_aborted", status="aborted", attrs={"by": by, "reason": reason})
        self._commit(ctx, "end", resume=True)

    def commit_events(self, ctx: RunContext, *, label: str = "judge") -> None:
        """Commit the trace events added to ``ctx``'s buffer after the run moved on (an
        experiment judge's model calls on a finished run): its status, steps and usage
        stay as they are. Unsynced: the events survive a killed process."""
        if ctx.changes.events:
            self._commit(ctx, label, sync=False)

    # ------------------------------------------------------------------ the loop

    def advance(
        self, ctx: RunContext, *, resume_label: str | None = None, attempt: int = 1
    ) -> None:
        """Run steps from the cursor until the run pauses or ends.

        ``resume_label`` marks the first commit as a resume of a pause (so losing the
        compare-and-set race raises :class:`AlreadyResumed`).
        """
        run_id = ctx.run.run_id
        executing = self._executing
        executing.enter(run_id)
        try:
            self._advance(ctx, resume_label, attempt)
        except StoreError as exc:
            if isinstance(exc, VersionConflict):
                raise
            executing.leave(run_id)
            run_id = ""
            raise self._gave_up(ctx, exc) from None
        finally:
            if run_id:
                executing.leave(run_id)

    def _gave_up(self, ctx: RunContext, exc: StoreError) -> StoreError:
        """A commit failed mid-run (the store locked beyond its busy timeout, a full disk):
        this engine stops executing the run. If the store still shows it ``running`` under
        this engine, the interruption is written as soon as the store allows (see
        :class:`Releases`), so that others can retry or abort it. Returns the error to
        raise, saying what was and was not written."""
        what = ctx.pending_work()
        if ctx.stored_status != RunStatus.RUNNING or ctx.version is None:
            told = f"{what}; the run is unchanged in the store ({ctx.stored_status or 'absent'})"
        else:
            self.releases.add(ctx.flow, ctx.run.run_id)
            told = f"{what}; the run shows as interrupted — retry or abort it"
        kind = StoreBusy if isinstance(exc, StoreBusy) else StoreError
        return kind(f"{told} ({exc})")

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
            if flow.full is not None:  # read from the flow cache: load its tools and agents
                try:
                    flow = self._complete_flow(ctx)
                except FlowError as exc:
                    self._fail(ctx, step, str(exc), label)
                    return
                steps = flow.steps
                step = steps[run.cursor]
            try:
                raw = step.input.render(ctx.scope) if step.input is not None else {}
            except TemplateError as exc:
                self._fail(ctx, step, f"input: {exc}", label)
                return
            started = self.clock.now_us()
            run.steps_used += 1
            run.status = "running"
            run.owner = self.owner
            ctx.trace.emit("step_started", step_id=step.id, step_type=step.type, name=step.name)
            ctx.set_step(step, StepRow(step.index, step.id, step.type, "running", attempt, started))
            if step.tool is not None:
                # a start record alone survives a crashed process without an fsync of its
                # own: the step's result is synced, with it, before anything else runs
                self._commit(ctx, "step_start", resume=label is not None, sync=ctx.has_results)
                label = None
            else:
                # an agent has no effect but its model requests (law 7): its start is
                # committed with the first one, reserving it (see _durable)
                ctx.start_pending = True
                ctx.resume_start = label is not None
            clock = self.clock.elapsed_ms()
            try:
                output = self._execute(ctx, step, raw, attempt)
            except StoreError:
                raise  # a commit of this step failed: advance() gives the run up
            except PolicyViolation as exc:
                label = self._started(ctx, label)
                self._block(ctx, step, exc, label)
                return
            except (MasterError, TemplateError) as exc:
                label = self._started(ctx, label)
                self._fail(ctx, step, str(exc), label)
                return
            except KeyboardInterrupt:
                label = self._started(ctx, label)
                self._fail(
                    ctx,
                    step,
                    "interrupted by the user (KeyboardInterrupt)",
                    label,
                    status="interrupted",
                )
                raise
            except Exception as exc:
                label = self._started(ctx, label)
                self._fail(ctx, step, f"{type(exc).__name__}: {exc}", label)
                return
            label = self._started(ctx, label)
            self._complete(
                ctx,
                step,
                self.scrub(output),
                status="completed",
                started=started,
                duration_ms=self.clock.elapsed_ms() - clock,
            )
            run.cursor += 1
            attempt = 1

    def _execute(self, ctx: RunContext, step: CompiledStep, raw: Any, attempt: int) -> Any:
        run = ctx.run
        scope = StepScope(
            run.run_id,
            step.id,
            step.type,
            attempt,
            ctx.budget,
            ctx.trace,
            ctx.flow.policy,
            lambda: self._durable(ctx),
            ctx.flow,
        )
        if step.tool is not None:
            return self.tools.call(step.tool, raw, scope)
        scope.replies = ReplyJournal(run, step.id, lambda: self._commit(ctx, "reply", sync=False))
        assert step.agent is not None and step.model is not None  # noqa: S101  # compiler invariant
        from master_sdk.orchestrator.agents import run_agent  # pydantic: not on every resume

        fork = run.state.get(MODEL_OVERRIDE)  # set by forks/copying.py
        return run_agent(
            step.agent,
            raw,
            model=fork["model"] if fork and step.index >= fork["from"] else step.model,
            router=self.router,
            aliases=ctx.flow.model_aliases,
            scope=scope,
        )

    def _durable(self, ctx: RunContext) -> None:
        """Before a model request is sent: the run's counters (the call counted, its worst
        case marked in flight) are committed. The first request of an agent step commits
        the step's start with it; a further one commits its reservation unsynced (it
        survives a killed process, and the next synced commit covers a power cut)."""
        if ctx.start_pending:
            ctx.start_pending = False
            self._commit(ctx, "step_start", resume=ctx.resume_start, sync=ctx.has_results)
        else:
            self._commit(ctx, "reservation", sync=False)

    @staticmethod
    def _started(ctx: RunContext, label: str | None) -> str | None:
        """After an agent step: the resume label still owed by the next commit (None once
        the step's start was committed)."""
        if ctx.start_pending:
            ctx.start_pending = False
            return label
        return None

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
        ended = self.clock.now_us()
        ctx.set_step(step, StepRow(step.index, step.id, step.type, "skipped", 1, None, ended))
        ctx.trace.emit(
            "step_skipped", step_id=step.id, step_type=step.type, name=step.name, status="skipped"
        )

    def _skip_until(self, ctx: RunContext, first: int, stop: int) -> None:
        for index in range(first, stop):
            self._skip_step(ctx, ctx.flow.steps[index])

    def _pause(self, ctx: RunContext, step: CompiledStep, status: str, label: str | None) -> None:
        run = ctx.run
        since = self.clock.now_us()
        pending: dict[str, Any] = {"step": step.id, "kind": step.type, "since_us": since}
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
        ctx.set_step(step, StepRow(step.index, step.id, step.type, status, 1, self.clock.now_us()))
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
        self._charge_unconfirmed(ctx)
        run.owner = None
        ctx.trace.emit(
            "run_interrupted",
            step_id=step.id if step else None,
            step_type=step.type if step else None,
            status="interrupted",
        )
        self._commit(ctx, "interrupted", resume=True)

    def _charge_unconfirmed(self, ctx: RunContext) -> None:
        """A model request was in flight when the executor died: it may have been sent and
        billed, so it counts at its worst case, traced as ``model_call_unconfirmed``."""
        from master_sdk.models.router import RESERVED, charge_reserved

        run = ctx.run
        reserved = run.state.pop(RESERVED, None)
        if not isinstance(reserved, dict):
            return
        tokens_in = int(reserved.get("tokens_in") or 0)
        tokens_out = int(reserved.get("tokens_out") or 0)
        cost = float(reserved.get("cost_usd") or 0.0)
        charge_reserved(run, tokens_in, tokens_out, cost)
        ctx.trace.emit(
            "model_call_unconfirmed",
            step_id=reserved.get("step"),
            step_type="agent",
            name=reserved.get("model"),
            status="error",
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            cost_usd=cost,
            attrs={"usage_estimated": True, "answer_seen": False},
        )

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
        if run.status not in RECOVERABLE or run.cursor >= len(ctx.flow.steps):
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
        run.updated_us = self.clock.now_us()
        run.state["seq"] = ctx.trace.seq
        try:
            self.store.commit(run, changes, expect_version=expect, label=label, sync=sync)
        except BaseException as exc:
            run.version = expect or 0
            if not isinstance(exc, VersionConflict):
                raise
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
        ctx.stored_status = run.status
        ctx.has_results = False
        changes.clear()
