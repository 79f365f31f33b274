"""An imported file is untrusted input: every record is validated and redacted on the way in.

``wb.import_store(path)`` and ``master store import`` read a file somebody else wrote — or
tampered with. Each record is checked against a schema before anything is written:

* identifiers have their own shapes: run ids and flow hashes are short tokens (letters,
  digits, ``_``, ``-``), products, flows and step ids the names flow files allow;
* statuses, step types, trace events and decisions come from the store's vocabulary;
* counters are non-negative integers, costs and durations non-negative numbers;
* free text (errors, comments, flow sources, names) and JSON values (inputs, outputs, state,
  trace attributes, user input) have size caps, and JSON values a nesting cap;
* identifiers and identities (``created_by``, an approval's or an input's ``by``) must come out of
  redaction unchanged: a product named like an e-mail address or a secrets-file value is
  refused, not stored under a placeholder;
* everything else is redacted with the store's redaction before it is written.

A bad record raises :class:`~master_sdk.errors.StoreError` naming the file, the line (or run)
and every failing field; nothing is imported.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from dataclasses import fields, replace
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from master_sdk.contracts.flow import IDENT, PRODUCT_NAME
from master_sdk.errors import StoreError
from master_sdk.governance.identities import MAX_IDENTITY_LENGTH
from master_sdk.tracing.events import EVENTS, RUN_STATUSES, STATUSES, STEP_TYPES

if TYPE_CHECKING:
    from master_sdk.memory.store import FlowSource, StoredRun

    Event = str
    Status = str
    RunStatus = str
    StepType = str
else:
    Event = Literal[EVENTS]
    Status = Literal[STATUSES]
    RunStatus = Literal[RUN_STATUSES]
    StepType = Literal[STEP_TYPES]

__all__ = ["MAX_JSON_DEPTH", "MAX_TEXT", "ImportAdmission"]

#: Stored values are cut at 100 levels by redaction; an import deeper than this is forged.
MAX_JSON_DEPTH = 101
#: Longest free text accepted in one field (a flow file is at most 1 MB).
MAX_TEXT = 1_048_576

Redact = Callable[[Any], Any]

_Count = Field(ge=0, strict=True)
# run ids (32 hex digits) and flow hashes (16) are generated here; another store may use
# other ids, but always short tokens: no spaces, separators or at signs
_HASH = r"^[0-9A-Za-z_\-]{1,64}$"
_Name = Field(max_length=128)


def _depth_ok(value: Any) -> Any:
    stack = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if level > MAX_JSON_DEPTH:
            raise ValueError(f"nests deeper than {MAX_JSON_DEPTH} levels")
        if isinstance(item, dict):
            stack.extend((v, level + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, level + 1) for v in item)
    return value


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class FlowIn(_Record):
    flow_hash: str = Field(pattern=_HASH)
    product: str = Field(pattern=PRODUCT_NAME, max_length=128)
    flow: str = Field(pattern=IDENT, max_length=128)
    product_version: str = Field(max_length=64)
    source: str = Field(max_length=MAX_TEXT)


class RunIn(_Record):
    pk: int | None = None  # the exporting store's own key, dropped on import
    run_id: str = Field(pattern=_HASH)
    product: str = Field(pattern=PRODUCT_NAME, max_length=128)
    flow: str = Field(pattern=IDENT, max_length=128)
    status: RunStatus
    version: int = _Count
    cursor: int = _Count
    created_us: int = _Count
    updated_us: int = _Count
    flow_hash: str = Field(pattern=_HASH)
    product_version: str = Field(max_length=64)
    created_by: str | None = Field(max_length=MAX_IDENTITY_LENGTH)
    owner: str | None = Field(max_length=256)
    steps_used: int = _Count
    tool_calls: int = _Count
    model_calls: int = _Count
    tokens_in: int = _Count
    tokens_out: int = _Count
    cost_usd: float = Field(ge=0)
    inputs: Any
    output: Any
    state: dict[str, Any]
    error: str | None = Field(max_length=MAX_TEXT)
    # lineage of a forked run (absent from files written before forks existed)
    parent_run_id: str | None = Field(default=None, pattern=_HASH)
    forked_at: str | None = Field(default=None, pattern=IDENT, max_length=128)

    _json = field_validator("inputs", "output", "state")(_depth_ok)


class StepIn(_Record):
    idx: int = Field(ge=0, le=100_000, strict=True)
    step_id: str = Field(pattern=IDENT, max_length=128)
    type: StepType
    status: Status
    attempt: int = _Count
    started_us: int | None = _Count
    ended_us: int | None = _Count
    output: Any
    error: str | None = Field(max_length=MAX_TEXT)

    _json = field_validator("output")(_depth_ok)


class TraceIn(_Record):
    seq: int = _Count
    ts_us: int = _Count
    # a trace event names its kind, step type and status by name, or (exports of schema
    # versions 1 and 2) by code (tracing/events.py)
    event: Annotated[int, Field(ge=0, lt=len(EVENTS), strict=True)] | Event
    step_id: str | None = Field(pattern=IDENT, max_length=128)
    step_type: Annotated[int, Field(ge=0, lt=len(STEP_TYPES), strict=True)] | StepType | None
    name: str | None = Field(max_length=256)
    status: Annotated[int, Field(ge=0, lt=len(STATUSES), strict=True)] | Status | None
    duration_ms: float | None = Field(ge=0)
    tokens_in: int | None = _Count
    tokens_out: int | None = _Count
    cost_usd: float | None = Field(ge=0)
    attrs: dict[str, Any] | None

    _json = field_validator("attrs")(_depth_ok)


class ApprovalIn(_Record):
    step_id: str = Field(pattern=IDENT, max_length=128)
    decision: Literal["approved", "rejected"]
    by: str | None = Field(max_length=MAX_IDENTITY_LENGTH)
    comment: str | None = Field(max_length=MAX_TEXT)
    at_us: int = _Count


class InputIn(_Record):
    step_id: str = Field(pattern=IDENT, max_length=128)
    data: Any
    by: str | None = Field(max_length=MAX_IDENTITY_LENGTH)
    at_us: int = _Count

    _json = field_validator("data")(_depth_ok)


_CHILDREN: dict[str, type[_Record]] = {
    "steps": StepIn,
    "trace": TraceIn,
    "approvals": ApprovalIn,
    "user_inputs": InputIn,
}
# must survive redaction unchanged: they name things, and are shown and matched verbatim
_KEEP = {
    "flow": ("flow_hash", "product", "flow"),
    "run": ("run_id", "product", "flow", "flow_hash", "created_by"),
    "steps": ("step_id",),
    "trace": ("step_id",),
    "approvals": ("step_id", "by"),
    "user_inputs": ("step_id", "by"),
}
# free text and JSON values, redacted on the way in (numbers are never touched: a
# microsecond timestamp must not be mistaken for a card number)
_REDACT = {
    "flow": ("product_version", "source"),
    "run": ("product_version", "owner", "inputs", "output", "state", "error"),
    "steps": ("output", "error"),
    "trace": ("name", "attrs"),
    "approvals": ("comment",),
    "user_inputs": ("data",),
}
_MAX_LISTED = 10


# the lists of a stored run, and how error messages name them (as the export file does)
_LISTS = (
    ("attempts", "steps"),
    ("events", "trace"),
    ("approvals", "approvals"),
    ("inputs", "user_inputs"),
)


def _view(record: Any) -> dict[str, Any]:
    """A record's fields as a dict, without copying their values."""
    return {f.name: getattr(record, f.name) for f in fields(record)}


class ImportAdmission:
    """Validates and redacts the records of one import.

    Args:
        redact: the importing store's redaction.
    """

    def __init__(self, redact: Redact) -> None:
        self.redact = redact

    def flow(self, flow: FlowSource, where: str) -> FlowSource:
        """A flow version, checked and redacted (its source included)."""
        record = _view(flow)
        self._raise(self._check(FlowIn, record, "flow", "flow"), where)
        return replace(flow, **self._redacted(record, "flow"))

    def stored(self, stored: StoredRun, where: str) -> StoredRun:
        """A run with its step attempts, trace, approvals and inputs, checked and redacted."""
        problems = self._check(RunIn, _view(stored.run), "run", "run")
        for attribute, label in _LISTS:
            rows = getattr(stored, attribute)
            for i, row in enumerate(rows):
                problems += self._check(_CHILDREN[label], _view(row), f"{label}[{i}]", label)
                if len(problems) > _MAX_LISTED:
                    break
        self._raise(problems, where)
        changes: dict[str, Any] = {
            "run": replace(stored.run, **self._redacted(_view(stored.run), "run"))
        }
        for attribute, label in _LISTS:
            changes[attribute] = [
                replace(row, **self._redacted(_view(row), label))
                for row in getattr(stored, attribute)
            ]
        return replace(stored, **changes)

    def _check(
        self, model: type[_Record], record: dict[str, Any], label: str, kind: str
    ) -> list[str]:
        try:
            model.model_validate(record)
        except ValidationError as exc:
            return [
                f"{'.'.join([label, *(str(p) for p in e['loc'])])}: {e['msg']}"
                for e in exc.errors()[:_MAX_LISTED]
            ]
        problems = []
        for name in _KEEP[kind]:
            value = record.get(name)
            if value is None:
                continue
            if unicodedata.normalize("NFKC", value) != value or not value.isprintable():
                problems.append(f"{label}.{name}: holds invisible or compatibility characters")
            elif self.redact(value) != value:
                problems.append(
                    f"{label}.{name}: holds personal data or a secrets-file value "
                    "(names and identities are stored verbatim, so they are refused, not redacted)"
                )
        return problems

    def _redacted(self, record: dict[str, Any], kind: str) -> dict[str, Any]:
        out = {}
        for name in _REDACT[kind]:
            value = record.get(name)
            if value is not None:
                clean = self.redact(value)
                if clean is not value:
                    out[name] = clean
        return out

    @staticmethod
    def _raise(problems: list[str], where: str) -> None:
        if not problems:
            return
        listed = "; ".join(problems[:_MAX_LISTED])
        more = f" (and {len(problems) - _MAX_LISTED} more)" if len(problems) > _MAX_LISTED else ""
        raise StoreError(
            f"{where}: invalid record: {listed}{more}; nothing was imported (fix or re-export "
            "the file)"
        )
