"""Cases: the rows of an experiment, their stable keys, and their admission.

A case is one row of the table given to ``wb.evaluate`` (a DataFrame or a list of dicts).
Columns named in the flow's ``inputs`` schema become the run's inputs; every column,
those included, stays with the case for scorers (``expected_label``...). A row is
admitted exactly as ``wb.run`` admits inputs (size, depth, JSON Schema); a row that fails
is reported with every failing field and never stops the others.

A case's key is stable across runs of the same table, so two experiments pair up and a
resumed one knows what it already ran: the ``case_key`` column, else the ``id`` column,
else a hash of the row.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from master_sdk.errors import FieldError, InputInvalid, MasterError

if TYPE_CHECKING:
    from master_sdk.products.compiler import CompiledFlow

KEY_COLUMNS = ("case_key", "id")


class CasesInvalid(MasterError):
    """The case table as a whole cannot be used (duplicate keys, not a table)."""


@dataclass(frozen=True, slots=True)
class Case:
    """One admitted row: ``inputs`` for the run, ``row`` (every column) for scorers."""

    index: int
    key: str
    row: dict[str, Any]
    inputs: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Rejected:
    """A row that failed admission, with every failing field."""

    index: int
    key: str
    row: dict[str, Any]
    errors: tuple[FieldError, ...]

    @property
    def message(self) -> str:
        """One line naming each failing field."""
        listed = "; ".join(f"{e.path or '(row)'}: {e.message}" for e in self.errors)
        return f"case {self.key} (row {self.index}) is invalid: {listed}"


def plain(value: Any) -> Any:
    """A JSON-able Python value from what a DataFrame cell holds (NaN and NaT -> None)."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item) and getattr(value, "ndim", 1) == 0:
        return plain(item())
    tolist = getattr(value, "tolist", None)  # numpy arrays
    if callable(tolist):
        return plain(tolist())
    isoformat = getattr(value, "isoformat", None)  # timestamps
    if callable(isoformat):
        try:
            missing = value != value  # NaT is not equal to itself
        except TypeError:
            missing = False
        return None if missing is True else isoformat()
    return str(value)


def rows_of(cases: Any) -> list[dict[str, Any]]:
    """The rows of a DataFrame or an iterable of mappings, as plain dicts."""
    to_dict = getattr(cases, "to_dict", None)
    if callable(to_dict) and hasattr(cases, "columns"):
        records = to_dict(orient="records")
        return [{str(k): plain(v) for k, v in r.items()} for r in records]
    if isinstance(cases, (Mapping, str | bytes)):
        raise CasesInvalid(
            "cases must be a DataFrame or a list of dicts (one per case), "
            f"not a {type(cases).__name__}"
        )
    rows: list[dict[str, Any]] = []
    for index, row in enumerate(cases if isinstance(cases, Iterable) else ()):
        if not isinstance(row, Mapping):
            raise CasesInvalid(f"case {index} is a {type(row).__name__}, not a dict of columns")
        rows.append({str(k): plain(v) for k, v in row.items()})
    return rows


def row_hash(row: Mapping[str, Any]) -> str:
    """A short stable hash of a row's columns and values."""
    text = json.dumps(row, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def case_keys(rows: list[dict[str, Any]]) -> list[str]:
    """One key per row (see the module docstring).

    Raises:
        CasesInvalid: two rows give the same key in a ``case_key``/``id`` column.
    """
    column = next((c for c in KEY_COLUMNS if rows and all(c in r for r in rows)), None)
    keys: list[str] = []
    seen: dict[str, int] = {}
    duplicates: list[str] = []
    for index, row in enumerate(rows):
        key = str(row[column]) if column is not None else row_hash(row)
        if key in seen:
            if column is not None:
                duplicates.append(f"{key!r} (rows {seen[key]} and {index})")
                continue
            # identical rows: each is its own case, keyed by its occurrence
            n = 2
            while f"{key}~{n}" in seen:
                n += 1
            key = f"{key}~{n}"
        seen[key] = index
        keys.append(key)
    if duplicates:
        raise CasesInvalid(
            f"column '{column}' must be unique per case; repeated: {', '.join(duplicates[:5])}"
            + (f" and {len(duplicates) - 5} more" if len(duplicates) > 5 else "")
        )
    return keys


def input_columns(flow: CompiledFlow) -> tuple[str, ...] | None:
    """The flow's input fields (None: the schema names none, so every column is passed)."""
    props = flow.spec.inputs.get("properties") if isinstance(flow.spec.inputs, Mapping) else None
    return tuple(props) if isinstance(props, Mapping) else None


def admit_cases(
    rows: list[dict[str, Any]],
    keys: list[str],
    flow: CompiledFlow,
    *,
    scrub: Callable[[Any], Any],
) -> tuple[list[Case], list[Rejected]]:
    """Split rows into admitted cases and rejected rows (each with every failing field)."""
    from master_sdk.governance.inputs import admit_input
    from master_sdk.orchestrator.validation import SchemaValidator

    if flow.input_validator is None:
        flow.input_validator = SchemaValidator(flow.spec.inputs)
    columns = input_columns(flow)
    admitted: list[Case] = []
    rejected: list[Rejected] = []
    for index, (row, key) in enumerate(zip(rows, keys, strict=True)):
        if columns is None:
            inputs = {k: v for k, v in row.items() if k not in KEY_COLUMNS}
        else:
            # an empty cell is a missing input (the schema decides whether that is fine)
            inputs = {k: row[k] for k in columns if k in row and row[k] is not None}
        try:
            admit_input(
                inputs,
                limit=flow.policy.max_input_bytes,
                validator=flow.input_validator,
                scrub=scrub,
                what=f"case {key} of {flow.ref}",
            )
        except InputInvalid as exc:
            rejected.append(Rejected(index, key, row, tuple(exc.errors)))
            continue
        admitted.append(Case(index, key, row, inputs))
    return admitted, rejected
