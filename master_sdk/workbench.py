"""The one entry object: :class:`Workbench` wires config, store, products and router;
:class:`Run` is a handle on one stored run.

Example:
    >>> import master_sdk as ms
    >>> wb = ms.Workbench.open()                                    # doctest: +SKIP
    >>> run = wb.run("hello_world/greet", inputs={"text": "Hello"})  # doctest: +SKIP
    >>> run.status                                                   # doctest: +SKIP
    'waiting_approval'
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from contextlib import suppress
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from master_sdk.errors import (
    AlreadyResumed,
    FlowError,
    MasterError,
    NotFound,
    NotWaiting,
)
from master_sdk.tracing.events import ENDED

# statuses from which no action can continue a run; every other run is pinned to its flow
_FINAL = frozenset({"completed", "rejected", "blocked"})
_PAUSED = frozenset({"waiting_approval", "waiting_input"})

if TYPE_CHECKING:
    import pandas as pd

    from master_sdk.config.settings import Settings
    from master_sdk.memory.records import RunRow
    from master_sdk.memory.transfer import TransferReport
    from master_sdk.models.types import Provider
    from master_sdk.notebook.views import Form, RunView
    from master_sdk.orchestrator.engine import Engine, RunContext
    from master_sdk.products.compiler import CompiledFlow
    from master_sdk.products.loader import ProductCatalog


class Workbench:
    """Products, runs and their data for one project folder.

    Open it with :meth:`open`; it finds ``products/`` and ``configs/`` upward from the
    current directory, and keeps runs in ``storage/master.sqlite3``.
    """

    def __init__(
        self, settings: Settings, *, providers: Mapping[str, Provider] | None = None
    ) -> None:
        from master_sdk.governance.scrubbing import build_redactor
        from master_sdk.memory.sqlite import SQLiteStore
        from master_sdk.models.router import Router
        from master_sdk.orchestrator.crashpoints import CrashPoints
        from master_sdk.orchestrator.engine import Engine, process_identity
        from master_sdk.orchestrator.templating import TemplateEngine
        from master_sdk.products.loader import ProductCatalog
        from master_sdk.tools.executor import ToolExecutor
        from master_sdk.tracing.logs import TraceLog

        self.settings = settings
        self.root: Path = settings.root
        self.user: str = settings.user
        policy = settings.policy
        redactor = build_redactor(policy.redaction, settings.secret_values)
        self._redact = redactor.value
        log_file = settings.app.log_file
        self._log = TraceLog(
            level=settings.app.log_level,
            file=settings.root / log_file if log_file else None,
            scrub=self._redact,
        )
        crash = CrashPoints(settings.app.crash_point)
        self.store = SQLiteStore(
            settings.store_path,
            synchronous=settings.app.synchronous,
            busy_timeout_ms=settings.app.busy_timeout_ms,
            scrub=self._redact,
            before_commit=(lambda label: crash(f"commit:{label}")) if crash.armed else None,
            allow_network=settings.app.allow_network_store,
            sync_step_starts=settings.app.sync_step_starts,
        )
        self.router = Router(
            settings.models, root=settings.root, providers=providers, scrub=self._redact
        )
        self.catalog: ProductCatalog = ProductCatalog(
            settings.products_path,
            policy=settings.policy,
            templates=TemplateEngine(
                max_rendered_chars=policy.max_rendered_chars, max_render_ms=policy.max_render_ms
            ),
            model_names=self.router.names,
        )
        self.engine: Engine = Engine(
            store=self.store,
            router=self.router,
            tools=ToolExecutor(),
            scrub=self._redact,
            owner=process_identity(),
            crash=crash,
            on_commit=self._log.commit if self._log.enabled else None,
        )
        self._mark_abandoned()

    def _mark_abandoned(self) -> None:
        """Mark runs left ``running`` by processes that no longer exist as ``interrupted``.

        One query when nothing was abandoned; never executes a step (an idempotent tool is
        retried when its run is opened with :meth:`get_run`). Best effort: a run this
        cannot mark now (store busy, flow broken) is marked when it is next loaded.
        """
        from master_sdk.orchestrator.engine import owner_alive

        for run_id, owner in self.store.find_runs(status="running"):
            if not owner_alive(owner):
                with suppress(MasterError):
                    self._load(run_id)

    @classmethod
    def open(
        cls,
        root: str | Path | None = None,
        *,
        store: str | Path | None = None,
        providers: Mapping[str, Provider] | None = None,
    ) -> Workbench:
        """Open the workbench of a project folder.

        Args:
            root: the folder holding ``products/`` and ``configs/``; default: found upward
                from the current directory.
            store: another SQLite file for runs (default ``storage/master.sqlite3``).
            providers: model providers by logical name, replacing configured ones (tests
                pass a scripted model here; see :mod:`master_sdk.testing`).
        """
        from master_sdk.config.loader import load_settings

        return cls(load_settings(root, store=store), providers=providers)

    @staticmethod
    def spec_schema(kind: str) -> dict[str, Any]:
        """The JSON Schema of a spec file (``flow``, ``manifest`` or ``product``) for editors."""
        from master_sdk.contracts.flow import SPEC_MODELS

        if kind not in SPEC_MODELS:
            raise NotFound(f"no spec '{kind}'; choose one of {', '.join(SPEC_MODELS)}")
        return SPEC_MODELS[kind].model_json_schema(by_alias=True)

    # ------------------------------------------------------------------ products

    def products(self) -> list[str]:
        """Names of the products found (broken ones included)."""
        return self.catalog.names()

    def flows(self, product: str | None = None) -> list[str]:
        """``product/flow`` references of every loadable flow (of one product if given)."""
        refs: list[str] = []
        for name in [product] if product else self.catalog.names():
            try:
                loaded = self.catalog.product(name)
            except FlowError:
                if product:
                    raise
                continue
            refs.extend(f"{name}/{flow}" for flow in sorted(loaded.flow_files))
        return refs

    def flow(self, ref: str) -> FlowView:
        """A flow, which renders itself as a diagram in a notebook."""
        return FlowView(self.catalog.flow(ref))

    def validate(self) -> list[FlowError]:
        """Load every product and flow; return every problem (empty when all is well)."""
        return self.catalog.validate()

    # ------------------------------------------------------------------ runs

    def run(
        self, ref: str, inputs: Mapping[str, Any] | None = None, *, by: str | None = None
    ) -> Run:
        """Start ``product/flow`` and run it until it pauses or ends.

        Raises:
            InputInvalid: the inputs fail the flow's ``inputs`` schema (nothing is stored).
            FlowError: the product or flow is broken.
        """
        from master_sdk.governance.inputs import admit_input

        flow = self.catalog.flow(ref)
        data = dict(inputs or {})
        if flow.input_validator is None:
            from master_sdk.orchestrator.validation import SchemaValidator

            flow.input_validator = SchemaValidator(flow.spec.inputs)
        # size, depth and schema; the engine stores the inputs redacted
        admit_input(
            data,
            limit=flow.policy.max_input_bytes,
            validator=flow.input_validator,
            scrub=self._redact,
            what=f"inputs for {ref}",
        )
        ctx = self.engine.start(flow, data, by=by or self.user)
        return Run(self, ctx.run, ctx)

    def get_run(self, run_id: str, *, recover: bool = True) -> Run:
        """A stored run, in the same state as in the process that left it.

        A run that was executing a step in a process that has since died is marked
        ``interrupted`` here. If that step is a tool declared ``idempotent=True`` and the
        policy allows (``auto_retry_idempotent``, ``max_recoveries``), it is retried at once,
        with the same idempotency key; any other step waits for a human: :meth:`Run.retry`,
        :meth:`Run.skip` or :meth:`Run.abort`.

        Args:
            run_id: the run's id.
            recover: retry an interrupted idempotent tool step now (default); False only
                reads the run (and marks it interrupted).
        """
        row, ctx = self._load(run_id)
        if recover and ctx is not None and row.status == "interrupted":
            try:
                self.engine.recover(ctx)
            except AlreadyResumed:
                row, ctx = self._load(run_id)  # another process recovered it first
            else:
                row = ctx.run
        return Run(self, row, ctx)

    def _load(self, run_id: str) -> tuple[RunRow, RunContext | None]:
        row, steps = self.store.load(run_id)
        try:
            flow = self.catalog.flow(f"{row.product}/{row.flow}")
        except (FlowError, NotFound):
            return row, None
        ctx = self.engine.load(flow, row, steps)
        return ctx.run, ctx

    def _current(self, ctx: RunContext) -> bool:
        """Whether a run handle's context can be acted on without reading the store again.

        Only a pause qualifies, on the flow it started with, compiled from the file as it is
        now. Another process may still have moved the run since: then the action's
        compare-and-set on the run's version fails and nothing is written
        (:class:`AlreadyResumed`), which is the right answer for a decision taken on what
        this handle showed.
        """
        run = ctx.run
        flow = ctx.flow
        return (
            run.status in _PAUSED
            and run.flow_hash == flow.flow_hash
            and run.product_version == flow.product_version
            and self.catalog.flow(f"{run.product}/{run.flow}") is flow
        )

    def _context(
        self, run_id: str, *, allow_flow_change: bool | None, by: str | None
    ) -> RunContext:
        """The run, loaded to act on; ``allow_flow_change=None`` skips the flow pin."""
        from master_sdk.orchestrator.pinning import check_flow_pin

        row, steps = self.store.load(run_id)
        flow = self.catalog.flow(f"{row.product}/{row.flow}")
        ctx = self.engine.load(flow, row, steps)
        run = ctx.run
        if (
            allow_flow_change is not None
            and run.status not in _FINAL
            and (run.flow_hash != flow.flow_hash or run.product_version != flow.product_version)
        ):
            check_flow_pin(
                ctx,
                allow_change=allow_flow_change,
                previous_source=self.store.flow_source(run.flow_hash),
                by=by,
            )
        return ctx

    # ------------------------------------------------------------------ data

    def runs(
        self, *, product: str | None = None, flow: str | None = None, status: str | None = None
    ) -> pd.DataFrame:
        """The run list as a DataFrame, newest first (columns in the README)."""
        return self._frame(self.store.runs_frame(product=product, flow=flow, status=status))

    def traces(
        self,
        *,
        product: str | None = None,
        flow: str | None = None,
        status: str | None = None,
        since: datetime | str | None = None,
        run_id: str | None = None,
    ) -> pd.DataFrame:
        """Trace events across runs as a DataFrame (columns in the README).

        Args:
            product, flow, status: keep runs with these values.
            since: keep events at or after this time (aware datetime or ISO string; naive
                means UTC).
            run_id: keep one run.
        """
        since_us = None
        if since is not None:
            from datetime import UTC

            moment = datetime.fromisoformat(since) if isinstance(since, str) else since
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            since_us = int(moment.timestamp() * 1_000_000)
        from master_sdk.memory.sqlite import TRACE_REDACTED

        return self._frame(
            self.store.trace_frame(
                run_id=run_id, product=product, flow=flow, status=status, since_us=since_us
            ),
            redacted=TRACE_REDACTED,
        )

    def approvals(self, *, product: str | None = None, flow: str | None = None) -> pd.DataFrame:
        """The approval audit: who decided what, when, with which comment."""
        return self._frame(self.store.approvals_frame(product=product, flow=flow))

    def _frame(self, frame: pd.DataFrame, *, redacted: Collection[str] = ()) -> pd.DataFrame:
        """Every frame leaves redacted (the store redacts on write; this also covers data
        written before a secret was added to the secrets file). ``redacted``: columns the
        store redacted while building the frame, skipped when its redactor is this one."""
        from master_sdk.governance.exports import redact_frame

        done = redacted if self.store.scrub is self._redact else ()
        return redact_frame(frame, self._redact, redacted=done)

    # ------------------------------------------------------------------ the store itself

    def store_info(self) -> dict[str, Any]:
        """The store's path, schema version, durability pragmas as SQLite reports them
        (``journal_mode``, ``synchronous``, ``busy_timeout_ms``), ``integrity``
        (``PRAGMA integrity_check``: ``"ok"`` when healthy) and run counts."""
        return self.store.info()

    def export_store(
        self,
        path: str | Path,
        *,
        runs: Sequence[str] | None = None,
        format: str | None = None,
        overwrite: bool = False,
    ) -> TransferReport:
        """Write runs to one file a colleague can import.

        ``*.sqlite3`` is a standalone SQLite copy made with SQLite's online backup API (a
        consistent snapshot, even while other processes write); ``*.jsonl`` is JSON Lines,
        one run per line with its steps, trace, approvals and inputs.

        Args:
            path: the file to write (refused if it exists, unless ``overwrite``).
            runs: run ids to export (default: every run).
            format: ``sqlite`` or ``jsonl`` (default: from the suffix).
            overwrite: replace an existing file.

        Example:
            >>> wb.export_store("shared/review.jsonl", runs=[run.id])  # doctest: +SKIP
        """
        return self.store.export_runs(
            Path(path), run_ids=runs, fmt=format, overwrite=overwrite
        )

    def import_store(
        self,
        path: str | Path,
        *,
        format: str | None = None,
        on_duplicate: str = "skip",
    ) -> TransferReport:
        """Merge the runs of an exported file (or another store file) into this store.

        One transaction: all runs are added or none. A run whose id is already in the store
        is left as it is and listed in the report's ``skipped`` (``on_duplicate="error"``
        refuses the import instead). Imported runs that were executing a step show as
        ``interrupted`` here.
        """
        report = self.store.import_runs(Path(path), fmt=format, on_duplicate=on_duplicate)
        self._mark_abandoned()  # a run imported mid-step has no owner here
        return report

    # ------------------------------------------------------------------ lifetime

    def close(self) -> None:
        """Close the store connection, the trace log and the model providers' connections."""
        self.router.close()
        self.store.close()
        self._log.close()

    def __enter__(self) -> Workbench:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Workbench(root={str(self.root)!r}, store={str(self.store.path)!r})"


class Run:
    """A handle on one run. Actions continue the run in place; properties show the state
    last read (call :meth:`refresh` to re-read the store)."""

    def __init__(self, wb: Workbench, row: RunRow, ctx: RunContext | None) -> None:
        self._wb = wb
        self._row = row
        self._ctx = ctx
        self._view: RunView | None = None

    # ------------------------------------------------------------------ state

    @property
    def id(self) -> str:
        """The run id."""
        return self._row.run_id

    @property
    def status(self) -> str:
        """running, waiting_approval, waiting_input, completed, rejected, failed,
        blocked or interrupted."""
        return self._row.status

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
        return self._wb._redact(self._row.output)

    @property
    def inputs(self) -> Any:
        """The inputs the run started with (redacted)."""
        return self._wb._redact(self._row.inputs)

    @property
    def error(self) -> str | None:
        """Why the run failed, was blocked or interrupted (redacted)."""
        error: str | None = self._wb._redact(self._row.error)
        return error

    @property
    def waiting_for(self) -> dict[str, Any] | None:
        """What a paused run waits for: step, kind, prompt, and ``show`` or ``schema``."""
        if self._row.status not in ("waiting_approval", "waiting_input"):
            return None
        pending = dict(self._row.state.get("pending") or {})
        ctx = self._ctx
        if ctx is not None and self._row.cursor < len(ctx.flow.steps):
            step = ctx.flow.steps[self._row.cursor]
            spec = step.spec
            pending["prompt"] = getattr(spec, "prompt", "")
            if step.schema is not None:
                pending["schema"] = step.schema
        # the prompt and schema come from the flow file: template constants are redacted too
        shown: dict[str, Any] = self._wb._redact(pending)
        return shown

    @property
    def ended(self) -> bool:
        """True once completed, rejected, failed or blocked."""
        return self._row.status in ENDED

    @property
    def workbench(self) -> Workbench:
        """The workbench this run belongs to."""
        return self._wb

    def refresh(self) -> Run:
        """Re-read the run from the store (another kernel or the CLI may have moved it).

        Unlike :meth:`Workbench.get_run` this never runs a step: a run interrupted by a
        crash shows as ``interrupted`` until it is opened with ``get_run`` or retried.
        """
        self._row, self._ctx = self._wb._load(self.id)
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
        return self._decide(True, comment, by, allow_flow_change)

    def reject(
        self, comment: str | None = None, *, by: str | None = None, allow_flow_change: bool = False
    ) -> Run:
        """Reject the pending ``hitl`` step: the run ends as ``rejected`` or jumps to the
        step named by ``on_reject``."""
        return self._decide(False, comment, by, allow_flow_change)

    def _decide(
        self, approved: bool, comment: str | None, by: str | None, allow_flow_change: bool
    ) -> Run:
        who = by or self._wb.user
        return self._act(
            lambda ctx: self._wb.engine.decide(ctx, approved=approved, comment=comment, by=who),
            who,
            allow_flow_change,
        )

    def _act(
        self, action: Callable[[RunContext], None], by: str, allow_flow_change: bool | None
    ) -> Run:
        """Run an engine action on a fresh read of the run; on any error, show the stored
        state again (an action that failed, or lost a race, changed nothing there)."""
        try:
            ctx = self._ctx
            if ctx is None or not self._wb._current(ctx):
                ctx = self._wb._context(self.id, allow_flow_change=allow_flow_change, by=by)
            action(ctx)
        except BaseException:
            with suppress(Exception):
                self.refresh()
            raise
        self._row, self._ctx = ctx.run, ctx
        self._changed()
        return self

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
        who = by or self._wb.user
        payload = dict(data)
        return self._act(
            lambda ctx: self._wb.engine.submit(ctx, payload, by=who), who, allow_flow_change
        )

    def retry(self, *, by: str | None = None, allow_flow_change: bool = False) -> Run:
        """Run an interrupted or failed step again (a new attempt, same idempotency key).

        Raises:
            NotWaiting: the run is not interrupted or failed.
            AlreadyResumed: another process retried, skipped or aborted it first.
        """
        who = by or self._wb.user
        return self._act(lambda ctx: self._wb.engine.retry(ctx, by=who), who, allow_flow_change)

    def skip(
        self, output: Any = None, *, by: str | None = None, allow_flow_change: bool = False
    ) -> Run:
        """Mark an interrupted or failed step done with ``output`` (what later steps see as
        ``steps.<id>.output``) without running it, and continue."""
        who = by or self._wb.user
        return self._act(
            lambda ctx: self._wb.engine.skip(ctx, output=output, by=who), who, allow_flow_change
        )

    def abort(self, reason: str | None = None, *, by: str | None = None) -> Run:
        """End the run as ``failed`` with ``reason`` (any flow change is irrelevant here)."""
        who = by or self._wb.user
        return self._act(
            lambda ctx: self._wb.engine.abort(ctx, reason=reason, by=who), who, None
        )

    # ------------------------------------------------------------------ data

    def trace(self) -> pd.DataFrame:
        """This run's trace events (columns in the README)."""
        from master_sdk.memory.sqlite import TRACE_REDACTED

        return self._wb._frame(self._wb.store.trace_frame(run_id=self.id), redacted=TRACE_REDACTED)

    def steps(self) -> pd.DataFrame:
        """One row per step reached: status, attempt, timing, output."""
        return self._wb._frame(self._wb.store.steps_frame(self.id))

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
                    "attempted": violation.get("value") if blocked else None,
                }
            )
        frame = pd.DataFrame(rows)
        for column in ("used", "limit", "remaining", "percent"):
            frame[column] = frame[column].astype("float64")
        frame["budget"] = pd.Categorical(frame["budget"], categories=list(frame["budget"]))
        frame["status"] = pd.Categorical(frame["status"], categories=["ok", "blocked"])
        # the attempted value can be anything a run tried (a model name an agent built)
        return self._wb._frame(frame)

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
        interrupted (``retry_button``, ``skip_button``, ``abort_button``). The same object
        on every call while the run stays at the same pause; clicking it continues the run.

        Raises:
            NotWaiting: the run needs no form (running or ended).

        Example:
            >>> form = run.form()
            >>> form.fields["audience"].value = "the board"
            >>> form.submit_button.click()
        """
        form = self.view().form()
        if form is None:
            raise NotWaiting(
                f"run {self.id} is {self.status}: only a run waiting for approval or input, "
                "or an interrupted one, has a form",
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
        return f"Run(id={self.id!r}, ref={self.ref!r}, status={self.status!r})"


def _widgets_usable() -> bool:
    """Whether a widget can be shown: inside a Jupyter kernel with ipywidgets installed."""
    import sys
    from importlib.util import find_spec

    return "ipykernel" in sys.modules and find_spec("ipywidgets") is not None


class FlowView:
    """A compiled flow, for display and inspection."""

    def __init__(self, flow: CompiledFlow) -> None:
        self._flow = flow

    @property
    def ref(self) -> str:
        """``product/flow``."""
        return self._flow.ref

    @property
    def steps(self) -> list[dict[str, Any]]:
        """The steps as data: id, type, target, guard, on_reject."""
        out = []
        for step in self._flow.steps:
            out.append(
                {
                    "id": step.id,
                    "type": step.type,
                    "name": step.name,
                    "when": step.spec.when,
                    "on_reject": getattr(step.spec, "on_reject", None),
                }
            )
        return out

    def mermaid(self) -> str:
        """The flow as Mermaid ``flowchart`` text: steps, ``when:`` guards, reject branches."""
        from master_sdk.notebook.flowchart import mermaid

        return mermaid(self.steps)

    def svg(self) -> str:
        """The flow as a standalone SVG document (no JavaScript needed to show it)."""
        from master_sdk.notebook.flowchart import svg

        return svg(self.steps)

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        from master_sdk.notebook.flowchart import mermaid_markdown

        return {"text/plain": repr(self), "text/markdown": mermaid_markdown(self.steps)}

    def __repr__(self) -> str:
        return f"FlowView({self.ref!r}, steps={[s['id'] for s in self.steps]})"
