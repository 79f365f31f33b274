"""The :class:`Store` seam: what every run store speaks, as typed records.

The engine hands a store one :class:`RunRecord` and the :class:`Changes` of one step, and
the store writes them in one transaction, with compare-and-set on the run's ``version``.
Everything above the store — DataFrames (``memory/frames.py``), export and import
(``memory/transfer.py``), redaction on read — is written once against this protocol; the
SQLite store (``memory/sqlite``), the in-memory store (``memory/inmemory.py``) and later
ones implement it, and one contract suite (``tests/contract``) runs against each.

Rules every implementation keeps:

* ``commit`` is atomic: it writes all of ``run`` and ``changes`` or nothing. When it raises
  (``VersionConflict``, ``StoreBusy``, ``StoreError``, or an exception from a hook's
  ``before_commit``) nothing was written.
* Every error that leaves a store is a :class:`master_sdk.errors.MasterError`.
* Records are plain data: a store never keeps a reference to a record it was given (it
  serialises or copies), and never hands out one it keeps.
* Hooks (:class:`CommitHook`) are called by the store, in list order: ``before_commit``
  inside the transaction just before it is made durable (crash tests stop the process
  there), ``after_commit`` once it is durable (trace log, telemetry, progress), in the
  committing thread and outside the store's write lock (so commits of different threads
  may reach ``after_commit`` in either order; each run's own commits are in order). An
  exception from ``after_commit`` is logged and swallowed: the commit stands.

Trace events cross this seam with names (:class:`TraceEvent`); how a store encodes them
(SQLite packs them into integer-coded chunks) is its own business. Bulk reads for frames
come back columnar (:class:`RunTable`, :class:`TraceTable`) so a million events never
become a million Python objects.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Protocol, runtime_checkable

from master_sdk.errors import StoreError
from master_sdk.memory.experiments import ExperimentStore

if TYPE_CHECKING:
    import numpy as np

    from master_sdk.memory.retention import PruneReport

__all__ = [
    "ApprovalRecord",
    "Changes",
    "Coded",
    "Commit",
    "CommitHook",
    "EncodedEvents",
    "FlowSource",
    "InputRecord",
    "LabelHook",
    "PendingRun",
    "Reservation",
    "RunRecord",
    "RunTable",
    "StepAttempt",
    "Store",
    "StoredApproval",
    "StoredRun",
    "TraceEvent",
    "TraceTable",
    "VersionConflict",
    "call_after_commit",
]

log = logging.getLogger("master_sdk.memory")


# --------------------------------------------------------------------------- records


@dataclass(slots=True)
class RunRecord:
    """A run's header and resumable state (one row).

    ``pk`` is the store's own key for the run, set by the store on the first commit;
    ``version`` is what compare-and-set checks.
    """

    run_id: str
    product: str
    flow: str
    status: str
    version: int
    cursor: int
    created_us: int
    updated_us: int
    flow_hash: str
    product_version: str
    created_by: str | None = None
    owner: str | None = None
    steps_used: int = 0
    tool_calls: int = 0
    model_calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    inputs: Any = None
    output: Any = None
    state: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    pk: int | None = None
    # lineage (set once, when the run is created by a fork): the run it was forked from and
    # the id of the step it was forked at
    parent_run_id: str | None = None
    forked_at: str | None = None


@dataclass(slots=True)
class StepAttempt:
    """One attempt of one step of a run (``attempt`` counts from 1).

    A commit carrying an attempt the store already holds (same ``idx`` and ``attempt``)
    updates it; a new ``attempt`` number adds a row and keeps the earlier ones.
    """

    idx: int
    step_id: str
    type: str
    status: str
    attempt: int = 1
    started_us: int | None = None
    ended_us: int | None = None
    output: Any = None
    error: str | None = None


@dataclass(slots=True)
class TraceEvent:
    """One trace event, with names (vocabulary in ``tracing/events.py``)."""

    seq: int
    ts_us: int
    event: str
    step_id: str | None = None
    step_type: str | None = None
    name: str | None = None
    status: str | None = None
    duration_ms: float | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    cost_usd: float | None = None
    attrs: dict[str, Any] | None = None


@dataclass(slots=True, frozen=True)
class ApprovalRecord:
    """A human decision on a ``hitl`` step."""

    step_id: str
    decision: str  # "approved" or "rejected"
    by: str | None
    comment: str | None
    at_us: int


@dataclass(slots=True, frozen=True)
class InputRecord:
    """Data a human gave a ``user_input`` step."""

    step_id: str
    data: Any
    by: str | None
    at_us: int


@dataclass(slots=True, frozen=True)
class FlowSource:
    """The flow text a run started from, keyed by its hash (written once per hash)."""

    flow_hash: str
    product: str
    flow: str
    product_version: str
    source: str


@dataclass(slots=True)
class Changes:
    """Everything one commit writes besides the run row."""

    steps: dict[int, StepAttempt] = field(default_factory=dict)
    events: list[TraceEvent] = field(default_factory=list)
    approvals: list[ApprovalRecord] = field(default_factory=list)
    inputs: list[InputRecord] = field(default_factory=list)
    flow_source: FlowSource | None = None
    # True when ``steps`` holds every step of the run and replaces the stored latest
    # attempts (a paused run resumed on a changed flow whose steps moved); earlier
    # attempts stay in the attempt history
    replace_steps: bool = False

    def clear(self) -> None:
        """Forget what was committed."""
        self.steps.clear()
        self.events.clear()
        self.approvals.clear()
        self.inputs.clear()
        self.flow_source = None
        self.replace_steps = False


class EncodedEvents(NamedTuple):
    """A commit's trace events as the store writes them (the chunk of ``memory/chunks.py``):
    ``data``, ``metrics`` and ``attrs`` as stored, and the store's name codes (name to code,
    the commit's own included once it is durable; the mapping only grows, and its newest
    names come last)."""

    data: bytes
    metrics: bytes | None
    attrs: str | None
    names: Mapping[str, int]


@dataclass(slots=True, frozen=True)
class Commit:
    """What a hook sees of one commit. Valid during the hook call only: the engine reuses
    ``changes`` afterwards, so a hook that keeps anything copies it. ``encoded`` is the
    commit's events as a store that encodes chunks writes them (None for stores that do
    not, and in ``before_commit`` when a name gets its code inside the transaction)."""

    run: RunRecord
    changes: Changes
    label: str
    sync: bool
    encoded: EncodedEvents | None = None

    @property
    def events(self) -> list[TraceEvent]:
        """The commit's trace events, in ``seq`` order."""
        return self.changes.events


@runtime_checkable
class CommitHook(Protocol):
    """An observer of a store's commits (see the module docstring for the rules)."""

    def before_commit(self, commit: Commit) -> None:
        """Inside the transaction, just before it is made durable; raising aborts it."""
        ...

    def after_commit(self, commit: Commit) -> None:
        """Once the commit is durable; an exception is logged, never raised."""
        ...


class LabelHook:
    """A hook calling ``call(label)`` just before each commit becomes durable (crash points
    name the commit they stop in)."""

    def __init__(self, call: Callable[[str], None]) -> None:
        self.call = call

    def before_commit(self, commit: Commit) -> None:
        """Call with the commit's label."""
        self.call(commit.label)

    def after_commit(self, commit: Commit) -> None:
        """Nothing."""


def call_after_commit(hooks: Sequence[CommitHook], commit: Commit) -> None:
    """Call every hook's ``after_commit`` in order; one that raises is logged and the rest
    still run (the commit is durable, nothing may undo it)."""
    for hook in hooks:
        try:
            hook.after_commit(commit)
        except Exception:
            log.warning(
                "commit hook %r failed after run %s was committed (%s); the run is intact",
                hook,
                commit.run.run_id,
                commit.label,
                exc_info=True,
            )


@dataclass(slots=True, frozen=True)
class StoredApproval:
    """An approval as read back, with its run."""

    run_id: str
    product: str
    flow: str
    approval: ApprovalRecord


@dataclass(slots=True)
class StoredRun:
    """Everything a store holds about one run: the unit of export and import."""

    run: RunRecord
    attempts: list[StepAttempt]
    events: list[TraceEvent]
    approvals: list[ApprovalRecord]
    inputs: list[InputRecord]


@dataclass(slots=True, frozen=True)
class Reservation:
    """A reviewer's lease on a paused run, until ``until_us`` (then free again)."""

    run_id: str
    by: str
    until_us: int


@dataclass(slots=True, frozen=True)
class PendingRun:
    """A run waiting for people or for an executor, as the pending list reads it.

    From the run's state: the ``step`` it waits at, since when (``since_us``, None for
    runs paused before it was recorded), its ``show:`` value as text (a string as it is,
    anything else as JSON) and the name of the ``experiment`` that started it, if any.
    """

    run_id: str
    product: str
    flow: str
    status: str
    created_by: str | None
    created_us: int
    updated_us: int
    step: str | None
    since_us: int | None
    show: str | None
    experiment: str | None
    reservation: Reservation | None


# --------------------------------------------------------------------------- columnar reads


@dataclass(slots=True)
class Coded:
    """A categorical column: ``codes`` (int array, -1 missing) into ``categories``."""

    codes: np.ndarray
    categories: Sequence[str]


@dataclass(slots=True)
class RunTable:
    """Runs as columns (sequences of equal length), newest first."""

    run_id: Sequence[str]
    product: Sequence[str]
    flow: Sequence[str]
    status: Sequence[str]
    created_us: Sequence[int]
    updated_us: Sequence[int]
    created_by: Sequence[str | None]
    waiting_step: Sequence[str | None]
    steps_used: Sequence[int]
    tool_calls: Sequence[int]
    model_calls: Sequence[int]
    tokens_in: Sequence[int]
    tokens_out: Sequence[int]
    cost_usd: Sequence[float]
    flow_hash: Sequence[str]
    product_version: Sequence[str]
    error: Sequence[str | None]
    parent_run_id: Sequence[str | None] = ()
    forked_at: Sequence[str | None] = ()

    @classmethod
    def of(cls, runs: Sequence[RunRecord]) -> RunTable:
        """The columns of run records already in order (the stores that hold records)."""
        return cls(
            run_id=[r.run_id for r in runs],
            product=[r.product for r in runs],
            flow=[r.flow for r in runs],
            status=[r.status for r in runs],
            created_us=[r.created_us for r in runs],
            updated_us=[r.updated_us for r in runs],
            created_by=[r.created_by for r in runs],
            waiting_step=[waiting_step(r.state) for r in runs],
            steps_used=[r.steps_used for r in runs],
            tool_calls=[r.tool_calls for r in runs],
            model_calls=[r.model_calls for r in runs],
            tokens_in=[r.tokens_in for r in runs],
            tokens_out=[r.tokens_out for r in runs],
            cost_usd=[r.cost_usd for r in runs],
            flow_hash=[r.flow_hash for r in runs],
            product_version=[r.product_version for r in runs],
            error=[r.error for r in runs],
            parent_run_id=[r.parent_run_id for r in runs],
            forked_at=[r.forked_at for r in runs],
        )


def waiting_step(state: dict[str, Any] | None) -> str | None:
    """The step a run's state says it is paused at, or None."""
    pending = (state or {}).get("pending")
    if isinstance(pending, dict):
        step = pending.get("step")
        return None if step is None else str(step)
    return None


@dataclass(slots=True)
class TraceTable:
    """Trace events as numpy columns, ordered by run (oldest run first), then ``seq``.

    ``run`` indexes ``run_ids``/``products``/``flows`` (one entry per run present).
    Missing numbers: NaN for ``duration_ms``/``cost_usd``; ``tokens_*_missing`` masks.
    ``attrs`` come dictionary-encoded by blocks of consecutive events: block ``b`` starts
    at event ``attrs_starts[b]`` and ends where the next starts; ``attrs_codes[b]`` indexes
    ``attrs_texts``, distinct JSON arrays holding one value per event of a block (-1: no
    event of the block has attributes). So a reader parses each distinct text once.
    """

    run: np.ndarray
    run_ids: Sequence[str]
    products: Sequence[str]
    flows: Sequence[str]
    seq: np.ndarray
    ts_us: np.ndarray
    event: Coded
    step_id: Coded
    step_type: Coded
    name: Coded
    status: Coded
    duration_ms: np.ndarray
    cost_usd: np.ndarray
    tokens_in: np.ndarray
    tokens_out: np.ndarray
    tokens_in_missing: np.ndarray
    tokens_out_missing: np.ndarray
    attrs_texts: Sequence[str]
    attrs_codes: np.ndarray
    attrs_starts: np.ndarray

    def __len__(self) -> int:
        return len(self.seq)


# --------------------------------------------------------------------------- the protocol


class Store(ExperimentStore, Protocol):
    """Durable run storage (see the module docstring)."""

    hooks: list[CommitHook]
    """Observers of every commit, called in order."""

    location: str
    """Where the store is, for people: a file path, ``memory://``..."""

    def commit(
        self,
        run: RunRecord,
        changes: Changes,
        *,
        expect_version: int | None,
        label: str,
        sync: bool = True,
    ) -> None:
        """Write ``run`` and ``changes`` atomically.

        ``expect_version=None`` inserts a new run (and sets ``run.pk``). Otherwise the
        stored run must still be at ``expect_version`` and is written with
        ``run.version``; if another writer got there first, :class:`VersionConflict` is
        raised and nothing is written. ``sync=False`` marks a commit that only records a
        step's start: the store may leave it to the next commit's sync.
        """
        ...

    def load(self, run_id: str) -> tuple[RunRecord, list[StepAttempt]]:
        """A run and the latest attempt of each of its steps, by ``idx``; raises NotFound."""
        ...

    def attempts(self, run_id: str) -> list[StepAttempt]:
        """Every attempt of every step of a run, by ``idx`` then ``attempt``; raises
        NotFound."""
        ...

    def find_runs(self, *, status: str | None = None) -> list[tuple[str, str | None]]:
        """``(run_id, owner)`` of runs, oldest first, optionally with one status."""
        ...

    def flow_source(self, flow_hash: str) -> str | None:
        """The flow text a run started from, by its hash."""
        ...

    # reads for frames

    def run_table(
        self, *, product: str | None = None, flow: str | None = None, status: str | None = None
    ) -> RunTable:
        """Runs, newest first, optionally filtered."""
        ...

    def trace_table(
        self,
        *,
        run_id: str | None = None,
        product: str | None = None,
        flow: str | None = None,
        status: str | None = None,
        since_us: int | None = None,
    ) -> TraceTable:
        """Trace events of the runs asked for (``since_us``: events at or after it)."""
        ...

    def count_events(self, run_id: str | None = None) -> int:
        """How many trace events the store holds (for one run, or in all)."""
        ...

    def step_attempts(self, run_id: str, *, attempts: bool = False) -> list[StepAttempt]:
        """The latest attempt of each step by ``idx`` (``attempts=True``: every attempt);
        an unknown run has none."""
        ...

    def approvals(
        self, *, product: str | None = None, flow: str | None = None
    ) -> list[StoredApproval]:
        """The approval audit, oldest first."""
        ...

    # export and import primitives

    def read_runs(self, run_ids: Sequence[str] | None = None) -> Iterator[StoredRun]:
        """Everything about each run (all, or ``run_ids`` in that order; an unknown id
        raises NotFound), read from one consistent snapshot."""
        ...

    def flow_sources(self, flow_hashes: Sequence[str] | None = None) -> list[FlowSource]:
        """Stored flow texts (all, or those of ``flow_hashes``)."""
        ...

    def write_runs(
        self,
        runs: Sequence[StoredRun],
        flows: Sequence[FlowSource],
        *,
        on_duplicate: Literal["skip", "error"] = "skip",
    ) -> list[str]:
        """Add whole runs in one transaction (import); returns the ids added. A run whose
        id is already stored is skipped, or (``"error"``) refused with nothing written."""
        ...

    # about the store

    def info(self) -> dict[str, Any]:
        """Where the store is, its kind, schema version, durability settings, integrity
        and run counts by status."""
        ...

    def close(self) -> None:
        """Release connections and resources (idempotent)."""
        ...

    # reviewing (master_sdk/review)

    def pending_runs(
        self,
        *,
        statuses: Sequence[str],
        product: str | None = None,
        flow: str | None = None,
    ) -> list[PendingRun]:
        """Runs in one of ``statuses``, oldest update first, with their reservation (an
        expired one included: the reader decides what is in force). Reads the status
        index and the few columns it needs, in one statement."""
        ...

    def reserve(self, run_id: str, by: str, until_us: int, *, now_us: int) -> Reservation:
        """Lease ``run_id`` to ``by`` until ``until_us``, atomically: granted when nobody
        holds it, the holder's lease has expired (``until_us <= now_us``) or ``by`` holds
        it already (renewed, or released when ``until_us <= now_us``). Returns the lease
        in force afterwards (someone else's when refused; one ending at ``now_us`` when
        released). Raises NotFound for an unknown run."""
        ...

    def reservation(self, run_id: str) -> Reservation | None:
        """The lease stored on a run (possibly expired), or None."""
        ...

    def claim(
        self,
        by: str,
        until_us: int,
        *,
        now_us: int,
        statuses: Sequence[str],
        product: str | None = None,
        flow: str | None = None,
        limit: int = 1,
    ) -> list[Reservation]:
        """Lease to ``by``, until ``until_us``, up to ``limit`` runs in ``statuses`` that no
        lease holds (none, or an expired one), oldest update first, atomically: reviewers
        claiming at once get different runs and none waits for another (PostgreSQL:
        ``FOR NO KEY UPDATE SKIP LOCKED``). A run ``by`` holds already is not claimed again
        (``reserve`` renews it). Returns the leases granted, oldest update first (fewer than
        ``limit`` when fewer are free)."""
        ...

    # retention (memory/retention.py)

    def prune(
        self, *, before_us: int, statuses: Sequence[str], dry_run: bool = False
    ) -> PruneReport:
        """Remove the runs last updated before ``before_us`` whose status is one of
        ``statuses``, with all their rows, in one transaction; a run an experiment holds is
        kept and counted. ``dry_run``: count what would go, write nothing."""
        ...

    # Experiments (named groups of runs with parameters): see memory/experiments.py.
    # Later work adds here, each with its contract tests: vectors (embeddings beside runs).


class VersionConflict(StoreError):
    """The run changed in the store since it was read (compare-and-set lost); nothing of
    the commit was written."""

    def __init__(self, run_id: str, status: str | None, version: int | None) -> None:
        self.run_id = run_id
        self.status = status
        self.version = version
        super().__init__(f"run {run_id} changed in the store (now {status}, version {version})")
