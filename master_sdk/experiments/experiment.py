"""The :class:`Experiment` handle: results, summary, resume, cancel, runs, display.

An experiment is stored (``wb.experiments()`` lists them; ``wb.experiment(name)`` reopens
one after a kernel restart); the handle reads the store on every access, so it shows what
other kernels, the CLI or the inbox did to its runs since.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from master_sdk.errors import FlowChanged, MasterError
from master_sdk.experiments.answers import Answers

if TYPE_CHECKING:
    import pandas as pd

    from master_sdk.experiments.ray_backend import RayRunner
    from master_sdk.experiments.runner import Runner
    from master_sdk.memory.experiments import CaseRun, ExperimentRecord
    from master_sdk.workbench import Workbench

# statuses an experiment can have; "running" seen from a process that is not running it
# (and whose recorded owner died) shows as "interrupted"
EXPERIMENT_STATUSES = (
    "running",
    "completed",
    "waiting",
    "interrupted",
    "cancelled",
    "blocked",
)


class Experiment:
    """A flow run over a table of cases (see :meth:`Workbench.evaluate`).

    Example:
        >>> exp = wb.evaluate("triage/classify", cases, name="v2",          # doctest: +SKIP
        ...                   scorers=[ms.scorers.exact("label", expected="expected")])
        >>> exp.results                  # one row per case                  # doctest: +SKIP
        >>> exp.summary()                # means with 95% CIs, pass rate...  # doctest: +SKIP
    """

    def __init__(
        self,
        wb: Workbench,
        name: str,
        *,
        scorers: Sequence[Callable[..., Any]] = (),
        answers: Answers = None,
    ) -> None:
        self._wb = wb
        self.name = name
        self._scorers = tuple(scorers)
        self._answers = answers
        self._runner: Runner | RayRunner | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    # ------------------------------------------------------------------ state

    @property
    def record(self) -> ExperimentRecord:
        """The stored header: flow, hash, product version, parameters, status."""
        return self._wb.store.get_experiment(self.name)

    @property
    def status(self) -> str:
        """``running``, ``completed``, ``waiting`` (some runs wait for a human),
        ``interrupted``, ``cancelled`` or ``blocked`` (the cost cap; see :attr:`error`)."""
        record = self.record
        status = record.status
        if status == "running" and not self._live():
            from master_sdk.orchestrator.ownership import process_alive

            owner = (record.params or {}).get("owner")
            if owner == self._wb.engine.owner or not process_alive(owner):
                return "interrupted"
        if status == "waiting":
            counts = self._wb.store.case_statuses(self.name)
            if not (counts.get("waiting_approval") or counts.get("waiting_input")):
                return "completed"
        return status

    @property
    def error(self) -> str | None:
        """Why the experiment stopped early (the cost cap's reason, an interrupt)."""
        return self.record.error

    @property
    def ref(self) -> str:
        """``product/flow`` the experiment ran."""
        return self.record.ref

    def _live(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _cases(self) -> list[CaseRun]:
        return self._wb.store.experiment_cases(self.name)

    # ------------------------------------------------------------------ data

    @property
    def results(self) -> pd.DataFrame:
        """One row per case (columns in ``docs/dataframes.md``; outputs redacted)."""
        from master_sdk.experiments.results import results_frame

        return results_frame(self._cases(), redact=self._wb._redact)

    def summary(self) -> pd.DataFrame:
        """Per score the mean and a 95% bootstrap CI; pass rate; cost; p50/p95 latency;
        counts by status — one row per figure (``metric, kind, value, ci_low, ci_high, n``)."""
        from master_sdk.experiments.results import results_frame, score_columns, summary_frame

        cases = self._cases()
        return summary_frame(results_frame(cases), score_columns(cases))

    def runs(self) -> pd.DataFrame:
        """The experiment's runs as ``wb.runs()`` shows them, plus ``case_key``."""
        cases = self._cases()
        by_run = {c.run_id: c.case_key for c in cases if c.run_id}
        frame = self._wb.runs()
        frame = frame[frame["run_id"].isin(by_run)].copy()
        frame.insert(1, "case_key", frame["run_id"].map(by_run))
        return frame.reset_index(drop=True)

    # ------------------------------------------------------------------ control

    def resume(
        self,
        *,
        scorers: Sequence[Callable[..., Any]] | None = None,
        answers: Answers = None,
        concurrency: int | None = None,
        max_cost_usd: float | None = None,
        wait: bool = True,
        progress: bool = True,
        allow_flow_change: bool = False,
        backend: str | None = None,
        ray_address: str | None = None,
        workers: int | None = None,
    ) -> Experiment:
        """Run what is left: cases with no run, runs that were interrupted, and paused runs
        that ``answers`` can now answer. Finished runs are never run again, and a completed
        step never repeats its model call. Scorers and answers given before in this process
        are reused unless new ones are given (after a restart, pass them again).

        ``backend`` is the one the experiment ran on unless given (``"threads"`` or
        ``"ray"``, with ``ray_address`` and ``workers`` as for ``wb.evaluate``).

        Raises:
            FlowChanged: the flow or product changed since the experiment started (pass
                ``allow_flow_change=True`` to continue on the flow as it is now).
        """
        from master_sdk.experiments.evaluate import BACKENDS, launch, plan_resume

        if self._live():
            raise MasterError(f"experiment '{self.name}' is running; wait() or cancel() first")
        if scorers is not None:
            self._scorers = tuple(scorers)
        if answers is not None:
            self._answers = answers
        record = self.record
        flow = self._wb.catalog.flow(record.ref)
        if not allow_flow_change and (
            flow.flow_hash != record.flow_hash or flow.product_version != record.product_version
        ):
            raise FlowChanged(
                f"experiment '{self.name}': flow {record.ref} changed since it started "
                f"(hash {record.flow_hash[:12]} -> {flow.flow_hash[:12]}, product version "
                f"{record.product_version} -> {flow.product_version}); start a new experiment "
                "to compare versions, or resume(allow_flow_change=True)"
            )
        params = dict(record.params or {})
        backend = backend or str(params.get("backend") or "threads")
        if backend not in BACKENDS:
            raise MasterError(f"backend={backend!r} is not a backend: 'threads' or 'ray'")
        tasks, spent = plan_resume(self, flow, self._cases(), rescore=bool(self._scorers))
        concurrency = concurrency or int(params.get("concurrency", 8))
        cap = max_cost_usd if max_cost_usd is not None else params.get("max_cost_usd")
        models = params.get("models") or {}
        pool = None
        if backend == "ray" and tasks:
            from master_sdk.experiments.ray_backend import RayOptions, RayPool

            options = RayOptions(
                ray_address if ray_address is not None else params.get("ray_address"),
                workers if workers is not None else params.get("workers"),
            )
            pool = RayPool.start(
                self._wb, flow, name=self.name, scorers=self._scorers, answers=self._answers,
                concurrency=concurrency, max_cost_usd=cap, models=models, spent_usd=spent,
                options=options,
            )  # fmt: skip
        launch(
            self,
            flow,
            tasks,
            concurrency=concurrency,
            max_cost_usd=cap,
            models=models,
            spent_usd=spent,
            wait=wait,
            progress=progress,
            pool=pool,
        )
        return self

    def cancel(self) -> Experiment:
        """Start no new case; cases in flight finish. The experiment ends ``cancelled``
        (``resume()`` continues it later)."""
        runner = self._runner
        if runner is not None and self._live():
            runner.stop("cancelled")
            self.wait()
        elif self.status in ("running", "interrupted", "waiting"):
            from master_sdk.tracing.events import now_us

            self._wb.store.set_experiment_status(
                self.name, "cancelled", error="cancelled", at_us=now_us()
            )
        return self

    def wait(self, timeout: float | None = None) -> Experiment:
        """Block until a background experiment (``wait=False``) has finished."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        return self

    def progress(self) -> str:
        """The progress line as it is now (while running), else the status."""
        runner = self._runner
        if runner is not None and self._live():
            return runner.progress.snapshot().text()
        return f"{self.name}: {self.status}"

    # ------------------------------------------------------------------ display

    def _text(self) -> str:
        record = self.record
        lines = [
            f"Experiment {self.name!r} on {record.ref} — {self.status}, {record.cases} cases",
        ]
        if record.error and self.status != "completed":
            lines.append(f"  stopped: {record.error}")
        if self._live():
            lines.append("  " + self.progress())
            return "\n".join(lines)
        counts: list[str] = []
        for row in self.summary().to_dict(orient="records"):
            if row["kind"] == "count":
                counts.append(f"{row['metric']} {int(row['value'])}")
                continue
            low, high = row["ci_low"], row["ci_high"]
            ci = f" [{low:.3f}, {high:.3f}]" if low == low else ""  # NaN: no interval
            lines.append(f"  {row['metric']:<22} {row['value']:.4g}{ci}  (n={row['n']})")
        lines.append("  cases: " + ", ".join(counts))
        return "\n".join(lines)

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        import html

        text = self._text()
        return {"text/plain": text, "text/html": f"<pre>{html.escape(text)}</pre>"}

    def __str__(self) -> str:
        """The status line and the summary, as text."""
        return self._text()

    def __repr__(self) -> str:
        return f"Experiment(name={self.name!r})"
