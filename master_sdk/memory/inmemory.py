"""A store in this process's memory (``memory://``): for tests, demos and throwaway work.

It keeps exactly what the SQLite store keeps, the same way: every value is serialised to
JSON through the store's ``scrub`` on the way in and decoded on the way out (so nothing
stored shares an object with a caller, and redaction is the same), a commit is atomic and
compare-and-set on the run's version, hooks are called as the protocol says. Nothing
survives the process. Safe from many threads (one lock).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from master_sdk.errors import NotFound, StoreError
from master_sdk.memory.derived import Derived, identity
from master_sdk.memory.encoding import Encoder
from master_sdk.memory.inmemory_experiments import InMemoryExperiments
from master_sdk.memory.retention import PruneReport
from master_sdk.memory.schema import SCHEMA_VERSION
from master_sdk.memory.store import (
    ApprovalRecord,
    Changes,
    Coded,
    Commit,
    CommitHook,
    FlowSource,
    InputRecord,
    PendingRun,
    Reservation,
    RunRecord,
    RunTable,
    StepAttempt,
    StoredApproval,
    StoredRun,
    TraceEvent,
    TraceTable,
    VersionConflict,
    call_after_commit,
)
from master_sdk.tracing.events import EVENTS, STATUSES, STEP_TYPES

Scrub = Callable[[Any], Any]
_NAN = float("nan")


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


@dataclass(slots=True)
class _Stored:
    """One run as kept: JSON texts where the SQLite store keeps JSON texts."""

    run: RunRecord  # inputs/output/state/error hold their stored (JSON) texts
    steps: dict[int, StepAttempt] = field(default_factory=dict)
    attempts: dict[tuple[str, int], StepAttempt] = field(default_factory=dict)
    # one block per commit: its events (attrs None) and their attrs as one JSON array
    blocks: list[tuple[list[TraceEvent], str | None]] = field(default_factory=list)
    approvals: list[ApprovalRecord] = field(default_factory=list)
    inputs: list[InputRecord] = field(default_factory=list)


class InMemoryStore(InMemoryExperiments, Derived):
    """The :class:`~master_sdk.memory.store.Store` protocol in memory (see module
    docstring).

    Args:
        scrub: redaction applied to every value before it is kept.
        hooks: observers of every commit.
    """

    kind = "memory"
    location = "memory://"

    def __init__(self, *, scrub: Scrub | None = None, hooks: Sequence[CommitHook] = ()) -> None:
        self.scrub: Scrub = scrub or identity
        self.hooks: list[CommitHook] = list(hooks)
        self._enc = Encoder(self.scrub)
        self._lock = threading.RLock()
        self._runs: dict[str, _Stored] = {}
        self._flows: dict[str, FlowSource] = {}
        self._next_pk = 1
        self._closed = False
        self._reservations: dict[str, Reservation] = {}

    def _check(self) -> None:
        if self._closed:
            raise StoreError("memory://: the store was closed; open the workbench again")

    # ------------------------------------------------------------------ writing

    def _kept_run(self, run: RunRecord) -> RunRecord:
        enc = self._enc
        return replace(
            run,
            inputs=enc.dumps(run.inputs),
            output=enc.dumps(run.output),
            state=enc.dumps(run.state),  # type: ignore[arg-type]  # kept as its JSON text
            error=enc.text(run.error),
        )

    def _kept_step(self, step: StepAttempt) -> StepAttempt:
        return replace(step, output=self._enc.dumps(step.output), error=self._enc.text(step.error))

    def _block(self, events: Sequence[TraceEvent]) -> tuple[list[TraceEvent], str | None]:
        for e in events:
            if (
                e.event not in EVENTS
                or (e.step_type is not None and e.step_type not in STEP_TYPES)
                or (e.status is not None and e.status not in STATUSES)
            ):
                raise StoreError(
                    f"trace event {e.event!r} ({e.step_type}, {e.status}) is not in the trace "
                    "vocabulary (tracing/events.py); nothing was written"
                )
        kept = [
            replace(e, step_id=self._name(e.step_id), name=self._name(e.name), attrs=None)
            for e in events
        ]
        attrs = None
        if any(e.attrs is not None for e in events):
            attrs = "[" + ",".join(self._enc.dumps(e.attrs) or "null" for e in events) + "]"
        return kept, attrs

    def _name(self, name: str | None) -> str | None:
        return None if name is None else self.scrub(name)

    def commit(
        self,
        run: RunRecord,
        changes: Changes,
        *,
        expect_version: int | None,
        label: str,
        sync: bool = True,
    ) -> None:
        """Write ``run`` and ``changes`` atomically (see the protocol)."""
        kept_run = self._kept_run(run)
        steps = {i: self._kept_step(s) for i, s in changes.steps.items()}
        block = self._block(changes.events) if changes.events else None
        approvals = [replace(a, comment=self._enc.text(a.comment)) for a in changes.approvals]
        inputs = [replace(i, data=self._enc.dumps(i.data)) for i in changes.inputs]
        flow = changes.flow_source
        done = Commit(run, changes, label, sync)
        with self._lock:
            self._check()
            if expect_version is None:
                if run.run_id in self._runs:
                    raise StoreError(
                        f"memory://: run {run.run_id} exists already; nothing was written"
                    )
                stored = _Stored(run=kept_run)
                pk = self._next_pk
            else:
                found = self._runs.get(run.run_id)
                if found is None or found.run.version != expect_version:
                    raise VersionConflict(
                        run.run_id,
                        None if found is None else found.run.status,
                        None if found is None else found.run.version,
                    )
                stored = _Stored(
                    run=kept_run,
                    steps=dict(found.steps),
                    attempts=dict(found.attempts),
                    blocks=list(found.blocks),
                    approvals=list(found.approvals),
                    inputs=list(found.inputs),
                )
                # what the start wrote and no later commit changes (as the SQLite store)
                stored.run = replace(
                    kept_run,
                    inputs=found.run.inputs,
                    created_by=found.run.created_by,
                    created_us=found.run.created_us,
                    product=found.run.product,
                    flow=found.run.flow,
                )
                pk = found.run.pk or 0
            stored.run.pk = pk
            if changes.replace_steps:
                stored.steps.clear()
            for idx, step in steps.items():
                stored.steps[idx] = step
                stored.attempts[(step.step_id, step.attempt)] = step
            if block is not None:
                stored.blocks.append(block)
            stored.approvals.extend(approvals)
            stored.inputs.extend(inputs)
            for hook in self.hooks:
                hook.before_commit(done)
            self._runs[run.run_id] = stored
            if expect_version is None:
                self._next_pk += 1
                run.pk = pk
            if flow is not None and flow.flow_hash not in self._flows:
                self._flows[flow.flow_hash] = replace(flow, source=self.scrub(flow.source))
        call_after_commit(self.hooks, done)

    def write_runs(
        self,
        runs: Sequence[StoredRun],
        flows: Sequence[FlowSource],
        *,
        on_duplicate: Literal["skip", "error"] = "skip",
    ) -> list[str]:
        """Add whole runs at once; returns the ids added."""
        with self._lock:
            self._check()
            present = sorted(r.run.run_id for r in runs if r.run.run_id in self._runs)
            if present and on_duplicate == "error":
                raise StoreError(
                    f"{len(present)} run(s) are already in memory://: {', '.join(present)}; "
                    "nothing was written"
                )
            prepared = []
            for r in runs:
                if r.run.run_id in present:
                    continue
                kept = _Stored(run=self._kept_run(r.run))
                for a in r.attempts:
                    step = self._kept_step(a)
                    kept.attempts[(a.step_id, a.attempt)] = step
                    latest = kept.steps.get(a.idx)
                    if latest is None or a.attempt >= latest.attempt:
                        kept.steps[a.idx] = step
                if r.events:
                    kept.blocks.append(self._block(r.events))
                kept.approvals = [
                    replace(a, comment=self._enc.text(a.comment)) for a in r.approvals
                ]
                kept.inputs = [replace(i, data=self._enc.dumps(i.data)) for i in r.inputs]
                prepared.append(kept)
            for kept in prepared:
                kept.run.pk = self._next_pk
                self._next_pk += 1
                self._runs[kept.run.run_id] = kept
            for f in flows:
                self._flows.setdefault(f.flow_hash, replace(f, source=self.scrub(f.source)))
            return [k.run.run_id for k in prepared]

    # ------------------------------------------------------------------ reading

    def _get(self, run_id: str) -> _Stored:
        found = self._runs.get(run_id)
        if found is None:
            raise NotFound(f"no run '{run_id}' in memory://")
        return found

    @staticmethod
    def _run(kept: RunRecord) -> RunRecord:
        return replace(
            kept,
            inputs=_loads(kept.inputs),
            output=_loads(kept.output),
            state=_loads(kept.state) or {},  # type: ignore[arg-type]  # kept as JSON text
        )

    @staticmethod
    def _step(kept: StepAttempt) -> StepAttempt:
        return replace(kept, output=_loads(kept.output))

    def load(self, run_id: str) -> tuple[RunRecord, list[StepAttempt]]:
        """A run and the latest attempt of each of its steps."""
        with self._lock:
            self._check()
            stored = self._get(run_id)
            steps = [self._step(stored.steps[i]) for i in sorted(stored.steps)]
            return self._run(stored.run), steps

    def attempts(self, run_id: str) -> list[StepAttempt]:
        """Every attempt of every step of a run."""
        with self._lock:
            self._check()
            return self._attempts(self._get(run_id))

    def _attempts(self, stored: _Stored) -> list[StepAttempt]:
        ordered = sorted(stored.attempts.values(), key=lambda a: (a.idx, a.attempt, a.step_id))
        return [self._step(a) for a in ordered]

    def step_attempts(self, run_id: str, *, attempts: bool = False) -> list[StepAttempt]:
        """The latest attempt of each step (``attempts=True``: every attempt)."""
        with self._lock:
            self._check()
            stored = self._runs.get(run_id)
            if stored is None:
                return []
            if attempts:
                return self._attempts(stored)
            return [self._step(stored.steps[i]) for i in sorted(stored.steps)]

    def find_runs(self, *, status: str | None = None) -> list[tuple[str, str | None]]:
        """``(run_id, owner)`` of runs, oldest first."""
        with self._lock:
            self._check()
            return [
                (s.run.run_id, s.run.owner)
                for s in self._ordered()
                if status is None or s.run.status == status
            ]

    def _ordered(self) -> list[_Stored]:
        return sorted(self._runs.values(), key=lambda s: s.run.pk or 0)

    def flow_source(self, flow_hash: str) -> str | None:
        """The flow text a run started from, by its hash."""
        with self._lock:
            self._check()
            flow = self._flows.get(flow_hash)
            return None if flow is None else flow.source

    def flow_sources(self, flow_hashes: Sequence[str] | None = None) -> list[FlowSource]:
        """Stored flow texts (all, or those of ``flow_hashes``)."""
        with self._lock:
            self._check()
            wanted = None if flow_hashes is None else set(flow_hashes)
            return [self._flows[h] for h in sorted(self._flows) if wanted is None or h in wanted]

    def _select(
        self, product: str | None, flow: str | None, status: str | None, run_id: str | None = None
    ) -> list[_Stored]:
        return [
            s
            for s in self._ordered()
            if (product is None or s.run.product == product)
            and (flow is None or s.run.flow == flow)
            and (status is None or s.run.status == status)
            and (run_id is None or s.run.run_id == run_id)
        ]

    def run_table(
        self, *, product: str | None = None, flow: str | None = None, status: str | None = None
    ) -> RunTable:
        """Runs, newest first."""
        with self._lock:
            self._check()
            runs = [self._run(s.run) for s in reversed(self._select(product, flow, status))]
        return RunTable.of(runs)

    def trace_table(
        self,
        *,
        run_id: str | None = None,
        product: str | None = None,
        flow: str | None = None,
        status: str | None = None,
        since_us: int | None = None,
    ) -> TraceTable:
        """Trace events of the runs asked for, ordered by run then ``seq``."""
        with self._lock:
            self._check()
            chosen = [
                (s.run.run_id, s.run.product, s.run.flow, list(s.blocks))
                for s in self._select(product, flow, status, run_id)
            ]
        return _trace_table(chosen, since_us)

    def count_events(self, run_id: str | None = None) -> int:
        """How many trace events the store holds (for one run, or in all)."""
        with self._lock:
            self._check()
            runs = self._runs.values() if run_id is None else self._select(None, None, None, run_id)
            return sum(len(events) for s in runs for events, _ in s.blocks)

    def approvals(
        self, *, product: str | None = None, flow: str | None = None
    ) -> list[StoredApproval]:
        """The approval audit, oldest first."""
        with self._lock:
            self._check()
            rows = [
                StoredApproval(s.run.run_id, s.run.product, s.run.flow, a)
                for s in self._select(product, flow, None)
                for a in s.approvals
            ]
        return sorted(rows, key=lambda r: r.approval.at_us)

    def read_runs(self, run_ids: Sequence[str] | None = None) -> Iterator[StoredRun]:
        """Everything about each run, from one consistent moment."""
        with self._lock:
            self._check()
            ids = [s.run.run_id for s in self._ordered()] if run_ids is None else list(run_ids)
            out = []
            for run_id in ids:
                stored = self._get(run_id)
                out.append(
                    StoredRun(
                        run=self._run(stored.run),
                        attempts=self._attempts(stored),
                        events=[
                            replace(e, attrs=a)
                            for events, text in stored.blocks
                            for e, a in zip(
                                events, _loads(text) or [None] * len(events), strict=True
                            )
                        ],
                        approvals=list(stored.approvals),
                        inputs=[replace(i, data=_loads(i.data)) for i in stored.inputs],
                    )
                )
        return iter(out)

    # ------------------------------------------------------------------ about the store

    def info(self) -> dict[str, Any]:
        """Kind, schema version and run counts by status (durability settings do not
        apply: nothing survives the process)."""
        with self._lock:
            self._check()
            counts: dict[str, int] = {}
            for s in self._runs.values():
                counts[s.run.status] = counts.get(s.run.status, 0) + 1
        return {
            "kind": self.kind,
            "path": "memory://",
            "schema_version": SCHEMA_VERSION,
            "journal_mode": "none (in memory)",
            "synchronous": "none (nothing survives the process)",
            "busy_timeout_ms": 0,
            "integrity": "ok",
            "runs": sum(counts.values()),
            "runs_by_status": dict(sorted(counts.items())),
        }

    # ------------------------------------------------------------------ reviewing

    def pending_runs(
        self,
        *,
        statuses: Sequence[str],
        product: str | None = None,
        flow: str | None = None,
    ) -> list[PendingRun]:
        """Runs in ``statuses``, oldest update first, with their reservations."""
        wanted = set(statuses)
        with self._lock:
            self._check()
            found = [
                s.run
                for s in self._ordered()
                if s.run.status in wanted
                and (product is None or s.run.product == product)
                and (flow is None or s.run.flow == flow)
            ]
            out = []
            for run in sorted(found, key=lambda r: (r.updated_us, r.pk or 0)):
                state = _loads(run.state) or {}  # type: ignore[arg-type]  # kept as JSON text
                pending = state.get("pending")
                pending = pending if isinstance(pending, dict) else {}
                experiment = (state.get("experiment") or {}).get("name")
                show = pending.get("show")
                since = pending.get("since_us")
                out.append(
                    PendingRun(
                        run.run_id,
                        run.product,
                        run.flow,
                        run.status,
                        run.created_by,
                        run.created_us,
                        run.updated_us,
                        None if pending.get("step") is None else str(pending["step"]),
                        since if isinstance(since, int) else None,
                        _show_text(show),
                        experiment if isinstance(experiment, str) else None,
                        self._reservations.get(run.run_id),
                    )
                )
            return out

    def reserve(self, run_id: str, by: str, until_us: int, *, now_us: int) -> Reservation:
        """Grant, renew or release a lease atomically (under the store's lock)."""
        with self._lock:
            self._check()
            self._get(run_id)
            held = self._reservations.get(run_id)
            if held is None or held.by == by or held.until_us <= now_us:
                held = Reservation(run_id, by, max(until_us, now_us))
                self._reservations[run_id] = held
            return held

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
        """Lease up to ``limit`` free runs to ``by`` (under the store's lock)."""
        with self._lock:
            self._check()
            candidates = sorted(
                (
                    s.run
                    for s in self._runs.values()
                    if s.run.status in statuses
                    and (product is None or s.run.product == product)
                    and (flow is None or s.run.flow == flow)
                ),
                key=lambda r: (r.updated_us, r.pk or 0),
            )
            granted: list[Reservation] = []
            for run in candidates:
                if len(granted) >= limit:
                    break
                held = self._reservations.get(run.run_id)
                if held is None or held.until_us <= now_us:
                    lease = Reservation(run.run_id, by, max(until_us, now_us))
                    self._reservations[run.run_id] = lease
                    granted.append(lease)
            return granted

    def reservation(self, run_id: str) -> Reservation | None:
        """The lease stored on a run (possibly expired), or None."""
        with self._lock:
            self._check()
            return self._reservations.get(run_id)

    def prune(
        self, *, before_us: int, statuses: Sequence[str], dry_run: bool = False
    ) -> PruneReport:
        """Remove old runs (see ``memory/retention.py``)."""
        from master_sdk.memory.retention import report

        with self._lock:
            self._check()
            held = {
                case.run_id
                for kept in self._experiments().values()
                for case in kept.cases.values()
                if case.run_id is not None
            }
            matching = [
                s
                for s in self._runs.values()
                if s.run.updated_us < before_us and s.run.status in statuses
            ]
            doomed = [s for s in matching if s.run.run_id not in held]
            by_status: dict[str, int] = {}
            for s in doomed:
                by_status[s.run.status] = by_status.get(s.run.status, 0) + 1
            if not dry_run:
                for s in doomed:
                    del self._runs[s.run.run_id]
                    self._reservations.pop(s.run.run_id, None)
            return report(
                dry_run=dry_run,
                before_us=before_us,
                statuses=statuses,
                by_status=by_status,
                attempts=sum(len(s.attempts) for s in doomed),
                events=sum(len(events) for s in doomed for events, _ in s.blocks),
                approvals=sum(len(s.approvals) for s in doomed),
                inputs=sum(len(s.inputs) for s in doomed),
                kept=len(matching) - len(doomed),
            )

    def close(self) -> None:
        """Forget nothing, but refuse further use (idempotent)."""
        with self._lock:
            self._closed = True

    def __repr__(self) -> str:
        return f"InMemoryStore({len(self._runs)} runs)"


def _show_text(show: Any) -> str | None:
    """A ``show:`` value as the pending list holds it (as SQLite's ``json_extract`` does)."""
    if show is None or isinstance(show, str):
        return show
    return json.dumps(show, ensure_ascii=False, separators=(",", ":"))


def _trace_table(
    runs: list[tuple[str, str, str, list[tuple[list[TraceEvent], str | None]]]],
    since_us: int | None,
) -> TraceTable:
    events: list[TraceEvent] = []
    run_of: list[int] = []
    texts: dict[str, int] = {}
    codes: list[int] = []
    starts: list[int] = []
    present: list[tuple[str, str, str]] = []
    for run_id, product, flow, blocks in runs:
        index = len(present)
        kept_any = False
        for block, text in blocks:
            values = _loads(text)
            kept = [
                (e, None if values is None else values[i])
                for i, e in enumerate(block)
                if since_us is None or e.ts_us >= since_us
            ]
            if not kept:
                continue
            kept_any = True
            starts.append(len(events))
            if text is None:
                codes.append(-1)
            else:
                part = text if len(kept) == len(block) else json.dumps([a for _, a in kept])
                codes.append(texts.setdefault(part, len(texts)))
            events.extend(e for e, _ in kept)
            run_of.extend([index] * len(kept))
        if kept_any:
            present.append((run_id, product, flow))
    events_sorted = events  # blocks are appended in commit order: seq order within a run
    step_ids = sorted({e.step_id for e in events_sorted if e.step_id is not None})
    names = sorted({e.name for e in events_sorted if e.name is not None})

    def coded(values: list[str | None], categories: Sequence[str]) -> Coded:
        lookup = {c: i for i, c in enumerate(categories)}
        return Coded(
            np.asarray([-1 if v is None else lookup.get(v, -1) for v in values], dtype="int32"),
            tuple(categories),
        )

    def numbers(values: list[float | None]) -> np.ndarray:
        return np.asarray([_NAN if v is None else v for v in values], dtype="float64")

    def ints(values: list[int | None]) -> tuple[np.ndarray, np.ndarray]:
        return (
            np.asarray([0 if v is None else v for v in values], dtype="int64"),
            np.asarray([v is None for v in values], dtype=bool),
        )

    tokens_in, tokens_in_missing = ints([e.tokens_in for e in events_sorted])
    tokens_out, tokens_out_missing = ints([e.tokens_out for e in events_sorted])
    return TraceTable(
        run=np.asarray(run_of, dtype="int32"),
        run_ids=[p[0] for p in present],
        products=[p[1] for p in present],
        flows=[p[2] for p in present],
        seq=np.asarray([e.seq for e in events_sorted], dtype="int64"),
        ts_us=np.asarray([e.ts_us for e in events_sorted], dtype="int64"),
        event=coded([e.event for e in events_sorted], EVENTS),
        step_id=coded([e.step_id for e in events_sorted], step_ids),
        step_type=coded([e.step_type for e in events_sorted], STEP_TYPES),
        name=coded([e.name for e in events_sorted], names),
        status=coded([e.status for e in events_sorted], STATUSES),
        duration_ms=numbers([e.duration_ms for e in events_sorted]),
        cost_usd=numbers([e.cost_usd for e in events_sorted]),
        tokens_in=tokens_in,
        tokens_out=tokens_out,
        tokens_in_missing=tokens_in_missing,
        tokens_out_missing=tokens_out_missing,
        attrs_texts=list(texts),
        attrs_codes=np.asarray(codes, dtype="int32"),
        attrs_starts=np.asarray(starts, dtype="int64"),
    )
