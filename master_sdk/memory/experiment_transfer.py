"""Experiments in exports, imports and copies of a store (see :mod:`.transfer`).

An experiment travels with its header (name, flow, parameters, status) and every case: the
row as given, the case key and index, the run that ran it, its scores and its own error.
The runs themselves travel as runs, each carrying its experiment and case key in its own
state, so an imported store answers ``wb.experiments()``, ``wb.experiment(name).results``
and ``wb.compare`` as the exporting one did.

An export holds an experiment when it holds at least one of its runs (all experiments
when every run is exported). An import adds an experiment whose name the store does not
hold yet, after the runs; one it holds already is left as it is and reported skipped. An
experiment exported while it was running is imported ``interrupted``: nothing runs it on
the importing side until ``resume()``. Every value passes through the redaction given
(the export's, then the importing store's); a malformed entry names its line and field.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from master_sdk.errors import StoreError
from master_sdk.memory.experiments import (
    CaseRecord,
    ExperimentExists,
    ExperimentRecord,
    ExperimentStore,
)

__all__ = [
    "Exported",
    "experiment_line",
    "parse_experiment",
    "read_experiments",
    "write_experiments",
]

Redact = Callable[[Any], Any]
Exported = tuple[ExperimentRecord, list[CaseRecord]]

EXPERIMENT_FIELDS = (
    "name", "ref", "flow_hash", "product_version", "status", "created_us", "updated_us",
    "created_by", "params", "error",
)  # fmt: skip
CASE_FIELDS = ("case_key", "idx", "row", "run_id", "scores", "error", "invalid")


def read_experiments(
    store: ExperimentStore, run_ids: Iterable[str] | None, clean: Redact
) -> list[Exported]:
    """The experiments to export with ``run_ids`` (None: every run), oldest first, each
    with all its cases, redacted with ``clean``."""
    wanted = set(run_ids) if run_ids is not None else None
    out: list[Exported] = []
    for record in reversed(store.experiments()):
        cases = [
            CaseRecord(
                c.case_key,
                c.idx,
                _value(c.row, clean) or {},
                c.run_id,
                _value(c.scores, clean),
                _text(c.case_error, clean),
                c.invalid,
            )
            for c in store.experiment_cases(record.name)
        ]
        if wanted is not None and not any(c.run_id in wanted for c in cases):
            continue
        header = ExperimentRecord(
            name=record.name,
            ref=record.ref,
            flow_hash=record.flow_hash,
            product_version=record.product_version,
            status=record.status,
            created_us=record.created_us,
            updated_us=record.updated_us,
            created_by=record.created_by,
            params=_value(record.params, clean),
            error=_text(record.error, clean),
        )
        out.append((header, cases))
    return out


def experiment_line(record: ExperimentRecord, cases: Sequence[CaseRecord]) -> dict[str, Any]:
    """The JSON Lines record of one experiment (``kind`` added by the writer)."""
    return {
        "experiment": {f: getattr(record, f) for f in EXPERIMENT_FIELDS},
        "cases": [{f: getattr(c, f) for f in CASE_FIELDS} for c in cases],
    }


def parse_experiment(record: dict[str, Any], where: str, scrub: Redact) -> Exported:
    """An experiment line of an export, validated (``where`` names the file and line)
    and redacted with ``scrub``.

    Raises:
        StoreError: a field is missing or of the wrong type (every such field named).
    """
    head = record.get("experiment")
    cases = record.get("cases")
    if not isinstance(head, dict) or not isinstance(cases, list):
        raise StoreError(f"{where}: an experiment record needs an 'experiment' object and 'cases'")
    problems: list[str] = []
    _check(head, _HEADER_TYPES, "experiment", problems)
    for number, case in enumerate(cases, start=1):
        if not isinstance(case, dict):
            problems.append(f"cases[{number}] is not an object")
            continue
        _check(case, _CASE_TYPES, f"cases[{number}]", problems)
    if problems:
        raise StoreError(f"{where}: invalid experiment: " + "; ".join(problems))
    header = ExperimentRecord(
        name=head["name"],
        ref=head["ref"],
        flow_hash=head["flow_hash"],
        product_version=head["product_version"],
        status=head["status"],
        created_us=head["created_us"],
        updated_us=head["updated_us"],
        created_by=head.get("created_by"),
        params=_value(head.get("params"), scrub),
        error=_text(head.get("error"), scrub),
    )
    rows = [
        CaseRecord(
            c["case_key"],
            c["idx"],
            _value(c["row"], scrub) or {},
            c.get("run_id"),
            _value(c.get("scores"), scrub),
            _text(c.get("error"), scrub),
            bool(c.get("invalid", False)),
        )
        for c in cases
    ]
    return header, rows


def write_experiments(
    store: ExperimentStore, experiments: Sequence[Exported]
) -> tuple[list[str], list[str]]:
    """Add each experiment the store does not hold yet; returns (added, skipped) names.
    An experiment that was running where it came from is added ``interrupted``."""
    added: list[str] = []
    skipped: list[str] = []
    for record, cases in experiments:
        if record.status == "running":
            record.status = "interrupted"
            record.error = record.error or "exported while running; resume() continues it"
        try:
            store.create_experiment(record, cases)
        except ExperimentExists:
            skipped.append(record.name)
            continue
        added.append(record.name)
    return added, skipped


_Types = dict[str, tuple[tuple[type, ...], bool]]  # field -> (types, required)
_HEADER_TYPES: _Types = {
    "name": ((str,), True),
    "ref": ((str,), True),
    "flow_hash": ((str,), True),
    "product_version": ((str,), True),
    "status": ((str,), True),
    "created_us": ((int,), True),
    "updated_us": ((int,), True),
    "created_by": ((str, type(None)), False),
    "params": ((dict, type(None)), False),
    "error": ((str, type(None)), False),
}
_CASE_TYPES: _Types = {
    "case_key": ((str,), True),
    "idx": ((int,), True),
    "row": ((dict,), True),
    "run_id": ((str, type(None)), False),
    "scores": ((dict, type(None)), False),
    "error": ((str, type(None)), False),
    "invalid": ((bool,), False),
}


def _check(record: dict[str, Any], types: _Types, what: str, problems: list[str]) -> None:
    for name, (allowed, required) in types.items():
        if name not in record:
            if required:
                problems.append(f"{what}.{name} is missing")
            continue
        value = record[name]
        wrong = isinstance(value, bool) and bool not in allowed
        if wrong or not isinstance(value, allowed):
            kinds = " or ".join("null" if t is type(None) else t.__name__ for t in allowed)
            problems.append(f"{what}.{name} must be {kinds}, not {type(value).__name__}")
    if "name" in types and isinstance(record.get("name"), str) and not record["name"].strip():
        problems.append(f"{what}.name is empty")


def _value(value: Any, clean: Redact) -> Any:
    return None if value is None else clean(value)


def _text(value: str | None, clean: Redact) -> str | None:
    return clean(value) if value else value
