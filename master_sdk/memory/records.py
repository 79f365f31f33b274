"""What the store keeps, as plain records, and the small :class:`Store` protocol.

Nothing outside ``memory/`` depends on SQLite: the engine hands the store a run record
and the changes of one step, and the store commits them in one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from master_sdk.tracing.events import EventRow

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    import pandas as pd

    from master_sdk.memory.transfer import TransferReport


@dataclass(slots=True)
class RunRow:
    """A run's header and resumable state (one row)."""

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


@dataclass(slots=True)
class StepRow:
    """The latest state of one step of a run."""

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
class Changes:
    """Everything one commit writes besides the run row."""

    steps: dict[int, StepRow] = field(default_factory=dict)
    events: list[EventRow] = field(default_factory=list)
    approvals: list[tuple[str, str, str | None, str | None, int]] = field(default_factory=list)
    inputs: list[tuple[str, Any, str | None, int]] = field(default_factory=list)
    flow_source: tuple[str, str, str, str, str] | None = None
    # True when ``steps`` holds every step row of the run and replaces the stored ones
    # (a paused run resumed on a changed flow whose steps moved)
    replace_steps: bool = False

    def clear(self) -> None:
        """Forget what was committed."""
        self.steps.clear()
        self.events.clear()
        self.approvals.clear()
        self.inputs.clear()
        self.flow_source = None
        self.replace_steps = False


class Store(Protocol):
    """Durable run storage. SQLite is the embedded implementation."""

    def commit(
        self,
        run: RunRow,
        changes: Changes,
        *,
        expect_version: int | None,
        label: str,
        sync: bool = True,
    ) -> None:
        """Write ``run`` and ``changes`` atomically.

        ``sync=False`` marks a commit that records only that a step started (no step
        result): the store may leave it to the next commit's sync (it survives a crashed
        process either way).

        ``expect_version=None`` inserts a new run. Otherwise the stored run must still be at
        ``expect_version`` (compare-and-set) and is written with ``run.version``; if another
        writer got there first, :class:`master_sdk.memory.records.VersionConflict` is raised
        and nothing is written.
        """
        ...

    def load(self, run_id: str) -> tuple[RunRow, list[StepRow]]:
        """A run and its steps; raises NotFound."""
        ...

    def find_runs(self, *, status: str | None = None) -> list[tuple[str, str | None]]:
        """``(run_id, owner)`` of runs, optionally with one status."""
        ...

    def flow_source(self, flow_hash: str) -> str | None:
        """The flow text a run started from, by its hash."""
        ...

    def info(self) -> dict[str, Any]:
        """Where the store is, its schema version, durability settings and run counts."""
        ...

    def export_runs(
        self,
        target: Path,
        *,
        run_ids: Sequence[str] | None = None,
        fmt: str | None = None,
        overwrite: bool = False,
    ) -> TransferReport:
        """Write runs (all, or ``run_ids``) to a file a colleague can import."""
        ...

    def import_runs(
        self, source: Path, *, fmt: str | None = None, on_duplicate: str = "skip"
    ) -> TransferReport:
        """Merge the runs of an exported file into this store, in one transaction."""
        ...

    def runs_frame(
        self, *, product: str | None, flow: str | None, status: str | None
    ) -> pd.DataFrame:
        """The run list (see the README for columns)."""
        ...

    def trace_frame(
        self,
        *,
        run_id: str | None = None,
        product: str | None = None,
        flow: str | None = None,
        status: str | None = None,
        since_us: int | None = None,
    ) -> pd.DataFrame:
        """Trace events as a DataFrame."""
        ...

    def count_events(self, run_id: str | None = None) -> int:
        """How many trace events the store holds (for one run, or in all)."""
        ...

    def steps_frame(self, run_id: str) -> pd.DataFrame:
        """One row per step of a run."""
        ...

    def approvals_frame(self, *, product: str | None, flow: str | None) -> pd.DataFrame:
        """The approval audit."""
        ...

    def close(self) -> None:
        """Release the connection."""
        ...


class VersionConflict(Exception):
    """The run changed in the store since it was read (compare-and-set lost)."""

    def __init__(self, run_id: str, status: str | None, version: int | None) -> None:
        self.run_id = run_id
        self.status = status
        self.version = version
        super().__init__(f"run {run_id} changed in the store (now {status}, version {version})")
