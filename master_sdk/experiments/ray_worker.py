"""What runs inside a Ray cluster for ``wb.evaluate(..., backend="ray")``.

Two actor classes, wrapped with ``ray.remote`` by the driver (``ray_backend.py``); this
module imports no Ray at import time, so it loads anywhere:

* :class:`GateService` holds the experiment's one :class:`ExperimentGate` (the AIMD window
  of model calls and the cost cap) for every worker; each worker reaches it through a
  :class:`RemoteGate`, so a rate limit seen by any worker slows them all and the cap
  covers every call of every worker, exactly as with threads.
* :class:`CaseWorker` loads the workbench once per worker process — the same project
  folder and the same store as the driver, the driver's settings and given providers —
  checks that the flow it loaded has the experiment's flow hash and product version, and
  then drives one case per call (several calls at once, one thread each).

Exactly once: a fresh case is *claimed* before its run starts (``Store.claim_case``, a
compare-and-set of the case's run id), and the run is created under the claimed id, so
a second attempt at the same case — Ray resubmitting it after a worker died — finds the
claim and reports the run that exists instead of starting another. A run cut short by a
dead worker is left ``interrupted`` (the durability rules); ``resume()`` decides to run
its step again.
"""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from master_sdk.errors import MasterError, NotFound, PolicyViolation, StoreError
from master_sdk.experiments.answers import Answers, answer_run

if TYPE_CHECKING:
    from master_sdk.config.settings import Settings
    from master_sdk.experiments.cases import Case
    from master_sdk.experiments.limiter import GateState
    from master_sdk.models.types import Provider
    from master_sdk.run import Run
    from master_sdk.workbench import Workbench


class WorkerMismatch(MasterError):
    """A Ray worker could not load the experiment's flow as the driver has it."""


# ---------------------------------------------------------------------- the shared gate


class GateService:
    """The experiment's gate, served to every worker (a threaded Ray actor).

    ``acquire`` blocks in the actor until a slot of the window is free, so the actor runs
    with more threads than the experiment has calls in flight. A refusal by the cost cap
    is returned as data (``admit``), not raised: the worker raises the same
    ``PolicyViolation`` in its own process.
    """

    def __init__(
        self,
        *,
        concurrency: int,
        max_cost_usd: float | None,
        models: Mapping[str, str],
        spent_usd: float,
    ) -> None:
        from master_sdk.experiments.limiter import ExperimentGate

        self.gate = ExperimentGate(
            concurrency=concurrency, max_cost_usd=max_cost_usd, models=models, spent_usd=spent_usd
        )

    def admit(
        self, step_id: str, model: str, worst_cost: float | None
    ) -> tuple[float, dict[str, Any] | None]:
        """Reserve under the cap: ``(reserved, None)``, or ``(0, refusal)``."""
        try:
            return self.gate.admit(step_id=step_id, model=model, worst_cost=worst_cost), None
        except PolicyViolation as exc:
            return 0.0, {
                "rule": exc.rule,
                "limit": exc.limit,
                "value": exc.value,
                "message": str(exc),
                "step": exc.step,
            }

    def settle(self, reserved: float, cost: float | None) -> None:
        """See :meth:`ExperimentGate.settle`."""
        self.gate.settle(reserved, cost)

    def acquire(self) -> bool:
        """Wait for a slot of the window (see :meth:`ExperimentGate.acquire`)."""
        self.gate.acquire()
        return True

    def release(self, outcome: str) -> None:
        """See :meth:`ExperimentGate.release`."""
        self.gate.release(outcome)

    def state(self) -> GateState:
        """What the progress display shows."""
        return self.gate.state()

    def blocked(self) -> str | None:
        """Why the cost cap stopped the experiment, if it did."""
        return self.gate.blocked


class RemoteGate:
    """A worker's door to the :class:`GateService` (implements ``CallGate``).

    One round trip per model call (``acquire``); ``admit`` asks the service only when the
    experiment has a cost cap; ``release`` and ``settle`` are sent without waiting (a
    reservation released a moment late only makes the cap stricter).
    """

    def __init__(
        self,
        service: Any,
        *,
        models: Mapping[str, str],
        capped: bool,
        congestion_attempts: int = 8,
    ) -> None:
        self.service = service
        self.models: Mapping[str, str] = dict(models)
        self.capped = capped
        self.congestion_attempts = congestion_attempts

    def _get(self, ref: Any) -> Any:
        import ray

        return ray.get(ref)

    def admit(self, *, step_id: str, model: str, worst_cost: float | None) -> float:
        """Reserve ``worst_cost`` under the experiment's cap, or raise its refusal."""
        if not self.capped:
            return 0.0
        reserved, refusal = self._get(self.service.admit.remote(step_id, model, worst_cost))
        if refusal is not None:
            error = PolicyViolation(
                refusal["rule"],
                limit=refusal["limit"],
                value=refusal["value"],
                message=refusal["message"],  # already names the step
            )
            error.step = refusal["step"]
            raise error
        return float(reserved)

    def settle(self, reserved: float, cost: float | None) -> None:
        """Release the reservation and charge the cost (not waited for)."""
        self.service.settle.remote(reserved, cost)

    def acquire(self) -> None:
        """Wait for a slot of the experiment-wide window."""
        self._get(self.service.acquire.remote())

    def release(self, outcome: str) -> None:
        """Give the slot back (not waited for)."""
        self.service.release.remote(outcome)

    def blocked(self) -> str | None:
        """Why the cost cap stopped the experiment, if it did (asks the service)."""
        found: str | None = self._get(self.service.blocked.remote())
        return found


# ---------------------------------------------------------------------- one worker


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """Everything a worker needs, as it travels to the cluster (checked to pickle)."""

    settings: Settings
    providers: Mapping[str, Provider]
    ref: str
    flow_hash: str
    product_version: str
    name: str
    scorers: Sequence[Callable[..., Any]]
    answers: Answers
    by: str
    models: Mapping[str, str]
    capped: bool
    gate: Any = field(default=None)


@dataclass(slots=True)
class CaseResult:
    """What a worker reports for one case."""

    case_key: str
    status: str  # a run status, "error", or "not_started" (the cost cap was reached)
    run_id: str | None = None
    scores: dict[str, Any] | None = None
    error: str | None = None
    claimed: bool = True  # False: the case was found claimed by an earlier attempt


def process_name() -> str:
    """``host:pid`` of this process."""
    return f"{socket.gethostname()}:{os.getpid()}"


class CaseWorker:
    """Drives cases of one experiment in one Ray worker process (see module docstring).

    Construction never raises (a Ray actor that fails in ``__init__`` says little about
    why); :meth:`ready` reports the problem, and the driver raises it.
    """

    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        self.problem: str | None = None
        self.wb: Workbench | None = None
        try:
            self._open()
        except MasterError as exc:
            self.problem = str(exc)
        except Exception as exc:
            self.problem = f"{type(exc).__name__}: {exc}"

    def _open(self) -> None:
        from master_sdk.experiments.scoring import score_run  # noqa: F401  # warm imports
        from master_sdk.workbench import Workbench

        spec = self.spec
        settings = spec.settings
        if not settings.products_path.is_dir():
            raise WorkerMismatch(
                f"Ray worker {process_name()}: the project folder {settings.root} (products in "
                f"{settings.products_path}) is not on this machine; workers load products "
                "from the same path as the notebook: put the project on a filesystem every "
                "node mounts at that path"
            )
        self.wb = Workbench(settings, providers=dict(spec.providers) or None)
        flow = self.wb.catalog.flow(spec.ref)
        if (flow.flow_hash, flow.product_version) != (spec.flow_hash, spec.product_version):
            raise WorkerMismatch(
                f"Ray worker {process_name()} loaded {spec.ref} from {settings.products_path} "
                f"with flow hash {flow.flow_hash[:12]} and product version "
                f"{flow.product_version}, but experiment '{spec.name}' runs hash "
                f"{spec.flow_hash[:12]}, version {spec.product_version}: every worker must "
                "see the same project folder as the notebook (same files at the same path)"
            )
        self.flow = flow
        self.gate = RemoteGate(spec.gate, models=spec.models, capped=spec.capped)

    def ready(self) -> dict[str, Any]:
        """``{"worker": "host:pid", "problem": None | why it cannot work}``."""
        return {"worker": process_name(), "problem": self.problem}

    def run_case(
        self, case: Case, run_id: str | None, replaces: str | None, retry_interrupted: bool
    ) -> CaseResult:
        """Start (``run_id`` None: claim first) or continue one case; answer its human
        steps, score it. Errors are reported in the result, never raised."""
        from master_sdk.models.gates import gated

        if self.wb is None or self.problem is not None:
            return CaseResult(case.key, "error", error=self.problem or "worker not ready")
        with gated(self.gate):
            if run_id is None and self.spec.capped and self.gate.blocked() is not None:
                return CaseResult(case.key, "not_started")
            try:
                run, claimed = self._run_of(case, run_id, replaces, retry_interrupted)
                run = answer_run(self.spec.answers, case.row, run, by=self.spec.by)
            except MasterError as exc:
                return CaseResult(case.key, "error", error=str(exc))
            except Exception as exc:
                return CaseResult(case.key, "error", error=f"{type(exc).__name__}: {exc}")
            result = CaseResult(case.key, str(run.status), run_id=run.id, claimed=claimed)
            if run.status == "completed" and self.spec.scorers:
                from master_sdk.experiments.scoring import score_run

                # as on threads: a judge's calls are traced in the case's run
                result.scores = score_run(
                    self.wb, self.flow, self.spec.scorers, case.key, case.row, run
                )
            return result

    def _new_id(self, case: Case, replaces: str | None) -> str:
        assert self.wb is not None  # noqa: S101  # checked by run_case
        if self.wb.settings.app.deterministic:
            # seeded ids would repeat across worker processes: derive one per case instead
            seed = f"{self.spec.name}\0{case.key}\0{replaces or ''}"
            return hashlib.sha256(seed.encode("utf-8")).hexdigest()[:32]
        return self.wb.engine.run_ids()

    def _run_of(
        self, case: Case, run_id: str | None, replaces: str | None, retry_interrupted: bool
    ) -> tuple[Run, bool]:

        wb = self.wb
        assert wb is not None  # noqa: S101  # checked by run_case
        spec = self.spec
        if run_id is None:
            wanted = self._new_id(case, replaces)
            held = wb.store.claim_case(spec.name, case.key, wanted, expected=replaces)
            if held is None:
                raise NotFound(f"experiment '{spec.name}' has no case '{case.key}'")
            if held == wanted:
                return self._start(case, wanted), True
            # claimed by an earlier attempt (a worker lost mid-case): that run is the case's
            run_id, retry_interrupted = held, False
        try:
            run = wb.get_run(run_id, recover=False)
        except NotFound:
            # claimed, never started: the claimer died before the run's first commit. The
            # run is created under the claimed id; if the claimer is alive after all, one
            # of the two first commits fails and the other is the case's only run
            try:
                return self._start(case, run_id), False
            except StoreError:
                run = wb.get_run(run_id, recover=False)
        if run.status == "interrupted" and retry_interrupted:
            # resume() is the decision to run the interrupted step again
            run.retry(by=spec.by)
        return run, False

    def _start(self, case: Case, run_id: str) -> Run:
        from master_sdk.run import Run

        wb = self.wb
        assert wb is not None  # noqa: S101  # checked by run_case
        ctx = wb.engine.start(
            self.flow,
            case.inputs,
            by=self.spec.by,
            tags={"experiment": {"name": self.spec.name, "case": case.key}},
            run_id=run_id,
        )
        return Run(wb, ctx.run, ctx)

    def close(self) -> bool:
        """Close the workbench (its store connections)."""
        if self.wb is not None:
            self.wb.close()
            self.wb = None
        return True
