"""Export runs to one file and import them into another store, for any store.

Written once above the :class:`~master_sdk.memory.store.Store` protocol (``read_runs``,
``flow_sources``, ``write_runs``). Two formats, chosen by the file's suffix (or ``fmt``):

* ``.jsonl`` (``.ndjson``): JSON Lines — a header line, one line per flow version, then
  one line per run holding the run with every attempt of its steps, its trace (one object
  per event, with names), approvals and inputs;
* ``.sqlite3`` (``.sqlite``, ``.db``): a new standalone SQLite store holding only the runs
  exported, switched to a rollback journal so it is one self-contained file.

Both are written to a temporary file next to the target and renamed into place, so a
crash never leaves half an export. An export passes every JSON and free-text value through
``redact`` (the workbench's redaction: data stored before a secret was added to the secrets
file leaves redacted). An import adds runs in one transaction, keyed by ``run_id``: a run
already in the store is skipped (or refused with ``on_duplicate="error"``), every value
passes through the importing store's redaction, and a run that was executing a step loses
its owner, so the importing side sees it as interrupted rather than as running on somebody
else's machine. Files from schema versions 1 and 2 import too (their trace events carry
integer codes, and only the latest attempt of each step).

Experiments travel too (:mod:`.experiment_transfer`): an export holds every experiment
with at least one of its runs exported, with all its cases (JSON Lines: one ``experiment``
line each, after the runs); an import adds those the store does not hold yet, after the
runs, so ``wb.experiments()``, results and ``wb.compare`` read the same on both sides.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from master_sdk.errors import NotFound, StoreError
from master_sdk.memory.experiment_transfer import (
    Exported,
    experiment_line,
    parse_experiment,
    read_experiments,
    write_experiments,
)
from master_sdk.memory.schema import SCHEMA_VERSION, refuse_newer
from master_sdk.memory.store import (
    ApprovalRecord,
    FlowSource,
    InputRecord,
    RunRecord,
    StepAttempt,
    Store,
    StoredRun,
    TraceEvent,
)
from master_sdk.tracing.events import EVENTS, STATUSES, STEP_TYPES

if TYPE_CHECKING:
    from master_sdk.governance.imports import ImportAdmission

FORMAT_NAME = "master_sdk.store"
SUFFIXES: dict[str, str] = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".sqlite3": "sqlite",
    ".sqlite": "sqlite",
    ".db": "sqlite",
}

RUN_FIELDS = (
    "run_id", "product", "flow", "status", "version", "cursor", "created_us", "updated_us",
    "flow_hash", "product_version", "created_by", "owner", "steps_used", "tool_calls",
    "model_calls", "tokens_in", "tokens_out", "cost_usd", "inputs", "output", "state", "error",
)  # fmt: skip
# written by every export; optional on import (files exported before forks existed)
LINEAGE_FIELDS = ("parent_run_id", "forked_at")
STEP_FIELDS = (
    "idx", "step_id", "type", "status", "attempt", "started_us", "ended_us", "output", "error",
)  # fmt: skip
TRACE_FIELDS = (
    "seq", "ts_us", "event", "step_id", "step_type", "name", "status", "duration_ms",
    "tokens_in", "tokens_out", "cost_usd", "attrs",
)  # fmt: skip
APPROVAL_FIELDS = ("step_id", "decision", "decided_by", "comment", "at_us")
INPUT_FIELDS = ("step_id", "data", "given_by", "at_us")
FLOW_FIELDS = ("flow_hash", "product", "flow", "product_version", "source")

Redact = Callable[[Any], Any]
Record = dict[str, Any]


def _same(value: Any) -> Any:
    return value


@dataclass(frozen=True, slots=True)
class TransferReport:
    """What an export or import did.

    Attributes:
        action: ``export`` or ``import``.
        path: the file written or read.
        fmt: ``jsonl`` or ``sqlite``.
        runs: ids of the runs written (export) or added to the store (import).
        skipped: ids of runs the store already held, left as they were (import).
        experiments: names of the experiments written or added.
        skipped_experiments: names of experiments the store already held (import, copy).
    """

    action: str
    path: str
    fmt: str
    runs: tuple[str, ...]
    skipped: tuple[str, ...] = ()
    experiments: tuple[str, ...] = ()
    skipped_experiments: tuple[str, ...] = ()
    collections: tuple[str, ...] = ()  # vector collections carried (memory/vector_transfer)

    def __str__(self) -> str:
        text = self._runs_text()
        if self.collections:
            text += f"; {len(self.collections)} vector collection(s): " + ", ".join(
                self.collections
            )
        return text

    def _runs_text(self) -> str:
        if self.action == "copy":
            text = f"copied {len(self.runs)} run(s) to {self.path}"
            if self.skipped:
                text += f"; skipped {len(self.skipped)} already there"
            return text + self._experiments_said()
        if self.action == "export":
            text = f"exported {len(self.runs)} run(s) to {self.path} ({self.fmt})"
            return text + self._experiments_said()
        text = f"imported {len(self.runs)} run(s) from {self.path} ({self.fmt})"
        if self.skipped:
            text += f"; skipped {len(self.skipped)} already in the store: " + ", ".join(
                self.skipped
            )
        return text + self._experiments_said()

    def _experiments_said(self) -> str:
        text = ""
        if self.experiments:
            text += f"; {len(self.experiments)} experiment(s): " + ", ".join(self.experiments)
        if self.skipped_experiments:
            text += "; experiment(s) already there, left as they were: " + ", ".join(
                self.skipped_experiments
            )
        return text


def file_format(path: Path, fmt: str | None) -> str:
    """``jsonl`` or ``sqlite``, from ``fmt`` or the file's suffix."""
    if fmt is not None:
        if fmt not in ("jsonl", "sqlite"):
            raise StoreError(f"unknown export format {fmt!r}; use 'jsonl' or 'sqlite'")
        return fmt
    found = SUFFIXES.get(path.suffix.lower())
    if found is None:
        raise StoreError(
            f"{path}: cannot tell the format from the suffix {path.suffix!r}; name the file "
            f"*.jsonl or *.sqlite3 ({', '.join(SUFFIXES)})"
        )
    return found


# ---------------------------------------------------------------------------- export


def export_store(
    store: Store,
    target: Path,
    *,
    run_ids: Sequence[str] | None = None,
    fmt: str | None = None,
    overwrite: bool = False,
    redact: Redact | None = None,
    extra: Callable[[Path, str], None] | None = None,
) -> TransferReport:
    """Write the store's runs (all, or ``run_ids``, in the store's order) to ``target``.
    ``extra(temp_path, fmt)`` adds more to the file before it is renamed into place
    (vector collections).

    Raises:
        StoreError: the target exists (without ``overwrite``) or the format is unknown.
        NotFound: a run in ``run_ids`` is not in the store.
    """
    kind = file_format(target, fmt)
    if target.exists() and not overwrite:
        raise StoreError(f"{target} exists; choose another file or pass overwrite=True")
    ids = [run_id for run_id, _ in store.find_runs()]
    if run_ids is not None:
        known = set(ids)
        absent = [r for r in run_ids if r not in known]
        if absent:
            raise NotFound(f"no run {', '.join(map(repr, absent))} in the store")
        wanted = set(run_ids)
        ids = [r for r in ids if r in wanted]
    clean = redact or _same
    runs = [_redacted(stored, clean) for stored in store.read_runs(ids)]
    hashes = sorted({stored.run.flow_hash for stored in runs})
    flows = [replace(f, source=clean(f.source)) for f in store.flow_sources(hashes)]
    experiments = read_experiments(store, ids if run_ids is not None else None, clean)
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.part")
    try:
        if kind == "sqlite":
            _write_sqlite(temp, runs, flows, experiments)
        else:
            _write_jsonl(temp, runs, flows, experiments)
        if extra is not None:
            extra(temp, kind)
        os.replace(temp, target)
    finally:
        for leftover in (temp, Path(f"{temp}-journal"), Path(f"{temp}-wal"), Path(f"{temp}-shm")):
            leftover.unlink(missing_ok=True)
    names = tuple(record.name for record, _ in experiments)
    return TransferReport("export", str(target), kind, tuple(ids), experiments=names)


def copy_store(
    source: Store, target: Store, *, redact: Redact | None = None, batch: int = 200
) -> TransferReport:
    """Add every run of ``source`` that ``target`` does not hold yet to ``target`` (any two
    kinds of store: SQLite, PostgreSQL, in memory), redacted with ``redact`` on the way,
    with every attempt, trace event, approval, input and flow text. A run already in the
    target is left as it is and reported skipped, so copying again adds only new runs.

    Runs go in batches of ``batch``, each one transaction of the target.
    """
    clean = redact or _same
    there = {run_id for run_id, _ in target.find_runs()}
    ids = [run_id for run_id, _ in source.find_runs()]
    added: list[str] = []
    todo = [r for r in ids if r not in there]
    for at in range(0, len(todo), batch):
        part = [_redacted(stored, clean) for stored in source.read_runs(todo[at : at + batch])]
        for stored in part:
            stored.run.owner = None  # the process that ran it does not run on the target
        hashes = sorted({stored.run.flow_hash for stored in part})
        flows = [replace(f, source=clean(f.source)) for f in source.flow_sources(hashes)]
        added.extend(target.write_runs(part, flows, on_duplicate="skip"))
    done = set(added)
    skipped = tuple(r for r in ids if r not in done)
    made, kept = write_experiments(target, read_experiments(source, None, clean))
    return TransferReport(
        "copy", target.location, "store", tuple(added), skipped, tuple(made), tuple(kept)
    )


def _redacted(stored: StoredRun, clean: Redact) -> StoredRun:
    """A run with every JSON value and free text passed through ``clean``."""

    def value(v: Any) -> Any:
        return None if v is None else clean(v)

    def text(v: str | None) -> str | None:
        return clean(v) if v else v

    run = replace(
        stored.run,
        inputs=value(stored.run.inputs),
        output=value(stored.run.output),
        state=value(stored.run.state) or {},
        error=text(stored.run.error),
        pk=None,
    )
    return StoredRun(
        run=run,
        attempts=[replace(a, output=value(a.output), error=text(a.error)) for a in stored.attempts],
        events=[replace(e, attrs=value(e.attrs)) for e in stored.events],
        approvals=[replace(a, comment=text(a.comment)) for a in stored.approvals],
        inputs=[replace(i, data=value(i.data)) for i in stored.inputs],
    )


def _write_sqlite(
    temp: Path, runs: list[StoredRun], flows: list[FlowSource], experiments: list[Exported]
) -> None:
    from master_sdk.memory.sqlite import SQLiteStore

    copy = SQLiteStore(temp, synchronous="NORMAL")
    try:
        copy.write_runs(runs, flows)
        write_experiments(copy, experiments)
    finally:
        copy.close()
    try:
        conn = sqlite3.connect(str(temp), isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise StoreError(f"{temp}: could not finish the SQLite export ({exc})") from None


def _write_jsonl(
    temp: Path, runs: list[StoredRun], flows: list[FlowSource], experiments: list[Exported]
) -> None:
    with temp.open("w", encoding="utf-8") as out:
        header = {
            "format": FORMAT_NAME,
            "schema_version": SCHEMA_VERSION,
            "exported_at": datetime.now(UTC).isoformat(),
            "runs": len(runs),
        }
        out.write(_line(header))
        for flow in flows:
            out.write(_line({"kind": "flow", **_fields(flow, FLOW_FIELDS)}))
        for stored in runs:
            out.write(_line({"kind": "run", **_run_record(stored)}))
        for record, cases in experiments:
            out.write(_line({"kind": "experiment", **experiment_line(record, cases)}))
        out.flush()
        os.fsync(out.fileno())


def _fields(record: Any, fields: Sequence[str], renamed: dict[str, str] | None = None) -> Record:
    """``fields`` of a record, each read from its attribute (``renamed``: field -> attribute)."""
    names = renamed or {}
    return {f: getattr(record, names.get(f, f)) for f in fields}


def _run_record(stored: StoredRun) -> Record:
    return {
        "run": _fields(stored.run, (*RUN_FIELDS, *LINEAGE_FIELDS)),
        "steps": [_fields(a, STEP_FIELDS) for a in stored.attempts],
        "trace": [_fields(e, TRACE_FIELDS) for e in stored.events],
        "approvals": [_fields(a, APPROVAL_FIELDS, {"decided_by": "by"}) for a in stored.approvals],
        "user_inputs": [_fields(i, INPUT_FIELDS, {"given_by": "by"}) for i in stored.inputs],
    }


def _line(record: Record) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str) + "\n"


# ---------------------------------------------------------------------------- import


def import_store(
    store: Store,
    source: Path,
    *,
    fmt: str | None = None,
    on_duplicate: str = "skip",
    scrub: Redact | None = None,
) -> TransferReport:
    """Add the runs of ``source`` (an export, or another store file) to ``store``.

    Args:
        on_duplicate: ``skip`` (default) leaves a run the store already holds as it is and
            lists it in the report; ``error`` refuses the whole import instead.
        scrub: the redaction imported records pass through before they are written (the
            file is untrusted: every record is also validated, see
            :mod:`master_sdk.governance.imports`).

    Raises:
        StoreError: the file is missing, not an export, from a newer schema, holds an
            invalid record (named by line or run, with every failing field), or (with
            ``on_duplicate="error"``) holds runs already in the store; nothing is imported.
    """
    if scrub is None:
        scrub = getattr(store, "scrub", None) or (lambda value: value)
    if on_duplicate not in ("skip", "error"):
        raise StoreError(f"on_duplicate must be 'skip' or 'error', not {on_duplicate!r}")
    mode: Literal["skip", "error"] = "error" if on_duplicate == "error" else "skip"
    kind = file_format(source, fmt)
    if not source.is_file():
        raise StoreError(f"{source}: no such file to import")
    from master_sdk.governance.imports import ImportAdmission

    admit = ImportAdmission(scrub)  # untrusted input: validated and redacted before writing
    experiments: list[Exported] = []
    if kind == "jsonl":
        flows, runs = _read_jsonl(source, admit, experiments, scrub)
    else:
        try:
            flows, runs, found = _read_sqlite(source)
        except RecursionError:
            raise StoreError(f"{source}: a stored value is nested too deeply") from None
        flows = [admit.flow(f, f"{source}, flow {i + 1}") for i, f in enumerate(flows)]
        runs = [admit.stored(r, f"{source}, run {i + 1}") for i, r in enumerate(runs)]
        experiments = [
            parse_experiment(experiment_line(*item), f"{source}, experiment {i + 1}", scrub)
            for i, item in enumerate(found)
        ]
    for stored in runs:
        stored.run.owner = None  # the process that ran it is not on this machine's store
        stored.run.pk = None
    try:
        added = store.write_runs(runs, flows, on_duplicate=mode)
    except StoreError as exc:
        if "already in" in str(exc):
            raise StoreError(
                f"{source}: {str(exc).split('; nothing was written')[0]}; nothing was imported "
                "(use on_duplicate='skip')"
            ) from None
        raise
    done = set(added)
    skipped = tuple(s.run.run_id for s in runs if s.run.run_id not in done)
    made, kept = write_experiments(store, experiments)
    return TransferReport(
        "import", str(source), kind, tuple(added), skipped, tuple(made), tuple(kept)
    )


def _read_jsonl(
    source: Path, admit: ImportAdmission, experiments: list[Exported], scrub: Redact
) -> tuple[list[FlowSource], list[StoredRun]]:
    flows: list[FlowSource] = []
    runs: list[StoredRun] = []
    header = False
    with source.open(encoding="utf-8") as handle:
        for number, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as exc:
                raise StoreError(f"{source}, line {number}: not JSON ({exc.msg})") from None
            except RecursionError:
                raise StoreError(f"{source}, line {number}: JSON nested too deeply") from None
            if not isinstance(record, dict):
                raise StoreError(f"{source}, line {number}: expected a JSON object")
            if not header:
                _check_header(source, number, record)
                header = True
                continue
            kind = record.pop("kind", None)
            where = f"{source}, line {number}"
            if kind == "flow":
                flow = _require(record, FLOW_FIELDS, source, number, "flow")
                flows.append(admit.flow(FlowSource(*(flow[k] for k in FLOW_FIELDS)), where))
            elif kind == "run":
                runs.append(admit.stored(_stored(record, source, number), where))
            elif kind == "experiment":
                experiments.append(parse_experiment(record, where, scrub))
            elif kind in ("collection", "vector"):
                continue  # vector collections: read by memory/vector_transfer
            else:
                raise StoreError(f"{source}, line {number}: unknown record kind {kind!r}")
    if not header:
        raise StoreError(f"{source}: the file is empty; it is not an export")
    return flows, runs


def _check_header(source: Path, number: int, header: Record) -> None:
    if header.get("format") != FORMAT_NAME:
        raise StoreError(
            f"{source}, line {number}: not a master_sdk export (the header's format is "
            f"{header.get('format')!r}, expected {FORMAT_NAME!r})"
        )
    version = header.get("schema_version")
    if not isinstance(version, int) or version < 1:
        raise StoreError(f"{source}, line {number}: the header has no valid schema_version")
    refuse_newer(version, path=str(source))


def _stored(record: Record, source: Path, number: int) -> StoredRun:
    run = record.get("run")
    if not isinstance(run, dict):
        raise StoreError(f"{source}, line {number}: a run record needs a 'run' object")
    r = _require(run, RUN_FIELDS, source, number, "run")
    r.update({f: run.get(f) for f in LINEAGE_FIELDS})
    lists: dict[str, list[Record]] = {}
    for table, fields in (
        ("steps", STEP_FIELDS),
        ("trace", TRACE_FIELDS),
        ("approvals", APPROVAL_FIELDS),
        ("user_inputs", INPUT_FIELDS),
    ):
        rows = record.get(table, [])
        if not isinstance(rows, list):
            raise StoreError(f"{source}, line {number}: '{table}' must be a list")
        lists[table] = [_require(x, fields, source, number, table) for x in rows]
    where = f"{source}, line {number}"
    return StoredRun(
        run=RunRecord(**{**r, "state": r["state"] or {}}),
        attempts=[StepAttempt(**s) for s in lists["steps"]],
        events=[_event(e, where) for e in lists["trace"]],
        approvals=[
            ApprovalRecord(a["step_id"], a["decision"], a["decided_by"], a["comment"], a["at_us"])
            for a in lists["approvals"]
        ],
        inputs=[
            InputRecord(i["step_id"], i["data"], i["given_by"], i["at_us"])
            for i in lists["user_inputs"]
        ],
    )


def _event(e: Record, where: str) -> TraceEvent:
    """A trace event of an export; versions 1 and 2 wrote the event, step type and status
    as integer codes of ``tracing/events.py``, version 3 writes names."""
    return TraceEvent(
        seq=e["seq"],
        ts_us=e["ts_us"],
        event=str(_name(e["event"], EVENTS, where, "event")),
        step_id=e["step_id"],
        step_type=_name(e["step_type"], STEP_TYPES, where, "step_type"),
        name=e["name"],
        status=_name(e["status"], STATUSES, where, "status"),
        duration_ms=e["duration_ms"],
        tokens_in=e["tokens_in"],
        tokens_out=e["tokens_out"],
        cost_usd=e["cost_usd"],
        attrs=e["attrs"],
    )


def _name(value: Any, vocabulary: Sequence[str], where: str, field: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(vocabulary):
        return vocabulary[value]
    raise StoreError(f"{where}: trace {field} {value!r} is not in the trace vocabulary")


def _require(record: Any, fields: Sequence[str], source: Path, number: int, what: str) -> Record:
    if not isinstance(record, dict):
        raise StoreError(f"{source}, line {number}: a {what} entry must be a JSON object")
    missing = [f for f in fields if f not in record]
    if missing:
        raise StoreError(f"{source}, line {number}: {what} lacks {', '.join(missing)}")
    return {f: record[f] for f in fields}


def _read_sqlite(source: Path) -> tuple[list[FlowSource], list[StoredRun], list[Exported]]:
    """The runs of another store file, read from a private copy (migrated there when
    older): the file being imported stays exactly as it is."""
    from master_sdk.memory.schema import stored_version
    from master_sdk.memory.sqlite import SQLiteStore

    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / "source.sqlite3"
        try:
            conn = sqlite3.connect(source.resolve().as_uri() + "?mode=ro", uri=True)
            try:
                version = stored_version(conn)
                refuse_newer(version, path=str(source))
                if version == 0:
                    raise StoreError(f"{source}: not a master_sdk store (no schema version)")
                dest = sqlite3.connect(str(copy), isolation_level=None)
                try:
                    conn.backup(dest)
                finally:
                    dest.close()
            finally:
                conn.close()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{source}: cannot read: {exc}") from None
        other = SQLiteStore(copy)
        try:
            runs = list(other.read_runs())
            flows = other.flow_sources()
            experiments = read_experiments(other, None, _same)
        finally:
            other.close()
    return flows, runs, experiments
