"""A handle on one stored run: its state, its actions, its data, its display.

A :class:`Run` knows its :class:`~master_sdk.workbench.Workbench` and uses only the
workbench's public surface (:meth:`~master_sdk.workbench.Workbench.resume`,
:meth:`~master_sdk.workbench.Workbench.get_run`, ``redact``, ``traces``, ``steps``):
everything a run does, a script can do with the workbench and a run id.

Example:
    >>> run = wb.run("hello_world/greet", inputs={"text": "Hello"})  # doctest: +SKIP
    >>> run.approve(comment="fine").submit({"audience": "the board"})  # doctest: +SKIP
    >>> run.status, run.ended                                          # doctest: +SKIP
    ('completed', True)
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from contextlib import suppress
from typing import TYPE_CHECKING, Any

from master_sdk.contracts.status import RunStatus
from master_sdk.errors import NotWaiting
from master_sdk.governance.disclosure import redacting_errors

if TYPE_CHECKING:
    import pandas as pd

    from master_sdk.memory.records import RunRow
    from master_sdk.memory.store import Reservation
    from master_sdk.notebook.views import Form, RunView
    from master_sdk.orchestrator.context import RunContext
    from master_sdk.workbench import Workbench


@redacting_errors(lambda run: run._wb._redact)  # every error raised leaves redacted
class Run:
    """A handle on one run. Actions continue the run in place; properties show the state
    last read (call :meth:`refresh` to re-read the store).

    A handle may be shared between threads: each action re-reads what it needs, and the
    store's compare-and-set lets exactly one of two concurrent decisions on the same pause
    win (the other raises :class:`~master_sdk.errors.AlreadyResumed`).
    """

    def __init__(self, wb: Workbench, row: RunRow, ctx: RunContext | None) -> None:
        self._wb = wb
        self._row = row
        self._ctx = ctx
        self._view: RunView | None = None
        # one action at a time through this handle: an action may reuse the handle's context
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ state

    @property
    def id(self) -> str:
        """The run id."""
        return self._row.run_id

    @property
    def status(self) -> RunStatus:
        """A :class:`~master_sdk.contracts.status.RunStatus` (a ``str``): running,
        waiting_approval, waiting_input, completed, rejected, failed, blocked, interrupted
        or aborted."""
        return RunStatus(self._row.status)

    @property
    def product(self) -> str:
        """The product name."""
        return self._row.product

    @property
    def flow(self) -> str:
        """The flow id."""
        return self._row.flow

    @property
    def ref(self) -> str:
        """``product/flow``."""
        return f"{self._row.product}/{self._row.flow}"

    @property
    def output(self) -> Any:
        """The flow's output (redacted), once completed."""
        return self._wb.redact(self._row.output)

    @property
    def inputs(self) -> Any:
        """The inputs the run started with (redacted)."""
        return self._wb.redact(self._row.inputs)

    @property
    def error(self) -> str | None:
        """Why the run failed, was blocked, aborted or interrupted (redacted)."""
        error: str | None = self._wb.redact(self._row.error)
        return error

    @property
    def waiting_for(self) -> dict[str, Any] | None:
        """What a paused run waits for: step, kind, prompt, and ``show`` or ``schema``."""
        if not self.status.paused:
            return None
        pending = dict(self._row.state.get("pending") or {})
        pending.pop("since_us", None)  # the pending list's business (wb.pending())
        ctx = self._ctx
        if ctx is not None and self._row.cursor < len(ctx.flow.steps):
            step = ctx.flow.steps[self._row.cursor]
            pending["prompt"] = getattr(step.spec, "prompt", "")
            if step.schema is not None:
                pending["schema"] = step.schema
        # the prompt and schema come from the flow file: template constants are redacted too
        shown: dict[str, Any] = self._wb.redact(pending)
        return shown

    @property
    def ended(self) -> bool:
        """True once no action can continue the run: completed, rejected, blocked or
        aborted. A ``failed`` run has not ended: :meth:`retry` runs its step again (or
        :meth:`abort` ends it)."""
        return self.status.ended

    @property
    def workbench(self) -> Workbench:
        """The workbench this run belongs to."""
        return self._wb

    def refresh(self) -> Run:
        """Re-read the run from the store (another kernel or the CLI may have moved it).

        Unlike :meth:`Workbench.get_run` this never runs a step: a run whose executor died
        shows as ``interrupted`` until it is opened with ``get_run`` or retried.
        """
        fresh = self._wb.get_run(self.id, recover=False)
        self._row, self._ctx = fresh._row, fresh._ctx
        self._changed()
        return self

    # ------------------------------------------------------------------ actions

    def approve(
        self, comment: str | None = None, *, by: str | None = None, allow_flow_change: bool = False
    ) -> Run:
        """Approve the pending ``hitl`` step and continue until the next pause or the end.

        Raises:
            NotWaiting: the run is not waiting for approval.
            AlreadyResumed: another process decided this pause first (nothing changed here).
            FlowChanged: the flow changed since the run started.
        """
        return self._act("approve", by, allow_flow_change, comment=comment)

    def reject(
        self, comment: str | None = None, *, by: str | None = None, allow_flow_change: bool = False
    ) -> Run:
        """Reject the pending ``hitl`` step: the run ends as ``rejected`` or jumps to the
        step named by ``on_reject``."""
        return self._act("reject", by, allow_flow_change, comment=comment)

    def submit(
        self,
        data: Mapping[str, Any],
        *,
        by: str | None = None,
        allow_flow_change: bool = False,
    ) -> Run:
        """Give the pending ``user_input`` step its data and continue.

        Raises:
            InputInvalid: ``data`` fails the step's schema or size cap; ``errors`` lists every
                failing field and the run is unchanged.
            NotWaiting: the run is not waiting for input.
        """
        # checked (an object, not None or a list) by the workbench, like every input
        return self._act("submit", by, allow_flow_change, data=data)

    def retry(self, *, by: str | None = None, allow_flow_change: bool = False) -> Run:
        """Run an interrupted or failed step again (a new attempt, same idempotency key).

        Raises:
            NotWaiting: the run is not interrupted or failed (an ended run cannot be
                retried: exactly when :attr:`ended` is False and the run is not paused or
                running, retry applies).
            AlreadyResumed: another process retried, skipped or aborted it first.
        """
        return self._act("retry", by, allow_flow_change)

    def skip(
        self, output: Any = None, *, by: str | None = None, allow_flow_change: bool = False
    ) -> Run:
        """Mark an interrupted or failed step done with ``output`` (what later steps see as
        ``steps.<id>.output``) without running it, and continue."""
        return self._act("skip", by, allow_flow_change, output=output)

    def abort(self, reason: str | None = None, *, by: str | None = None) -> Run:
        """End the run as ``aborted`` with ``reason`` (any flow change is irrelevant here)."""
        return self._act("abort", by, None, reason=reason)

    def reserve(self, minutes: float | None = None, *, by: str | None = None) -> Reservation:
        """Reserve this paused run so no other reviewer decides it meanwhile (see
        :meth:`Workbench.reserve`); ``minutes=0`` releases it."""
        return self._wb.reserve(self.id, minutes, by=by)

    def proceed(self) -> Run:
        """Continue a ``decided`` run (its decision recorded, not yet acted on) until it
        pauses or ends: what ``approve`` does by default, ``wb.work()`` and ``master work``
        do for every decided run.

        Raises:
            NotWaiting: the run is not decided.
            AlreadyResumed: another executor continued it first (nothing ran here).
        """
        return self._act("proceed", None, False)

    def _act(self, action: str, by: str | None, allow_flow_change: bool | None, **args: Any) -> Run:
        """Continue the run through the workbench; on any error, show the stored state
        again (an action that failed, or lost a race, changed nothing there)."""
        with self._lock:
            return self._act_locked(action, by, allow_flow_change, args)

    def _act_locked(
        self, action: str, by: str | None, allow_flow_change: bool | None, args: dict[str, Any]
    ) -> Run:
        try:
            ctx = self._wb.resume(
                self.id,
                action,
                by=by,
                allow_flow_change=allow_flow_change,
                context=self._ctx,
                **args,
            )
        except BaseException:
            with suppress(Exception):
                self.refresh()
            raise
        self._row, self._ctx = ctx.run, ctx
        self._changed()
        return self

    # ------------------------------------------------------------------ forks and diffs

    def fork(
        self,
        at: str,
        *,
        inputs: Mapping[str, Any] | None = None,
        model: str | None = None,
        by: str | None = None,
    ) -> Run:
        """A new run that copies this run's steps before ``at`` and runs ``at`` and every
        later step on the flow as it is now (an edited prompt, template, tool or model).

        Copied steps are not executed again and not charged to the new run's budget; their
        trace shows ``step_copied`` events. Human steps at or after ``at`` ask again (the
        fork pauses there). The fork records this run as its ``parent_run_id`` and ``at``
        as ``forked_at``.

        Args:
            at: the id of the first step to run again.
            inputs: flow inputs to change for the steps that run again (merged over this
                run's inputs, validated against the flow's inputs schema).
            model: the logical model of every agent step from ``at`` on, for this run
                only (the allow-lists apply).
            by: who forks (default: the workbench user).

        Raises:
            RunError: the copied steps no longer fit the flow (a step removed or renamed,
                an output field a later step reads no longer there): the message names the
                step and field; nothing is written.
            InputInvalid: ``inputs`` fail the flow's schema.
            PolicyViolation: ``model`` is not configured or not allowed.

        Example:
            >>> run2 = run.fork(at="summary", model="gpt")  # doctest: +SKIP
            >>> run.diff(run2)                              # doctest: +SKIP
        """
        from master_sdk.forks import fork_run

        return fork_run(self._wb, self.id, at, inputs=inputs, model=model, by=by)

    def diff(self, other: Run) -> pd.DataFrame:
        """What changed from this run to ``other`` (a run of the same flow, forked or not):
        one row per step, aligned by step id — each run's status, whether the output
        changed and which JSON paths (``old → new``, redacted, cut short), tokens, cost
        and duration with deltas (``other`` minus this). Its notebook display highlights
        the changes; columns in ``docs/dataframes.md``."""
        from master_sdk.diffing import diff_runs

        return diff_runs(self, other)

    @property
    def parent_run_id(self) -> str | None:
        """The run this one was forked from (None when it was not forked)."""
        return self._row.parent_run_id

    @property
    def forked_at(self) -> str | None:
        """The step this run was forked at (None when it was not forked)."""
        return self._row.forked_at

    def lineage(self) -> pd.DataFrame:
        """This run's ancestors (oldest first), itself, then the runs forked from it and
        from them (breadth first): ``run_id``, ``relation`` (ancestor, self, descendant),
        ``depth`` (-1 the parent, 0 this run, 1 its forks...), ``parent_run_id``,
        ``forked_at``, ``status``, ``created_at``."""
        from master_sdk.forks.lineage import lineage

        return lineage(self._wb, self.id, self.product, self.flow)

    # ------------------------------------------------------------------ data

    def trace(self) -> pd.DataFrame:
        """This run's trace events (columns in ``docs/dataframes.md``)."""
        return self._wb.traces(run_id=self.id)

    def steps(self, *, attempts: bool = False) -> pd.DataFrame:
        """One row per step reached: status, attempt, timing, output; ``attempts=True``:
        one row per attempt of each step (retries, recoveries), oldest first."""
        return self._wb.steps(self.id, attempts=attempts)

    def budget(self) -> pd.DataFrame:
        """Budget, used, limit, remaining and percent for every budget of the run."""
        import pandas as pd

        from master_sdk.governance.budgets import RunBudget

        policy = self._ctx.flow.policy if self._ctx is not None else self._wb.settings.policy
        violation = self._row.state.get("violation") or {}
        rows = []
        for name, used, limit in RunBudget(self._row, policy).rows():
            remaining = None if limit is None else max(0.0, float(limit) - float(used))
            percent = None if not limit else 100.0 * float(used) / float(limit)
            blocked = violation.get("rule") in (f"max_{name}", name)
            rows.append(
                {
                    "budget": name,
                    "used": float(used),
                    "limit": None if limit is None else float(limit),
                    "remaining": remaining,
                    "percent": percent,
                    "status": "blocked" if blocked else "ok",
                    # the attempted value can be anything a run tried (a model name an agent
                    # built): shown redacted
                    "attempted": self._wb.redact(violation.get("value")) if blocked else None,
                }
            )
        frame = pd.DataFrame(rows)
        for column in ("used", "limit", "remaining", "percent"):
            frame[column] = frame[column].astype("float64")
        frame["budget"] = pd.Categorical(frame["budget"], categories=list(frame["budget"]))
        frame["status"] = pd.Categorical(frame["status"], categories=["ok", "blocked"])
        return frame

    # ------------------------------------------------------------------ display

    def view(self) -> RunView:
        """The run as a live widget (needs ipywidgets): header, steps, the form it needs.

        The same view on every call; every action on this handle redraws it in place.
        """
        if self._view is None:
            from master_sdk.notebook.views import RunView

            self._view = RunView(self)
        view: RunView = self._view
        return view

    def form(self) -> Form:
        """The form this run needs now, as an object a notebook or a test can drive.

        An :class:`~master_sdk.notebook.forms.ApprovalForm` while waiting for approval
        (``comment``, ``user``, ``approve_button``, ``reject_button``), a
        :class:`~master_sdk.notebook.forms.SchemaForm` while waiting for input (``fields``,
        ``submit_button``), a :class:`~master_sdk.notebook.recovery.RecoveryForm` when
        interrupted or failed (``retry_button``, ``skip_button``, ``abort_button``). The same object
        on every call while the run stays at the same pause; clicking it continues the run.

        Raises:
            NotWaiting: the run needs no form (running, or ended: completed, rejected,
                blocked or aborted).

        Example:
            >>> form = run.form()
            >>> form.fields["audience"].value = "the board"
            >>> form.submit_button.click()
        """
        form = self.view().form()
        if form is None:
            raise NotWaiting(
                f"run {self.id} is {self.status}: only a run waiting for approval or input, "
                "or an interrupted or failed one, has a form",
                run_id=self.id,
            )
        return form

    def _changed(self) -> None:
        if self._view is not None:
            self._view.update()

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        if _widgets_usable():
            bundle: dict[str, Any] = self.view()._repr_mimebundle_(**kwargs)
            return bundle
        from master_sdk.notebook.summary import RunSummary

        summary = RunSummary.of(self)
        return {"text/plain": summary.text(), "text/html": summary.html()}

    def __repr__(self) -> str:
        return f"Run(id={self.id!r}, ref={self.ref!r}, status={str(self.status)!r})"


def _widgets_usable() -> bool:
    """Whether a widget can be shown: inside a Jupyter kernel with ipywidgets installed."""
    import sys
    from importlib.util import find_spec

    return "ipykernel" in sys.modules and find_spec("ipywidgets") is not None
