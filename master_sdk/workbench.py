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

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from master_sdk.errors import FlowError, InputInvalid, NotFound
from master_sdk.tracing.events import ENDED

if TYPE_CHECKING:
    import pandas as pd

    from master_sdk.config.settings import Settings
    from master_sdk.memory.records import RunRow
    from master_sdk.models.types import Provider
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

    def get_run(self, run_id: str) -> Run:
        """A stored run, in the same state as in the process that left it.

        A run that was executing a step in a process that has since died is marked
        ``interrupted`` here (choose :meth:`Run.retry`, :meth:`Run.skip` or :meth:`Run.abort`).
        """
        row, ctx = self._load(run_id)
        return Run(self, row, ctx)

    def _load(self, run_id: str) -> tuple[RunRow, RunContext | None]:
        row, steps = self.store.load(run_id)
        try:
            flow = self.catalog.flow(f"{row.product}/{row.flow}")
        except (FlowError, NotFound):
            return row, None
        ctx = self.engine.load(flow, row, steps)
        return ctx.run, ctx

    def _context(self, run_id: str, *, allow_flow_change: bool) -> RunContext:
        from master_sdk.orchestrator.engine import check_flow_pin

        row, steps = self.store.load(run_id)
        flow = self.catalog.flow(f"{row.product}/{row.flow}")
        ctx = self.engine.load(flow, row, steps)
        if ctx.run.status not in ENDED and (
            row.flow_hash != flow.flow_hash or row.product_version != flow.product_version
        ):
            check_flow_pin(
                ctx,
                allow_change=allow_flow_change,
                previous_source=self.store.flow_source(row.flow_hash),
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
        return self._frame(
            self.store.trace_frame(
                run_id=run_id, product=product, flow=flow, status=status, since_us=since_us
            )
        )

    def approvals(self, *, product: str | None = None, flow: str | None = None) -> pd.DataFrame:
        """The approval audit: who decided what, when, with which comment."""
        return self._frame(self.store.approvals_frame(product=product, flow=flow))

    def _frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Every frame leaves redacted (the store redacts on write; this also covers data
        written before a secret was added to the secrets file)."""
        from master_sdk.governance.exports import redact_frame

        return redact_frame(frame, self._redact)

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
        self._view: Any = None

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

    def refresh(self) -> Run:
        """Re-read the run from the store (another kernel or the CLI may have moved it)."""
        self._row, self._ctx = self._wb._load(self.id)
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
        ctx = self._wb._context(self.id, allow_flow_change=allow_flow_change)
        try:
            self._wb.engine.decide(ctx, approved=approved, comment=comment, by=by or self._wb.user)
        finally:
            self._row, self._ctx = ctx.run, ctx
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
        ctx = self._wb._context(self.id, allow_flow_change=allow_flow_change)
        try:
            self._wb.engine.submit(ctx, dict(data), by=by or self._wb.user)
        except InputInvalid:
            raise
        finally:
            self._row, self._ctx = ctx.run, ctx
        return self

    def retry(self, *, by: str | None = None, allow_flow_change: bool = False) -> Run:
        """Run an interrupted or failed step again."""
        ctx = self._wb._context(self.id, allow_flow_change=allow_flow_change)
        try:
            self._wb.engine.retry(ctx, by=by or self._wb.user)
        finally:
            self._row, self._ctx = ctx.run, ctx
        return self

    def skip(
        self, output: Any = None, *, by: str | None = None, allow_flow_change: bool = False
    ) -> Run:
        """Mark an interrupted or failed step done with ``output`` and continue."""
        ctx = self._wb._context(self.id, allow_flow_change=allow_flow_change)
        try:
            self._wb.engine.skip(ctx, output=output, by=by or self._wb.user)
        finally:
            self._row, self._ctx = ctx.run, ctx
        return self

    def abort(self, reason: str | None = None, *, by: str | None = None) -> Run:
        """End the run as ``failed`` with ``reason``."""
        ctx = self._wb._context(self.id, allow_flow_change=True)
        try:
            self._wb.engine.abort(ctx, reason=reason, by=by or self._wb.user)
        finally:
            self._row, self._ctx = ctx.run, ctx
        return self

    # ------------------------------------------------------------------ data

    def trace(self) -> pd.DataFrame:
        """This run's trace events (columns in the README)."""
        return self._wb._frame(self._wb.store.trace_frame(run_id=self.id))

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
        frame["status"] = pd.Categorical(frame["status"], categories=["ok", "blocked"])
        return frame

    # ------------------------------------------------------------------ display

    def __repr__(self) -> str:
        return f"Run(id={self.id!r}, ref={self.ref!r}, status={self.status!r})"


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

    def __repr__(self) -> str:
        return f"FlowView({self.ref!r}, steps={[s['id'] for s in self.steps]})"
