"""The one entry object: :class:`Workbench` wires config, store, products and router.

A :class:`~master_sdk.run.Run` (in :mod:`master_sdk.run`) is a handle on one stored run;
it uses only this class's public surface.

Thread safety: one workbench may be used from many threads at once (batch runners, widget
callbacks, the user's own threads). The engine keeps no state between runs, the product
catalog and the router load lazily under locks, and the store serialises its writes.

Example:
    >>> import master_sdk as ms
    >>> wb = ms.Workbench.open()                                    # doctest: +SKIP
    >>> run = wb.run("hello_world/greet", inputs={"text": "Hello"})  # doctest: +SKIP
    >>> run.status                                                   # doctest: +SKIP
    'waiting_approval'
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Collection, Mapping, Sequence
from contextlib import suppress
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

from master_sdk.contracts.status import ENDED, PAUSED, RunStatus
from master_sdk.errors import (
    AlreadyResumed,
    ConfigError,
    FlowError,
    MasterError,
    NotFound,
)
from master_sdk.governance.disclosure import redact_exception, redacting_errors
from master_sdk.run import Run

ACTIONS: tuple[str, ...] = (
    "approve",
    "reject",
    "submit",
    "retry",
    "skip",
    "abort",
    "proceed",
)
"""What :meth:`Workbench.resume` can do to a stored run."""

if TYPE_CHECKING:
    import pandas as pd

    from master_sdk.config.opening import SettingsSource
    from master_sdk.config.settings import Settings
    from master_sdk.experiments.answers import Answers
    from master_sdk.experiments.compare import Comparison
    from master_sdk.experiments.experiment import Experiment
    from master_sdk.memory.records import RunRow
    from master_sdk.memory.retention import PruneReport
    from master_sdk.memory.store import CommitHook, Reservation, Store
    from master_sdk.memory.transfer import TransferReport
    from master_sdk.memory.vector_memory import Collection as MemoryCollection
    from master_sdk.memory.vector_memory import VectorMemory
    from master_sdk.models.router import Router
    from master_sdk.models.types import Provider
    from master_sdk.orchestrator.context import RunContext
    from master_sdk.orchestrator.determinism import SeededRunIds, TestClock
    from master_sdk.orchestrator.engine import Engine
    from master_sdk.products.compiler import CompiledFlow
    from master_sdk.products.flow_cache import FlowCache
    from master_sdk.products.loader import ProductCatalog
    from master_sdk.tools.executor import ToolExecutor
    from master_sdk.tracing.otel.hook import TelemetryHook


@redacting_errors(lambda wb: wb._redact)  # every error raised leaves redacted
class Workbench:
    """Products, runs and their data for one project folder.

    Open it with :meth:`open`; it finds ``products/`` and ``configs/`` upward from the
    current directory, and keeps runs in ``storage/master.sqlite3``.
    """

    def __init__(
        self,
        settings: Settings | SettingsSource,
        *,
        providers: Mapping[str, Provider] | None = None,
        store: Store | None = None,
        hooks: Sequence[CommitHook] | None = None,
    ) -> None:
        from master_sdk.config.opening import SettingsSource
        from master_sdk.governance.scrubbing import build_redactor
        from master_sdk.memory.open import open_store
        from master_sdk.orchestrator.crashpoints import CrashPoints
        from master_sdk.tracing.logs import TraceLog

        # opening reads a few fields; the full settings are built when first needed
        source = settings if isinstance(settings, SettingsSource) else SettingsSource.of(settings)
        self._settings_source = source
        opening = source.opening
        self.root: Path = opening.root
        self.user: str = opening.user
        redactor = build_redactor(opening.redaction, opening.secret_values)
        self._redact = redactor.value
        log_file = opening.app.log_file
        self._log = TraceLog(
            level=opening.app.log_level,
            file=opening.root / log_file if log_file else None,
            scrub=self._redact,
        )
        self._telemetry = self._open_telemetry(source.full()) if opening.telemetry_enabled else None
        crash = CrashPoints(opening.app.crash_point)
        # store= (a Store object, which its owner closes), else app.store: a path,
        # sqlite:///path or memory://
        self._owns_store = store is None
        password = source.full().store_password if opening.has_store_password else None
        self.store: Store = open_store(
            store,
            opening.app,
            opening.root,
            scrub=self._redact,
            password=None if password is None else password.get_secret_value(),
        )
        if getattr(self.store, "role", None) is not None:
            self.user = str(self.store.role)  # type: ignore[attr-defined]  # identity: database
        # commit hooks: the trace log and crash points (tests) first, then the user's;
        # each observes every commit of the store once it is durable (see add_hook)
        self._hooks: list[CommitHook] = []
        # inboxes watching the store (Inbox.watch), stopped by close()
        self._inboxes: weakref.WeakSet[Any] = weakref.WeakSet()
        for hook in (
            self._log if self._log.enabled else None,
            crash if crash.armed else None,
            self._telemetry,
            *(hooks or ()),
        ):
            if hook is not None:
                self.add_hook(hook)
        # the router, product catalog and engine are built on first use: a command that
        # only reads the store (runs, pending, trace) never pays for them
        self._providers = providers
        self._crash = crash
        self._parts_lock = threading.Lock()
        self._router: Router | None = None
        self._catalog: ProductCatalog | None = None
        self._engine: Engine | None = None
        self._memory_parts: VectorMemory | None = None
        self._flow_cache: FlowCache | None = None  # see products/flow_cache.py
        if opening.replay_models:
            self.router  # noqa: B018  # built now: it reports a wrong replay model at opening
        self._mark_abandoned()

    def _mark_abandoned(self) -> None:
        """Mark runs left ``running`` by processes that no longer exist as ``interrupted``.

        One query when nothing was abandoned; never executes a step (an idempotent tool is
        retried when its run is opened with :meth:`get_run`). Best effort: a run this
        cannot mark now (store busy, flow broken) is marked when it is next loaded.
        """
        from master_sdk.orchestrator.ownership import executor_alive, process_identity

        here = process_identity()
        for run_id, owner in self.store.find_runs(status=RunStatus.RUNNING):
            if not executor_alive(owner, run_id, here=here):
                with suppress(MasterError):
                    self._read(run_id)

    # ------------------------------------------------------------------ parts built on use

    @property
    def settings(self) -> Settings:
        """The project's full, validated settings (built on first use: opening a
        workbench reads only the few it needs, see :mod:`master_sdk.config.opening`)."""
        return self._settings_source.full()

    @property
    def router(self) -> Router:
        """The model router (built on first use)."""
        if self._router is None:
            with self._parts_lock:
                if self._router is None:
                    settings = self.settings  # built before the router's models are
                    from master_sdk.models.router import Router

                    self._router = Router(
                        settings.models,
                        root=settings.root,
                        providers=self._providers,
                        scrub=self._redact,
                    )
        return self._router

    @property
    def catalog(self) -> ProductCatalog:
        """The products and their compiled flows (built on first use; loads lazily)."""
        if self._catalog is None:
            router = self.router
            with self._parts_lock:
                if self._catalog is None:
                    from master_sdk.orchestrator.templating import TemplateEngine
                    from master_sdk.products.loader import ProductCatalog

                    policy = self.settings.policy
                    self._catalog = ProductCatalog(
                        self.settings.products_path,
                        policy=policy,
                        templates=TemplateEngine(
                            max_rendered_chars=policy.max_rendered_chars,
                            max_render_ms=policy.max_render_ms,
                        ),
                        model_names=router.names,
                        load_timeout_s=self.settings.app.load_timeout_s,
                    )
        return self._catalog

    @property
    def _memory(self) -> VectorMemory:
        if self._memory_parts is None:
            router, catalog = self.router, self.catalog
            with self._parts_lock:
                if self._memory_parts is None:
                    from master_sdk.orchestrator.services import build_memory, vector_store_for

                    crash = self._crash.hit if self._crash.armed else None
                    self._memory_parts = build_memory(
                        vector_store_for(self.store, crash=crash),
                        router=router,
                        catalog=catalog,
                        redact=self._redact,
                        crash=crash,
                    )
        return self._memory_parts

    @property
    def engine(self) -> Engine:
        """The engine that runs steps (built on first use)."""
        if self._engine is None:
            with self._parts_lock:
                if self._engine is None:
                    from master_sdk.orchestrator.engine import Engine

                    clock, run_ids = (
                        _determinism(self.store)
                        if self._settings_source.opening.app.deterministic
                        else (None, None)
                    )
                    # the router and the tools are built when a step first needs them:
                    # resuming a run to its next pause needs neither
                    self._engine = Engine(
                        store=self.store,
                        router=lambda: self.router,
                        tools=self._tool_executor,
                        scrub=self._redact,
                        clock=clock,
                        run_ids=run_ids,
                    )
        return self._engine

    def _tool_executor(self) -> ToolExecutor:
        from master_sdk.orchestrator.services import StepServiceFactory
        from master_sdk.tools.executor import ToolExecutor

        router, memory = self.router, self._memory
        return ToolExecutor(services=StepServiceFactory(router=router, memory=memory))

    @classmethod
    def open(
        cls,
        root: str | Path | None = None,
        *,
        store: str | Path | Store | None = None,
        providers: Mapping[str, Provider] | None = None,
        hooks: Sequence[CommitHook] | None = None,
        telemetry: bool | Mapping[str, Any] | None = None,
        deterministic: bool | None = None,
    ) -> Workbench:
        """Open the workbench of a project folder.

        Args:
            root: the folder holding ``products/`` and ``configs/``; default: found upward
                from the current directory.
            store: where runs are kept instead of ``app.store``: a SQLite file path,
                ``sqlite:///relative/path``, ``sqlite:////absolute/path``, ``memory://``,
                or a Store object (see :mod:`master_sdk.memory.open`).
            providers: model providers by logical name, replacing configured ones (tests
                pass a scripted model here; see :mod:`master_sdk.testing`).
            hooks: commit hooks (see :meth:`add_hook`), in order.
            telemetry: OpenTelemetry export, over ``configs/telemetry.yaml``: ``True`` /
                ``False`` turns it on or off, a dict sets fields (``endpoint``,
                ``sample_ratio``, ``semconv``, ...; it turns export on unless it says
                ``enabled: False``). Needs ``pip install 'master-sdk[otel]'``.
            deterministic: run ids from a seeded sequence, timestamps and durations from a
                test clock, so a notebook shows the same values on every execution
                (default: the ``deterministic`` setting, ``MASTER_DETERMINISTIC``; on
                under ``master test``). Never for real work: the clock is not the time.
        """
        from master_sdk.config.loader import load_settings_source
        from master_sdk.memory.open import is_store

        try:
            if store is not None and is_store(store):
                given: Store | None = store  # type: ignore[assignment]  # checked by is_store
                source = load_settings_source(root, telemetry=telemetry)
            else:
                given = None
                named: str | Path | None = store  # type: ignore[assignment]  # not a Store
                source = load_settings_source(root, store=named, telemetry=telemetry)
        except ConfigError as exc:
            # no secrets are known yet: the detectors still hide keys and personal data
            from master_sdk.governance.redaction import Redactor

            raise redact_exception(exc, Redactor().value) from None
        if deterministic is not None:
            source = source.deterministic(deterministic)
        return cls(source, providers=providers, store=given, hooks=hooks)

    # ------------------------------------------------------------------ telemetry

    def _open_telemetry(self, settings: Settings) -> TelemetryHook | None:
        if not settings.telemetry.enabled:
            return None
        from master_sdk.tracing.otel.hook import open_telemetry

        return open_telemetry(settings.telemetry, scrub=self._redact)

    def telemetry_status(self) -> dict[str, Any]:
        """OpenTelemetry export counters: ``enabled``, ``endpoint``, ``exported``,
        ``queued``, ``dropped`` (``dropped_queue_full`` + ``dropped_export_failed``: spans
        lost because the collector was down, slow or refusing), ``dropped_commits``,
        ``pending_commits``, ``failed_requests``, ``last_error``, and the exporter
        process's state (``exporter``: running, closed or gone; ``exporter_pid``).
        ``{"enabled": False}`` when telemetry is off."""
        if self._telemetry is None:
            return {"enabled": False}
        return self._telemetry.status()

    def flush_telemetry(self, timeout_s: float | None = None) -> bool:
        """Send the spans waiting to be exported; wait at most ``timeout_s`` (default: the
        export timeout plus a second). True when none is left. Runs never wait for this."""
        return True if self._telemetry is None else self._telemetry.flush(timeout_s)

    def export_telemetry(
        self,
        endpoint: str | None = None,
        *,
        since: datetime | str | None = None,
        runs: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """Send runs already in the store as OpenTelemetry spans (the same spans a live
        export makes), whether or not telemetry is on.

        Args:
            endpoint: the OTLP/HTTP traces URL (default: ``configs/telemetry.yaml``).
            since: only runs with trace events at or after this time.
            runs: only these run ids.

        Returns:
            ``{"runs": ..., "spans": ..., "exported": ..., "failed": ...}``.

        Raises:
            ConfigError: the ``otel`` extra is missing.
        """
        from master_sdk.tracing.otel.past import export_runs

        return export_runs(self, endpoint=endpoint, since=since, runs=runs)

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

    def flows(self, product: str | None = None, *, isolate: bool = False) -> list[str]:
        """``product/flow`` references of every loadable flow (of one product if given).

        ``isolate=True``: import the products in a child process first (see
        :meth:`validate`).
        """
        if isolate:
            self.catalog.isolate(self.root, [product] if product else None)
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
        from master_sdk.governance.inputs import require_ref

        return FlowView(self.catalog.flow(require_ref(ref)), redact=self._redact)

    def validate(self, *, isolate: bool = False) -> list[FlowError]:
        """Load every product and flow; return every problem (empty when all is well).

        Args:
            isolate: first import every product in a child process, so that one that
                stalls in C code, ignores interrupts, calls ``os._exit`` or crashes the
                interpreter is reported by name instead of stopping this call (about half
                a second more; ``master validate`` and ``master flows`` use it).
        """
        if isolate:
            self.catalog.isolate(self.root)
        # a flow file may hold secrets or personal data: messages leave redacted
        return [redact_exception(e, self._redact) for e in self.catalog.validate()]

    def new_product(self, name: str) -> Path:
        """Create a working product ``name`` under ``products/``; return its folder.

        It has a manifest, a product policy, ``flows/draft.yaml`` (a tool, a user input and
        an agent on the ``default`` model), ``components.py`` and ``notebooks/draft.ipynb``
        (a starter regression notebook for ``master test``); it runs at once.

        Raises:
            FlowError: a bad name, or a folder of that name already exists.

        Example:
            >>> wb.new_product("notes")                                   # doctest: +SKIP
            >>> run = wb.run("notes/draft", inputs={"topic": "tea"})      # doctest: +SKIP
            >>> run.submit({"tone": "friendly"}).output                   # doctest: +SKIP
        """
        from master_sdk.products.scaffold import new_product

        self.catalog.products_dir.mkdir(parents=True, exist_ok=True)
        return new_product(self.catalog.products_dir, name)

    # ------------------------------------------------------------------ runs

    def run(
        self, ref: str, inputs: Mapping[str, Any] | None = None, *, by: str | None = None
    ) -> Run:
        """Start ``product/flow`` and run it until it pauses or ends.

        Raises:
            InputInvalid: the inputs fail the flow's ``inputs`` schema (nothing is stored).
            FlowError: the product or flow is broken.
        """
        from master_sdk.governance.identities import check_identity
        from master_sdk.governance.inputs import admit_input, require_mapping, require_ref

        flow = self.catalog.flow(require_ref(ref))
        data = require_mapping({} if inputs is None else inputs, what=f"inputs for {ref}")
        self._actor(check_identity(by or self.user, redact=self._redact))
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

    @overload
    def fork(
        self,
        runs: Sequence[str | Run],
        *,
        at: str,
        name: str | None = None,
        inputs: Mapping[str, Any] | None = None,
        model: str | None = None,
        by: str | None = None,
    ) -> list[Run]: ...

    @overload
    def fork(
        self,
        runs: Experiment,
        *,
        at: str,
        name: str | None = None,
        inputs: Mapping[str, Any] | None = None,
        model: str | None = None,
        by: str | None = None,
        scorers: Sequence[Callable[..., Any]] = (),
        answers: Any = None,
    ) -> Experiment: ...

    def fork(
        self,
        runs: Sequence[str | Run] | Experiment,
        *,
        at: str,
        name: str | None = None,
        inputs: Mapping[str, Any] | None = None,
        model: str | None = None,
        by: str | None = None,
        scorers: Sequence[Callable[..., Any]] = (),
        answers: Any = None,
    ) -> list[Run] | Experiment:
        """Fork many runs at step ``at`` (see :meth:`Run.fork`).

        Every run is checked before any is forked: one whose upstream no longer fits the
        flow refuses the whole batch (the error names the run, step and field) and nothing
        is written.

        Args:
            runs: run ids or :class:`Run` objects — the forks are returned in that order,
                ``name`` recorded in each one's ``run_started`` event (``attrs.fork``) —;
                or an :class:`~master_sdk.experiments.experiment.Experiment`: every case's
                run is forked into a new experiment called ``name`` with the same case keys
                (``wb.compare(exp, new)`` pairs them), scored with ``scorers`` and its human
                steps answered from ``answers`` as in :meth:`evaluate`.
            at, inputs, model, by: as for :meth:`Run.fork`.

        Example:
            >>> v3 = wb.fork(wb.experiment("prompt-v2"), at="summary", name="v3")  # doctest: +SKIP
            >>> wb.compare("prompt-v2", "v3")                                       # doctest: +SKIP
        """
        from master_sdk.experiments.experiment import Experiment
        from master_sdk.forks import fork_many

        if isinstance(runs, Experiment):
            from master_sdk.forks.batch import fork_experiment

            if name is None:
                raise MasterError("forking an experiment needs name= for the new experiment")
            return fork_experiment(
                self,
                runs.name,
                at,
                name=name,
                inputs=inputs,
                model=model,
                by=by,
                scorers=scorers,
                answers=answers,
            )
        ids = [r if isinstance(r, str) else r.id for r in runs]
        return fork_many(self, ids, at, name=name, inputs=inputs, model=model, by=by)

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
        row, ctx = self._read(run_id)
        if recover and ctx is not None and row.status == RunStatus.INTERRUPTED:
            try:
                self.engine.recover(ctx)
            except AlreadyResumed:
                row, ctx = self._read(run_id)  # another process recovered it first
            else:
                row = ctx.run
        return Run(self, row, ctx)

    def resume(
        self,
        run_id: str,
        action: str,
        *,
        by: str | None = None,
        allow_flow_change: bool | None = False,
        context: RunContext | None = None,
        **arguments: Any,
    ) -> RunContext:
        """Act on a stored run and continue it until it pauses or ends: what every
        :class:`~master_sdk.run.Run` action calls (``run.approve(...)`` is
        ``wb.resume(run.id, "approve", ...)``).

        Args:
            run_id: the run.
            action: one of :data:`ACTIONS` — ``approve`` / ``reject`` (``comment``),
                ``submit`` (``data``), ``retry``, ``skip`` (``output``), ``abort``
                (``reason``), ``proceed`` (continue a decided run). A decision is
                committed on its own; ``proceed=False`` leaves the run ``decided`` for
                any executor to continue (``wb.work()``, ``master work``). Team rules
                are checked first (:class:`~master_sdk.review.rules.DecisionRefused`).
            by: who acts (default :attr:`user`).
            allow_flow_change: resume on a flow changed since the run started (recorded in
                the trace); ``None`` skips the flow pin check (``abort``).
            context: the run's context as a handle last saw it; used without reading the
                store again when it is a pause on the current flow (a run moved meanwhile
                makes the action's compare-and-set fail: :class:`AlreadyResumed`).

        Returns:
            The run's context after the action (``.run`` is the stored run record).

        Raises:
            NotWaiting, AlreadyResumed, FlowChanged, InputInvalid, NotFound: see the
            :class:`~master_sdk.run.Run` actions.
        """
        if action not in ACTIONS:
            raise NotFound(f"no action '{action}'; choose one of {', '.join(ACTIONS)}")
        from master_sdk.governance.identities import check_identity
        from master_sdk.governance.inputs import require_mapping, require_text

        who = self._actor(check_identity(by or self.user, redact=self._redact, run_id=run_id))
        from master_sdk.products.flow_cache import max_input_bytes

        limit = max_input_bytes(self)
        for field in ("comment", "reason"):
            if field in arguments:
                arguments[field] = require_text(
                    arguments[field], field=field, limit=limit, run_id=run_id
                )
        if action == "submit":
            arguments["data"] = require_mapping(
                arguments.get("data"), what="user input", run_id=run_id
            )
        if action == "abort":
            allow_flow_change = None
        ctx = context
        if ctx is None or not self._current(ctx):
            ctx = self._context(run_id, allow_flow_change=allow_flow_change, by=who)
        engine = self.engine
        proceed = bool(arguments.get("proceed", True))
        if action in ("approve", "reject", "submit"):
            from master_sdk.review.rules import guard_decision

            guard_decision(
                engine, ctx, action=action, by=who
            )  # team rules (policy approvers, four_eyes)
        if action in ("approve", "reject"):
            engine.decide(
                ctx,
                approved=action == "approve",
                comment=arguments.get("comment"),
                by=who,
                proceed=proceed,
            )
        elif action == "submit":
            engine.submit(ctx, arguments.get("data") or {}, by=who, proceed=proceed)
        elif action == "proceed":
            engine.proceed(ctx)
        elif action == "retry":
            engine.retry(ctx, by=who)
        elif action == "skip":
            engine.skip(ctx, output=arguments.get("output"), by=who)
        else:
            engine.abort(ctx, reason=arguments.get("reason"), by=who)
        return ctx

    def _read(self, run_id: str) -> tuple[RunRow, RunContext | None]:
        row, steps = self.store.load(run_id)
        try:
            flow = self._flow_of(row)
        except (FlowError, NotFound):
            return row, None
        _adopt_code_pin(row, flow)
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
            run.status in PAUSED
            and run.flow_hash == flow.flow_hash
            and run.product_version == flow.product_version
            and self._flow_current(run, flow)
        )

    def _flow_of(self, row: RunRow) -> CompiledFlow:
        """A stored run's flow as its files are now (from the flow cache when it holds it:
        see :mod:`master_sdk.products.flow_cache`)."""
        from master_sdk.products.flow_cache import flow_of

        return flow_of(self, row)

    def _flow_current(self, row: RunRow, flow: CompiledFlow) -> bool:
        from master_sdk.products.flow_cache import is_current

        return is_current(self, row, flow)

    def _context(
        self, run_id: str, *, allow_flow_change: bool | None, by: str | None
    ) -> RunContext:
        """The run, loaded to act on; ``allow_flow_change=None`` skips the flow pin."""
        from master_sdk.orchestrator.pinning import check_flow_pin

        row, steps = self.store.load(run_id)
        flow = self._flow_of(row)
        _adopt_code_pin(row, flow)
        ctx = self.engine.load(flow, row, steps)
        run = ctx.run
        if (
            allow_flow_change is not None
            and run.status not in ENDED
            and (run.flow_hash != flow.flow_hash or run.product_version != flow.product_version)
        ):
            check_flow_pin(
                ctx,
                allow_change=allow_flow_change,
                previous_source=self.store.flow_source(run.flow_hash),
                by=by,
            )
        return ctx

    def redact(self, value: Any) -> Any:
        """``value`` as this workbench shows it: PII and secrets (see the policy's
        ``redaction`` and the secrets file) replaced by typed placeholders such as
        ``<EMAIL>``; containers are walked, other values returned as they are."""
        return self._redact(value)

    # ------------------------------------------------------------------ data

    def runs(
        self, *, product: str | None = None, flow: str | None = None, status: str | None = None
    ) -> pd.DataFrame:
        """The run list as a DataFrame, newest first (columns in the README)."""
        from master_sdk.memory import frames

        return self._frame(frames.runs(self.store, product=product, flow=flow, status=status))

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
        from master_sdk.governance.inputs import since_us as to_us
        from master_sdk.memory import frames
        from master_sdk.memory.derived import TRACE_REDACTED

        # attrs are redacted as the frame is built, once per distinct value
        return self._frame(
            frames.traces(
                self.store,
                run_id=run_id,
                product=product,
                flow=flow,
                status=status,
                since_us=to_us(since),
                redact=self._redact,
            ),
            redacted=TRACE_REDACTED,
        )

    def steps(
        self,
        run_id: str | None = None,
        *,
        product: str | None = None,
        flow: str | None = None,
        status: str | None = None,
        since: datetime | str | None = None,
        attempts: bool = False,
    ) -> pd.DataFrame:
        """Steps as a DataFrame: one row per step a run reached (status, attempt, timing,
        output; redacted), of one run or across runs (columns in ``docs/dataframes.md``).

        Args:
            run_id: one run (flow order); default: every run kept by the filters, oldest
                run first.
            product, flow, status: keep runs with these values (``status``: the run's).
            since: keep steps that started at or after this time (aware datetime or ISO
                string; naive means UTC).
            attempts: one row per attempt of each step (retries, recoveries).

        Example:
            >>> steps = wb.steps(product="hello_world", since="2026-12-01")  # doctest: +SKIP
            >>> steps.groupby("step_id")["duration_ms"].median()             # doctest: +SKIP
        """
        from master_sdk.governance.inputs import since_us as to_us
        from master_sdk.memory import frames

        if run_id is not None:
            return self._frame(frames.steps(self.store, run_id, attempts=attempts))
        return self._frame(
            frames.steps_across(
                self.store,
                product=product,
                flow=flow,
                status=status,
                since_us=to_us(since),
                attempts=attempts,
            )
        )

    def approvals(self, *, product: str | None = None, flow: str | None = None) -> pd.DataFrame:
        """The approval audit: who decided what, when, with which comment."""
        from master_sdk.memory import frames

        return self._frame(frames.approvals(self.store, product=product, flow=flow))

    # ------------------------------------------------------------------ reviewing

    def pending(
        self,
        *,
        product: str | None = None,
        flow: str | None = None,
        step: str | None = None,
        kind: str | None = None,
        experiment: str | None = None,
        older_than: timedelta | float | None = None,
    ) -> pd.DataFrame:
        """Every paused run, one row each, oldest wait first: what it waits for (step,
        ``kind`` approval or input, prompt, the ``show:`` value redacted and truncated),
        who started it, since when, its experiment and who reserved it (columns in
        ``docs/dataframes.md``).

        Example:
            >>> wb.pending(kind="approval", older_than=3600)   # doctest: +SKIP
        """
        from master_sdk.review.pending import pending_frame, statuses_for

        rows = self.store.pending_runs(statuses=statuses_for(kind), product=product, flow=flow)
        frame = pending_frame(
            rows,
            prompt=self._prompt,
            redact=self._redact,
            step=step,
            experiment=experiment,
            older_than=older_than,
        )
        return self._frame(frame, redacted=("show",))

    def _prompt(self, product: str, flow: str, step: str) -> str:
        """A paused step's prompt from its flow file ('' when the flow no longer loads)."""
        try:
            compiled = self.catalog.flow(f"{product}/{flow}")
        except (FlowError, NotFound):
            return ""
        for candidate in compiled.steps:
            if candidate.id == step:
                return str(getattr(candidate.spec, "prompt", "") or "")
        return ""

    def inbox(self, **filters: Any) -> Any:
        """A widget over :meth:`pending` (same filters): sort, page, select many, approve
        or reject the selection with one comment, open one item to see its form;
        ``every=`` seconds makes it look at the store by itself (stopped when this
        workbench closes). See :class:`~master_sdk.notebook.inbox.Inbox`."""
        from master_sdk.notebook.inbox import Inbox

        return Inbox(self, **filters)

    def decide(
        self,
        run_ids: Sequence[str],
        action: str,
        *,
        comment: str | None = None,
        data: Mapping[str, Any] | None = None,
        by: str | None = None,
        proceed: bool = True,
    ) -> pd.DataFrame:
        """Approve, reject or submit many paused runs with one comment (or one input).

        Every decision is committed first, each on its own (one refused by a team rule,
        or taken by someone else, does not stop the others); then, with ``proceed``, each
        decided run is continued here. With ``proceed=False`` the runs stay ``decided``
        for :meth:`work` or ``master work``. Returns one row per run: ``run_id``,
        ``outcome`` (decided, continued, taken, refused, invalid, not_waiting, failed),
        ``status``, ``error``.
        """
        from master_sdk.review.decisions import continue_runs, decide_runs, outcomes_frame

        decided = decide_runs(self, run_ids, action, comment=comment, data=data, by=by)
        if proceed:
            todo = [
                o.run_id
                for o in decided
                if o.outcome == "decided" and o.status == RunStatus.DECIDED
            ]
            continued = {o.run_id: o for o in continue_runs(self, todo)}
            decided = [continued.get(o.run_id, o) for o in decided]
        return outcomes_frame(decided)

    def work(
        self,
        run_ids: Sequence[str] | None = None,
        *,
        limit: int | None = None,
        on_progress: Callable[[Any, int, int], None] | None = None,
    ) -> pd.DataFrame:
        """Continue every decided run (or those of ``run_ids``; at most ``limit``), each
        exactly once whichever process also works on them: runs decided with
        ``proceed=False``, in an inbox, or by a kernel that died before continuing them.
        ``on_progress(outcome, done, total)`` is called after each run (``outcome`` has
        ``run_id``, ``outcome``, ``status``, ``error``). One row per run, as :meth:`decide`
        (``taken``: another executor continued it first)."""
        from master_sdk.review.decisions import continue_runs, outcomes_frame
        from master_sdk.review.work import decided_runs

        ids = decided_runs(self, limit=limit) if run_ids is None else list(run_ids)[:limit]
        return outcomes_frame(continue_runs(self, ids, on_progress=on_progress))

    def reserve(
        self, run_id: str, minutes: float | None = None, *, by: str | None = None
    ) -> Reservation:
        """Reserve a paused run for ``minutes`` (default and ceiling: the policy's
        ``max_reservation_minutes``) so no other reviewer decides it meanwhile;
        ``minutes=0`` releases it. An expired reservation is free again.

        Raises:
            DecisionRefused: someone else holds it (rule ``reservation``), or ``minutes``
                is above the policy's ``max_reservation_minutes``.
            NotWaiting: the run is not paused.
        """
        from master_sdk.review.reservations import reserve

        return reserve(self, run_id, minutes, by=self._actor(by or self.user))

    def claim(
        self,
        ref: str,
        n: int = 1,
        minutes: float | None = None,
        *,
        by: str | None = None,
        kind: str | None = None,
    ) -> list[Reservation]:
        """Reserve the next ``n`` paused runs of flow ``ref`` (``"product/flow"``) that
        nobody holds, oldest first, for ``minutes`` (default and ceiling: the policy's
        ``max_reservation_minutes``); ``kind``: ``"approval"`` or ``"input"`` only.
        Reviewers claiming at once, in any process, never get the same run.

        Example:
            >>> mine = wb.claim("hello_world/greet", 5)  # doctest: +SKIP
            >>> [r.run_id for r in mine]  # doctest: +SKIP
        """
        from master_sdk.review.reservations import claim

        return claim(self, ref, n, minutes, by=self._actor(by or self.user), kind=kind)

    def prune_store(
        self,
        older_than: str,
        *,
        statuses: Sequence[str] | None = None,
        dry_run: bool = False,
    ) -> PruneReport:
        """Remove runs last updated longer ago than ``older_than`` (``"90d"``, ``"12h"``,
        ``"2w"``), with all their rows, in one transaction. By default only ended runs go
        (completed, rejected, blocked, aborted); a paused, running, failed or interrupted
        run only when its status is in ``statuses``. Runs an experiment holds are kept.
        ``dry_run``: count what would go and remove nothing.

        Example:
            >>> wb.prune_store("90d", dry_run=True).summary()  # doctest: +SKIP
            'would remove 12 run(s) (12 completed) with ...'
        """
        from master_sdk.memory.retention import parse_duration, prune_statuses
        from master_sdk.tracing.events import now_us

        cutoff = now_us() - parse_duration(older_than) * 1_000_000
        return self.store.prune(
            before_us=cutoff, statuses=prune_statuses(statuses), dry_run=dry_run
        )

    def _actor(self, who: str) -> str:
        """``who``, unless the store names the actor (``identity: database``) and ``who``
        is someone else: then refused."""
        role: str | None = getattr(self.store, "role", None)
        if role is None or who == role:
            return who
        from master_sdk.errors import DecisionRefused

        raise DecisionRefused(
            "identity",
            limit=role,
            value=who,
            message=f"{who} may not act here: this store records the database role {role} as "
            "the actor (identity: database in configs/app.yaml); sign in as the role you "
            "act as",
        )

    def _frame(self, frame: pd.DataFrame, *, redacted: Collection[str] = ()) -> pd.DataFrame:
        """Every frame leaves redacted (the store redacts on write; this also covers data
        written before a secret was added to the secrets file). ``redacted``: columns the
        frame redacted with this redactor while it was built (skipped here)."""
        from master_sdk.governance.exports import redact_frame

        return redact_frame(frame, self._redact, redacted=redacted)

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
        collections: bool | Sequence[str] | None = None,
    ) -> TransferReport:
        """Write runs to one file a colleague can import.

        ``*.sqlite3`` is a new standalone SQLite store holding only those runs; ``*.jsonl`` is
        JSON Lines, one run per line with every attempt of its steps, its trace, approvals
        and inputs. Both are read from one consistent snapshot and redacted on the way out.

        Args:
            path: the file to write (refused if it exists, unless ``overwrite``).
            runs: run ids to export (default: every run).
            format: ``sqlite`` or ``jsonl`` (default: from the suffix).
            overwrite: replace an existing file.
            collections: vector collections to carry (``True``: all, or their
                ``product/collection`` names); default: all when every run is exported,
                none when ``runs`` chooses some (see :mod:`master_sdk.memory.vector_transfer`).

        Example:
            >>> wb.export_store("shared/review.jsonl", runs=[run.id])  # doctest: +SKIP
        """
        from dataclasses import replace

        from master_sdk.memory.transfer import export_store
        from master_sdk.memory.vector_transfer import export_collections

        if collections is None:
            collections = runs is None
        names = None if collections is True else list(collections or [])
        carried: list[str] = []

        def add_collections(temp: Path, fmt: str) -> None:
            if collections is not False and names != []:
                carried.extend(
                    export_collections(
                        self._memory.store, temp, fmt, names=names, redact=self._redact
                    )
                )

        report = export_store(
            self.store,
            Path(path),
            run_ids=runs,
            fmt=format,
            overwrite=overwrite,
            redact=self._redact,
            extra=add_collections,
        )
        return replace(report, collections=tuple(carried))

    def copy_store(self, target: str | Path | Store) -> TransferReport:
        """Copy this store's runs into another store (a SQLite path, ``memory://``,
        ``postgresql://...`` or a Store), opened with this project's settings, redacted on
        the way. Runs the target already holds are skipped, so copying again is safe.

        Example:
            >>> wb.copy_store("postgresql://ana@db.example:5432/master")  # doctest: +SKIP
        """
        from master_sdk.memory.open import is_store, open_store
        from master_sdk.memory.transfer import copy_store

        password = self.settings.store_password
        other = open_store(
            target,
            self.settings.app,
            self.root,
            scrub=self._redact,
            password=None if password is None else password.get_secret_value(),
        )
        try:
            return copy_store(self.store, other, redact=self._redact)
        finally:
            if not is_store(target):
                other.close()

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
        ``interrupted`` here. Vector collections in the file are merged after the runs
        (entries whose id is here already are kept as they are); one that holds another
        model or size here, or would pass its ``max_items``, refuses the whole import
        before anything is written.
        """
        from dataclasses import replace

        from master_sdk.memory.transfer import file_format, import_store
        from master_sdk.memory.vector_transfer import (
            import_collections,
            plan_import,
            read_collections,
        )

        source = Path(path)
        # collections are checked first: a refused one leaves the runs unimported too
        found = read_collections(source, file_format(source, format)) if source.is_file() else []
        plans = plan_import(
            self._memory.store, found, source=source, max_items=self._declared_max_items
        )
        report = import_store(
            self.store, source, fmt=format, on_duplicate=on_duplicate, scrub=self._redact
        )
        self._mark_abandoned()  # a run imported mid-step has no owner here
        if not plans:
            return report
        names, _ = import_collections(self._memory.store, plans, redact=self._redact)
        return replace(report, collections=tuple(names))

    def _declared_max_items(self, full: str) -> int | None:
        product, _, name = full.partition("/")
        try:
            return self._memory.declaration(product, name).spec.max_items
        except MasterError:
            return None  # not declared here: kept, and listed by wb.collections()

    # ------------------------------------------------------------------ experiments

    def evaluate(
        self,
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
        """Run ``product/flow`` over a table of cases, score each one, store it all.

        Every case is an ordinary durable run (same governance, trace and budgets) tagged
        with the experiment and its case key (the ``case_key`` or ``id`` column, else a
        hash of the row). Columns named by the flow's ``inputs`` schema are the run's
        inputs; the others stay with the case for scorers. An invalid row is reported with
        every failing field (status ``invalid``) and the others run.

        Args:
            ref: ``product/flow``.
            cases: a DataFrame or a list of dicts, one per case.
            name: the experiment's name, unique per store.
            scorers: ``f(case, output) -> number | bool | dict`` each (see ``ms.scorers``).
            answers: scripted human steps: ``{step_id: "approve" | "reject" | {data}}`` or
                ``f(case, step) -> decision``; a step with no answer leaves its run paused.
            models: logical model overrides for this experiment (``{"default": "gpt"}``);
                allow-lists apply.
            concurrency: cases in flight at most (and the ceiling of the model-call window,
                which halves on rate limits and timeouts and grows back).
            max_cost_usd: the experiment's cost cap, checked before every model call; once
                reached no new case starts and the experiment ends ``blocked``.
            backend: ``"threads"`` (in this kernel) or ``"ray"``: cases run on a Ray
                cluster's workers against this store (PostgreSQL, or SQLite on a cluster of
                this machine), each case exactly once (``pip install 'master-sdk[ray]'``;
                see ``master_sdk/experiments/ray_backend.py``).
            wait: False returns at once and runs in the background (``exp.wait()``,
                ``exp.cancel()``).
            progress: show live progress (in place in Jupyter, on stderr elsewhere).
            ray_address: ``backend="ray"``: the cluster (None: the Ray this process is
                connected to, else a new local one).
            workers: ``backend="ray"``: worker processes (None: one per CPU of the cluster).

        Example:
            >>> exp = wb.evaluate("triage/classify", cases_df, name="prompt-v2",  # doctest: +SKIP
            ...     scorers=[ms.scorers.exact("label", expected="expected_label")])
        """
        from master_sdk.experiments.evaluate import evaluate

        return evaluate(
            self,
            ref,
            cases,
            name=name,
            scorers=scorers,
            answers=answers,
            models=models,
            concurrency=concurrency,
            max_cost_usd=max_cost_usd,
            backend=backend,
            wait=wait,
            progress=progress,
            ray_address=ray_address,
            workers=workers,
        )

    def experiments(self) -> pd.DataFrame:
        """Stored experiments, newest first: ``name, ref, status, cases, created_at,
        updated_at, created_by, flow_hash, product_version, concurrency, max_cost_usd,
        models, error``."""
        from master_sdk.experiments.listing import experiments_frame

        return self._frame(experiments_frame(self))

    def experiment(self, name: str) -> Experiment:
        """A stored experiment by name (after a kernel restart too); raises NotFound."""
        from master_sdk.experiments.experiment import Experiment

        self.store.get_experiment(name)
        return Experiment(self, name)

    def compare(
        self, a: str | Experiment, b: str | Experiment, *, on: str | None = None
    ) -> Comparison:
        """Pair two experiments' cases (by case key, or by the case column ``on``):
        per-case deltas of every score, cost and latency, which outputs changed, and a
        summary with paired bootstrap CIs and win/tie/loss counts."""
        from master_sdk.experiments.compare import compare

        return compare(self, a, b, on=on)

    # ------------------------------------------------------------------ commit hooks

    def add_hook(self, hook: CommitHook) -> None:
        """Observe every commit of this workbench's store from now on.

        A hook is any object with ``before_commit(commit)`` and ``after_commit(commit)``
        (:class:`~master_sdk.memory.store.CommitHook`); ``commit`` is a
        :class:`~master_sdk.memory.store.Commit`: the run record, its ``changes`` (step
        attempts, ``events`` — typed :class:`~master_sdk.memory.store.TraceEvent` with
        names —, approvals, inputs), the commit's ``label`` and whether it is ``sync``.
        ``before_commit`` runs inside the transaction just before it is made durable
        (raising aborts the commit: nothing is written); ``after_commit`` runs once it is
        durable, in the committing thread — keep it short, hand slow work to a queue. An
        exception from ``after_commit`` is logged and never fails the run. Values are
        redacted only in what the store writes: redact what a hook sends elsewhere with
        :meth:`redact`. Telemetry, progress bars and the trace log are hooks.

        Hooks are called for every commit of the store, whichever workbench made it: a
        :class:`Store` given to several workbenches calls the hooks of all of them.
        :meth:`close` removes this workbench's hooks.

        Example:
            >>> class Progress:
            ...     def before_commit(self, commit): pass
            ...     def after_commit(self, commit):
            ...         print(commit.run.run_id, commit.run.status, len(commit.events))
            >>> wb.add_hook(Progress())  # doctest: +SKIP
        """
        self._hooks.append(hook)
        self.store.hooks.append(hook)

    @property
    def hooks(self) -> list[CommitHook]:
        """The commit hooks this workbench added, in order (a copy)."""
        return list(self._hooks)

    # ------------------------------------------------------------------ lifetime

    # ------------------------------------------------------------------ vector memory

    def memory(self, ref: str) -> MemoryCollection:
        """A product's vector memory collection, ``"product/collection"``.

        ``.search(query, k=5, where=None)`` returns hits (``.frame()`` for a DataFrame),
        ``.frame()`` every entry, ``.add(texts, metadata=, ids=)``, ``.delete(ids)``,
        ``.count()``. Notebook calls embed through the router under the product's policy
        (allow-lists, redaction) but belong to no run, so they are not traced.

        Raises:
            NotFound: ``ref`` is not ``product/collection``.
            CollectionError: the product declares no such collection.
            PolicyViolation: the product's ``allowed_collections`` does not list it.
        """
        product, sep, name = ref.partition("/")
        if not sep or not product or not name or "/" in name:
            raise NotFound(f"'{ref}' is not a collection reference; write 'product/collection'")
        return self._memory.collection(product, name)

    def collections(self) -> pd.DataFrame:
        """Every vector collection the store holds or a product declares, one row each:
        ``collection, product, name, entries, model, dimensions, declared_model, stale,
        version, max_items``. ``stale`` is True when the stored vectors come from another
        model than the declaration now names (re-embed with ``wb.memory(ref).reembed()``).
        """
        from master_sdk.memory.collections_frame import collections_frame
        from master_sdk.orchestrator.services import resolve_collection

        declared: dict[str, list[str]] = {}
        for product in self.products():
            try:
                declared[product] = list(self.catalog.product(product).config.collections)
            except MasterError:
                continue  # a broken product declares nothing here; `master validate` says why
        return collections_frame(
            self._memory.collections(),
            lambda product, name: resolve_collection(self.router, self.catalog, product, name),
            declared,
        )

    def close(self) -> None:
        """Close the store connection (unless the store was given to :meth:`open`), the
        trace log and the model providers' connections."""
        for inbox in list(self._inboxes):
            inbox.stop()
        if self._engine is not None:
            self._engine.close()
        for hook in self._hooks:
            with suppress(ValueError):
                self.store.hooks.remove(hook)
        if self._router is not None:
            self._router.close()
        if self._catalog is not None:
            self._catalog.close()
        if self._owns_store:
            self.store.close()
        self._log.close()
        if self._telemetry is not None:
            # bounded: a collector that is down costs at most the export timeout here
            self._telemetry.close()

    def __enter__(self) -> Workbench:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Workbench(root={str(self.root)!r}, store={self.store.location!r})"


def _adopt_code_pin(row: RunRow, flow: CompiledFlow) -> None:
    """A run stored before runs pinned their product's code recorded the hash of its flow
    text alone: if that text is unchanged, it continues on the current code (and records
    the combined hash at its next commit), as it would have before."""
    if row.flow_hash == flow.flow_hash:
        return  # the usual case: no import per load
    from master_sdk.products.compiler import flow_hash

    if row.flow_hash == flow_hash(flow.source):
        row.flow_hash = flow.flow_hash


def _determinism(store: Store) -> tuple[TestClock, SeededRunIds]:
    """A test clock and seeded run ids for deterministic mode.

    The clock starts at its fixed instant, or just after the latest run the store already
    holds (a notebook that reopens its store keeps time moving forward); ids the store
    holds are skipped, so they stay unique.
    """
    from master_sdk.orchestrator.determinism import EPOCH_US, SeededRunIds, TestClock

    start = EPOCH_US
    for run_id, _owner in store.find_runs():
        row, _steps = store.load(run_id)
        start = max(start, (row.updated_us // 1_000_000 + 1) * 1_000_000)

    def taken(run_id: str) -> bool:
        try:
            store.load(run_id)
        except NotFound:
            return False
        return True

    return TestClock(start), SeededRunIds(seed=0, taken=taken)


class FlowView:
    """A compiled flow, for display and inspection."""

    def __init__(self, flow: CompiledFlow, *, redact: Callable[[Any], Any] = lambda v: v) -> None:
        self._flow = flow
        self._redact = redact

    @property
    def ref(self) -> str:
        """``product/flow``."""
        return self._flow.ref

    @property
    def description(self) -> str:
        """The flow's description (redacted)."""
        text: str = self._redact(self._flow.spec.description)
        return text

    @property
    def inputs(self) -> dict[str, Any]:
        """The JSON Schema of the flow's inputs (redacted, like everything shown)."""
        schema: dict[str, Any] = self._redact(dict(self._flow.spec.inputs))
        return schema

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
        # guards and names come from the flow file: shown redacted, like everything else
        shown: list[dict[str, Any]] = self._redact(out)
        return shown

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
