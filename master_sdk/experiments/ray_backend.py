"""``wb.evaluate(..., backend="ray")``: the same experiment, its cases run on a Ray cluster.

Install with ``pip install 'master-sdk[ray]'``; Ray is imported only when this backend is
used. What happens, in order, before anything is stored or submitted:

1. **The cluster.** ``ray_address=None`` uses the Ray instance this process is already
   connected to (``ray.init(...)`` in the notebook), else starts a local one on this
   machine (kept for the life of the process; ``ray.shutdown()`` stops it). An address
   (``"ray://head:10001"``, ``"auto"``) connects to an existing cluster.
2. **The store** must be reachable by every worker: PostgreSQL, or the SQLite file only
   when every node of the cluster is this machine; ``memory://`` never.
3. **What travels** — the workbench's settings, the providers given to
   ``Workbench.open(providers=...)``, every scorer and the answers — is pickled with Ray's
   own serializer first; one that does not pickle is named, with what to do.
4. **The workers** (Ray actors, ``workers`` of them, default: one per CPU of the cluster)
   each load the workbench once, from the *same project folder* as the notebook (the
   same path: a local cluster, or a filesystem every node mounts), and check that the
   flow they loaded has the experiment's flow hash and product version; a mismatch is
   raised here, naming the worker, before any case runs.

Then the driver (this process) hands cases to the workers, at most ``concurrency`` in
flight, each worker running its share on threads. Results stream back into the same
stored experiment and the same :class:`Experiment` object; progress, the shared AIMD
backoff on rate limits and the cost cap behave as with ``backend="threads"`` (one gate
actor serves every worker). A case is claimed in the store before its run starts, so a
worker that dies mid-case costs no case and runs none twice: the case is handed to
another worker, which finds the claim; the run the dead worker left mid-step is
``interrupted``, and ``resume()`` continues it by the durability rules.

Why actors, not tasks: a task would load the products and open the store for every case
(``benchmarks/ray_bench.py`` measures both); an actor does it once per worker.
"""

from __future__ import annotations

import contextlib
import logging
import math
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from master_sdk.errors import MasterError, StoreError
from master_sdk.experiments.answers import Answers
from master_sdk.experiments.scorers import scorer_name

if TYPE_CHECKING:
    from master_sdk.experiments.limiter import GateState
    from master_sdk.experiments.progress import Progress
    from master_sdk.experiments.ray_worker import CaseResult
    from master_sdk.experiments.runner import Task
    from master_sdk.memory.experiments import CaseUpdate, ExperimentStore
    from master_sdk.products.compiler import CompiledFlow
    from master_sdk.workbench import Workbench

INSTALL_HINT = "pip install 'master-sdk[ray]'"
# a case whose worker died this many times is reported as an error, not handed on again
MAX_LOST = 3
# how long workers get to start and load the project
STARTUP_TIMEOUT_S = 300.0
_BATCH = 256
_TICK_S = 0.2


class TravelError(MasterError):
    """Something that must reach the Ray workers cannot be pickled."""


class ClusterError(MasterError):
    """The Ray cluster cannot run this experiment (not installed, unreachable, a store
    its workers cannot reach, workers that could not start)."""


def require_ray() -> Any:
    """The ``ray`` module, or a :class:`ClusterError` with the install hint."""
    try:
        import ray
    except ImportError:
        raise ClusterError(
            f"backend='ray' needs Ray: {INSTALL_HINT} (or use backend='threads')"
        ) from None
    return ray


def connect(ray: Any, address: str | None) -> None:
    """Connect this process to the cluster (see the module docstring, step 1)."""
    if ray.is_initialized():
        return
    options: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,
        "logging_level": logging.WARNING,
    }
    try:
        if address is None:
            start_local(ray, **options)
        else:
            ray.init(address=address, **options)
    except Exception as exc:
        where = "a local Ray cluster" if address is None else f"the Ray cluster at {address}"
        raise ClusterError(f"cannot start or reach {where}: {type(exc).__name__}: {exc}") from None


def start_local(ray: Any, *, attempts: int = 3, **options: Any) -> Any:
    """``ray.init(**options)`` of a local cluster, tried again when its processes were too
    slow to register (Ray waits 30 s for them, which a loaded machine can miss)."""
    for attempt in range(1, attempts + 1):
        try:
            return ray.init(**options)
        except Exception as exc:
            if attempt == attempts or "timed out during startup" not in str(exc):
                raise
            with contextlib.suppress(Exception):
                ray.shutdown()
    raise AssertionError("unreachable")  # pragma: no cover


def store_for_workers(wb: Workbench, ray: Any) -> str:
    """The store name workers open (the driver's store), refused when they cannot reach it.

    Raises:
        ClusterError: an in-memory store, or a SQLite file with nodes on other machines.
    """
    store = wb.store
    kind = getattr(store, "kind", None)
    if kind == "postgresql":
        return str(getattr(store, "location"))  # noqa: B009  # PostgresStore, not in Store
    if kind == "sqlite":
        path = store.path  # type: ignore[attr-defined]  # SQLiteStore
        here = socket.gethostname()
        elsewhere = sorted(
            {
                str(node.get("NodeManagerHostname"))
                for node in ray.nodes()
                if node.get("Alive") and node.get("NodeManagerHostname") != here
            }
        )
        if elsewhere:
            raise ClusterError(
                f"the SQLite store {path} is a file on this machine ({here}), and the Ray "
                f"cluster has nodes on {', '.join(elsewhere)}, which cannot reach it: use a "
                "PostgreSQL store (Workbench.open(store='postgresql://...')) or a cluster on "
                "this machine only"
            )
        return str(path)
    raise ClusterError(
        f"backend='ray' needs a store every worker can reach: this workbench's store is "
        f"{kind or type(store).__name__}, which lives in this process; open the workbench "
        "on a SQLite file or a PostgreSQL database"
    )


# ---------------------------------------------------------------------- what travels


def check_travel(items: Sequence[tuple[str, Any]]) -> None:
    """Pickle each ``(what, value)`` as Ray will; raise :class:`TravelError` naming the
    first that fails, and the part of it that does when that can be found."""
    from ray import cloudpickle

    dumps: Callable[[Any], bytes] = cloudpickle.dumps
    for what, value in items:
        try:
            dumps(value)
        except Exception as exc:
            part = _culprit(value, dumps, depth=3)
            inside = f" (its {part})" if part else ""
            raise TravelError(
                f"{what} cannot be sent to the Ray workers{inside}: {type(exc).__name__}: "
                f"{exc}. Everything the workers run must pickle: define it at module level "
                "(or in a module the workers can import), and create locks, connections, "
                "open files or clients inside the function instead of capturing them; or "
                "run with backend='threads'"
            ) from None


def _culprit(value: Any, dumps: Callable[[Any], bytes], *, depth: int) -> str | None:
    """Which part of ``value`` does not pickle: a captured variable, an attribute, an item."""
    if depth <= 0:
        return None
    parts: list[tuple[str, Any]] = []
    closure = getattr(value, "__closure__", None)
    code = getattr(value, "__code__", None)
    if closure and code is not None:
        for name, cell in zip(code.co_freevars, closure, strict=False):
            try:
                parts.append((f"captured variable '{name}'", cell.cell_contents))
            except ValueError:  # an empty cell
                continue
    if code is not None:
        globals_ = getattr(value, "__globals__", {})
        parts += [(f"global '{n}'", globals_[n]) for n in code.co_names if n in globals_]
    if isinstance(value, Mapping):
        parts += [(f"item {k!r}", v) for k, v in value.items()]
    elif isinstance(value, list | tuple):
        parts += [(f"item {i}", v) for i, v in enumerate(value)]
    attrs = getattr(value, "__dict__", None)
    if isinstance(attrs, dict) and not isinstance(value, type):
        parts += [(f"attribute '{k}'", v) for k, v in attrs.items()]
    for label, part in parts:
        try:
            dumps(part)
        except Exception:
            deeper = _culprit(part, dumps, depth=depth - 1)
            kind = type(part).__name__
            return f"{label} ({kind})" + (f", {deeper}" if deeper else "")
    return None


def travelling(
    wb: Workbench, scorers: Sequence[Callable[..., Any]], answers: Answers
) -> list[tuple[str, Any]]:
    """Everything a worker receives, each with the name a user would recognise."""
    items: list[tuple[str, Any]] = [("the workbench's settings (configs/, secrets)", wb.settings)]
    for name, provider in wb.router.given_providers.items():
        items.append((f"providers[{name!r}] ({type(provider).__name__})", provider))
    for index, scorer in enumerate(scorers):
        items.append((f"scorers[{index}] ('{scorer_name(scorer, index)}')", scorer))
    if answers is not None:
        items.append(("answers", answers))
    return items


# ---------------------------------------------------------------------- the workers


@dataclass(frozen=True, slots=True)
class RayOptions:
    """Where to run: ``address`` (None: this process's Ray, else a local one), and how many
    worker actors (None: one per CPU of the cluster)."""

    address: str | None = None
    workers: int | None = None


class GateView:
    """The driver's view of the gate service, for the progress display and the end."""

    def __init__(self, ray: Any, service: Any) -> None:
        self._ray = ray
        self._service = service
        self._last: GateState | None = None

    def state(self) -> GateState:
        """The gate's numbers now (the last known ones if the service is gone)."""
        try:
            self._last = self._ray.get(self._service.state.remote(), timeout=10)
        except Exception:
            if self._last is None:
                raise
        assert self._last is not None  # noqa: S101  # set above or raised
        return self._last

    @property
    def blocked(self) -> str | None:
        """Why the cost cap stopped the experiment, if it did."""
        return self.state().blocked


class RayPool:
    """The worker actors and the gate service of one pass over an experiment.

    A worker that dies is replaced by a new actor (the pool's own doing, not Ray's actor
    restarts: the driver decides where the dead worker's cases go, and stops replacing
    after ``2 * workers`` replacements so a worker that cannot live does not loop).
    """

    def __init__(self, ray: Any, actor: Any, spec: Any, service: Any, per_worker: int,
                 count: int) -> None:  # fmt: skip
        self.ray = ray
        self._actor = actor
        self._spec = spec  # a reference in Ray's object store, kept for replacements
        self.workers: list[Any] = [actor.remote(spec) for _ in range(count)]
        self.names: list[str] = []
        self.gate = GateView(ray, service)
        self.service = service
        self.per_worker = per_worker
        self.replacements_left = 2 * count
        self._retired: list[Any] = []

    def replace(self, index: int) -> Any | None:
        """Start a new worker in place of worker ``index`` (dead); returns the reference
        its ``ready()`` answers on, or None when no more replacements are allowed."""
        if self.replacements_left <= 0:
            return None
        self.replacements_left -= 1
        self._retired.append(self.workers[index])
        self.workers[index] = self._actor.remote(self._spec)
        return self.workers[index].ready.remote()

    @classmethod
    def start(
        cls,
        wb: Workbench,
        flow: CompiledFlow,
        *,
        name: str,
        scorers: Sequence[Callable[..., Any]],
        answers: Answers,
        concurrency: int,
        max_cost_usd: float | None,
        models: Mapping[str, str],
        spent_usd: float,
        options: RayOptions,
    ) -> RayPool:
        """Check, connect, start the workers and wait until each has loaded the flow
        (see the module docstring). Nothing is stored or submitted before this returns."""
        from master_sdk.experiments.ray_worker import CaseWorker, GateService, WorkerSpec

        ray = require_ray()
        if options.workers is not None and int(options.workers) < 1:
            raise MasterError(f"workers must be at least 1, not {options.workers}")
        check_travel(travelling(wb, scorers, answers))
        connect(ray, options.address)
        location = store_for_workers(wb, ray)
        settings = wb.settings.model_copy(
            update={"app": wb.settings.app.model_copy(update={"store": location})}
        )
        cpus = float(ray.cluster_resources().get("CPU", 1.0))
        count = int(options.workers or max(1, int(cpus)))
        per_worker = max(1, math.ceil(concurrency / count))
        service = (
            ray.remote(GateService)
            .options(num_cpus=0, max_concurrency=2 * concurrency + 16)
            .remote(
                concurrency=concurrency,
                max_cost_usd=max_cost_usd,
                models=dict(models),
                spent_usd=spent_usd,
            )
        )
        spec = WorkerSpec(
            settings=settings,
            providers=wb.router.given_providers,
            ref=flow.ref,
            flow_hash=flow.flow_hash,
            product_version=flow.product_version,
            name=name,
            scorers=tuple(scorers),
            answers=answers,
            by=wb.user,
            models=dict(models),
            capped=max_cost_usd is not None,
            gate=service,
        )
        actor = ray.remote(CaseWorker).options(
            num_cpus=min(1.0, cpus / count), max_concurrency=per_worker
        )
        pool = cls(ray, actor, ray.put(spec), service, per_worker, count)
        try:
            reports = ray.get([w.ready.remote() for w in pool.workers], timeout=STARTUP_TIMEOUT_S)
        except Exception as exc:
            pool.close()
            raise ClusterError(
                f"{count} Ray worker(s) did not start within {STARTUP_TIMEOUT_S:.0f}s "
                f"({type(exc).__name__}: {exc}); the cluster has {cpus:g} CPU(s): ask for "
                "fewer workers= or check the cluster"
            ) from None
        problems = [r["problem"] for r in reports if r["problem"]]
        if problems:
            pool.close()
            raise ClusterError(problems[0])
        pool.names = [str(r["worker"]) for r in reports]
        return pool

    def close(self) -> None:
        """Close the workers' workbenches (their store connections), then stop the workers
        and the gate service (their processes end)."""
        with contextlib.suppress(Exception):  # a worker that is gone has nothing to close
            self.ray.get([w.close.remote() for w in self.workers], timeout=30)
        for actor in [*self.workers, *self._retired, self.service]:
            with contextlib.suppress(Exception):  # already gone
                self.ray.kill(actor, no_restart=True)


# ---------------------------------------------------------------------- the driver


@dataclass(slots=True)
class _Submission:
    task: Task
    lost: int = 0


class RayRunner:
    """One pass over an experiment's cases on a :class:`RayPool` (the Ray twin of
    :class:`~master_sdk.experiments.runner.Runner`: same ``execute``, ``stop``,
    ``progress`` and ``stop_reason``)."""

    def __init__(
        self,
        pool: RayPool,
        store: ExperimentStore,
        *,
        name: str,
        progress: Progress,
        concurrency: int,
        resuming: bool,
    ) -> None:
        self.pool = pool
        self.gate = pool.gate
        self.store = store
        self.name = name
        self.progress = progress
        self.concurrency = max(1, int(concurrency))
        self.resuming = resuming
        self.stop_reason: str | None = None
        self._stop = threading.Event()
        self._updates: list[CaseUpdate] = []
        self._in_flight: dict[Any, tuple[_Submission, int, Any]] = {}
        self._pending: deque[_Submission] = deque()
        # workers being replaced (index -> the new one's ready() reference; None: gone)
        self._down: dict[int, Any | None] = {}
        self._dead = False
        self.lost_workers = 0
        self.interrupted_cases = 0

    def stop(self, reason: str) -> None:
        """Hand out no new case; cases in flight finish their run."""
        if self.stop_reason is None:
            self.stop_reason = reason
            self.progress.stopping = reason
        self._stop.set()

    def execute(self, tasks: Sequence[Task]) -> str:
        """Drive ``tasks``; returns ``done``, ``interrupted``, ``cancelled`` or ``blocked``."""
        interrupted = False
        try:
            try:
                self._loop(tasks)
            except KeyboardInterrupt:
                interrupted = True
                self.stop("interrupted (KeyboardInterrupt): cases in flight are finishing")
                self._loop(())
        finally:
            self._flush()
            self.progress.finish()
            with contextlib.suppress(Exception):  # keep the gate's last numbers
                self.pool.gate.state()
            self.pool.close()
        if interrupted:
            return "interrupted"
        if self.pool.gate.blocked is not None:
            return "blocked"
        if self._dead:
            return "interrupted"
        if self._stop.is_set():
            return "cancelled"
        if self.interrupted_cases:
            self.stop_reason = (
                f"{self.interrupted_cases} case(s) were on a Ray worker that died mid-step; "
                "their runs are interrupted: resume() continues them"
            )
            return "interrupted"
        return "done"

    def _loop(self, tasks: Sequence[Task]) -> None:
        ray = self.pool.ray
        pending = self._pending
        pending.extend(_Submission(t) for t in tasks)
        in_flight = self._in_flight
        last_tick = time.monotonic()
        while in_flight or (pending and not self._stop.is_set()):
            self._submit()
            probes = {ref: i for i, ref in self._down.items() if ref is not None}
            if not in_flight and not probes:
                self.stop(
                    "every Ray worker died and none could be replaced; resume() continues "
                    "the cases left (see the cluster's logs)"
                )
                self._dead = True
                break
            waiting = [*in_flight, *probes]
            ready, _ = ray.wait(waiting, num_returns=1, timeout=_TICK_S)
            if ready:
                more, _ = ray.wait(waiting, num_returns=len(waiting), timeout=0)
                ready = list({*ready, *more})
            for ref in ready:
                if ref in probes:
                    self._probed(ref, probes[ref])
                    continue
                sub, index, actor = in_flight.pop(ref)
                self._settle(ref, sub, index, actor)
            now = time.monotonic()
            if now - last_tick >= _TICK_S:
                last_tick = now
                self._flush()
                self.progress.tick()
                if self.pool.gate.blocked is not None:
                    self.stop(self.pool.gate.blocked or "blocked")

    def _submit(self) -> None:
        """Hand pending cases to the least loaded live workers, ``concurrency`` in flight."""
        in_flight, pending = self._in_flight, self._pending
        workers = self.pool.workers
        while pending and not self._stop.is_set() and len(in_flight) < self.concurrency:
            load = [0] * len(workers)
            for _sub, i, _actor in in_flight.values():
                load[i] += 1
            up = [i for i in range(len(workers)) if i not in self._down]
            if not up:
                return
            index = min(up, key=load.__getitem__)
            sub = pending.popleft()
            task = sub.task
            actor = workers[index]
            retry = task.run_id is not None and not sub.lost
            ref = actor.run_case.remote(task.case, task.run_id, task.replaces, retry)
            in_flight[ref] = (sub, index, actor)

    def _probed(self, ref: Any, index: int) -> None:
        """A replacement worker answered ``ready()`` (or died starting)."""
        ray = self.pool.ray
        try:
            report = ray.get(ref)
        except ray.exceptions.RayError:
            self._down[index] = self.pool.replace(index)
            return
        if report.get("problem"):
            self._down[index] = None  # it cannot work: never handed a case
            return
        del self._down[index]

    def _settle(self, ref: Any, sub: _Submission, index: int, actor: Any) -> None:
        from master_sdk.memory.experiments import CaseUpdate

        ray = self.pool.ray
        key = sub.task.case.key
        try:
            result: CaseResult = ray.get(ref)
        except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as exc:
            # the worker died with the case: hand it on; the claim in the store makes the
            # next attempt find the run the first one started, if it started one
            if self.pool.workers[index] is actor and index not in self._down:
                self.lost_workers += 1
                self._down[index] = self.pool.replace(index)
            sub.lost += 1
            if sub.lost >= MAX_LOST:
                message = (
                    f"case {key}: the Ray worker running it died {sub.lost} times "
                    f"({type(exc).__name__}); see the cluster's logs"
                )
                self._record(CaseUpdate(key, error=message, set_error=True), "error")
            else:
                self._pending.appendleft(sub)
            return
        except ray.exceptions.RayError as exc:
            message = f"case {key}: {type(exc).__name__}: {exc}"
            self._record(CaseUpdate(key, error=message, set_error=True), "error")
            return
        if result.status == "not_started":
            return  # the cost cap was reached first: the case stays pending for resume()
        if result.status == "error":
            self._record(CaseUpdate(key, error=result.error, set_error=True), "error")
            return
        if result.status == "interrupted" and not result.claimed:
            self.interrupted_cases += 1
        self._record(CaseUpdate(key, run_id=result.run_id, scores=result.scores), result.status)

    def _record(self, update: CaseUpdate, status: str) -> None:
        self._updates.append(update)
        self.progress.count(status)
        if len(self._updates) >= _BATCH:
            self._flush()

    def _flush(self) -> None:
        updates, self._updates = self._updates, []
        if updates:
            try:
                self.store.update_cases(self.name, updates)
            except StoreError:
                self._updates = updates + self._updates  # written at the next flush
                raise
