"""Experiment persistence: the records a store speaks about experiments, and the protocol.

What a store keeps (SQLite: two tables beside the runs, schema version 4):

* ``experiments``: one row per experiment, ``name`` unique per store, with the flow it ran
  (``ref``, ``flow_hash``, ``product_version``), its parameters and its status.
* ``experiment_cases``: one row per case, keyed ``(experiment, case_key)``: the row as
  given (JSON: inputs and every other column, for scorers and for ``resume()`` after a
  restart), the run that ran it, its scores and any error of its own (an invalid row, a
  scorer that raised).

Every case's run also carries its experiment and case key in its own state, written in
the run's first commit; :meth:`ExperimentStore.tagged_runs` reads them back, so a run
whose link row was not yet written when the process died is found, never run twice.

Every :class:`~master_sdk.memory.store.Store` implements :class:`ExperimentStore`
(``memory/sqlite/experiments.py``, ``memory/inmemory_experiments.py``); the contract suite
runs on each.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from master_sdk.errors import MasterError

SCHEMA = """
CREATE TABLE experiments (
    pk INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    ref TEXT NOT NULL,
    flow_hash TEXT NOT NULL,
    product_version TEXT NOT NULL,
    status TEXT NOT NULL,
    created_us INTEGER NOT NULL,
    updated_us INTEGER NOT NULL,
    created_by TEXT,
    params TEXT,
    error TEXT
);
CREATE TABLE experiment_cases (
    experiment_pk INTEGER NOT NULL,
    case_key TEXT NOT NULL,
    idx INTEGER NOT NULL,
    invalid INTEGER NOT NULL DEFAULT 0,
    row TEXT NOT NULL,
    run_id TEXT,
    scores TEXT,
    error TEXT,
    PRIMARY KEY (experiment_pk, case_key)
) WITHOUT ROWID;
"""


class ExperimentExists(MasterError):
    """An experiment of that name is already stored (names are unique per store)."""


@dataclass(slots=True)
class ExperimentRecord:
    """One experiment's header."""

    name: str
    ref: str
    flow_hash: str
    product_version: str
    status: str
    created_us: int
    updated_us: int
    created_by: str | None = None
    params: dict[str, Any] | None = None
    error: str | None = None
    cases: int = 0


@dataclass(slots=True)
class CaseRecord:
    """One case of an experiment as stored (``row``: every column as given)."""

    case_key: str
    idx: int
    row: dict[str, Any]
    run_id: str | None = None
    scores: dict[str, Any] | None = None
    error: str | None = None
    invalid: bool = False


@dataclass(slots=True)
class CaseUpdate:
    """What became known about a case: its run, its scores, its own error."""

    case_key: str
    run_id: str | None = None
    scores: dict[str, Any] | None = None
    error: str | None = None
    set_error: bool = False


@dataclass(slots=True)
class CaseRun:
    """A case joined with its run (None fields: no run yet)."""

    case_key: str
    idx: int
    invalid: bool
    row: dict[str, Any]
    scores: dict[str, Any] | None
    case_error: str | None
    run_id: str | None
    status: str | None
    output: Any
    tokens_in: int | None
    tokens_out: int | None
    cost_usd: float | None
    created_us: int | None
    updated_us: int | None
    run_error: str | None
    blocked_rule: str | None = None


class ExperimentStore(Protocol):
    """What every store keeps about experiments (part of the ``Store`` protocol).

    Names are unique per store. Writes are atomic; every error is a ``MasterError``.
    """

    def create_experiment(self, record: ExperimentRecord, cases: Sequence[CaseRecord]) -> None:
        """Store a new experiment and its cases in one transaction.

        Raises:
            ExperimentExists: the name is taken (nothing written).
        """
        ...

    def get_experiment(self, name: str) -> ExperimentRecord:
        """One experiment by name (``cases`` counted); raises NotFound."""
        ...

    def experiments(self) -> list[ExperimentRecord]:
        """Every experiment, newest first."""
        ...

    def set_experiment_status(
        self,
        name: str,
        status: str,
        *,
        error: str | None,
        at_us: int,
        params: dict[str, Any] | None = None,
    ) -> None:
        """Record an experiment's status, why it stopped, and (if given) new parameters."""
        ...

    def update_cases(self, name: str, updates: Sequence[CaseUpdate]) -> None:
        """Write what became known about cases (run, scores, error), in one transaction."""
        ...

    def claim_case(
        self, name: str, case_key: str, run_id: str, *, expected: str | None = None
    ) -> str | None:
        """Link ``run_id`` to a case only if the case's link is still ``expected`` (None:
        no run yet), atomically: of two workers claiming one case, exactly one wins.
        Returns the case's run id afterwards (``run_id`` when the claim was granted, the
        winner's otherwise; None for an unknown case key).

        Raises:
            NotFound: no experiment of that name.
        """
        ...

    def experiment_cases(self, name: str, *, rows: bool = True, raw: bool = False) -> list[CaseRun]:
        """Every case joined with its run, in table order. ``rows=False`` leaves ``row``
        empty; ``raw=True`` leaves ``row``, ``scores`` and ``output`` as stored JSON text."""
        ...

    def case_statuses(self, name: str) -> dict[str | None, int]:
        """How many cases have each run status (``None``: no run)."""
        ...

    def tagged_runs(self, name: str) -> dict[str, str]:
        """``case_key -> run_id`` of runs tagged with the experiment in their own state
        (the newest run of a case when it has several)."""
        ...


def experiment_not_found(name: str) -> Exception:
    """The NotFound for an unknown experiment name."""
    from master_sdk.errors import NotFound

    return NotFound(f"no experiment named '{name}'; wb.experiments() lists them")


def experiment_exists(name: str) -> ExperimentExists:
    """The error for a name already taken."""
    return ExperimentExists(
        f"an experiment named '{name}' is already stored; choose another name, "
        f"or reopen it with wb.experiment({name!r}) and resume() it"
    )
