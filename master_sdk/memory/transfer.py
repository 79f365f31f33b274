"""Export runs to one file and import them into another store, to share runs.

Two formats, chosen by the file's suffix (or ``fmt``):

* ``.sqlite3`` (``.sqlite``, ``.db``): a standalone SQLite database, copied with SQLite's
  online backup API — a consistent snapshot even while other processes write — and
  switched to a rollback journal so it is one self-contained file;
* ``.jsonl`` (``.ndjson``): JSON Lines — a header line, one line per flow version, then
  one line per run holding the run with its steps, trace, approvals and inputs (JSON
  columns decoded, so the file is readable; a trace event is one object, whatever the
  store's schema version).

Both are written to a temporary file next to the target and renamed into place, so a
crash never leaves half an export. An export passes every JSON and free-text column through
the store's redaction again (data stored before a secret was added to the secrets file
leaves redacted), and a SQLite export that changed anything is vacuumed so no earlier page
content remains. An import merges runs in one transaction, keyed by
``run_id``: a run already in the store is skipped (or refused with
``on_duplicate="error"``), every value passes through the store's redaction again, and a
run that was executing a step loses its owner, so the importing side sees it as
interrupted rather than as running on somebody else's machine.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import struct
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from master_sdk.errors import NotFound, StoreError
from master_sdk.memory.chunks import (
    INSERT_CHUNK,
    NewNames,
    chunk_rows,
    read_names,
    run_events,
    used_codes,
)
from master_sdk.memory.schema import SCHEMA_VERSION, ensure_schema, refuse_newer, stored_version

if TYPE_CHECKING:
    from master_sdk.memory.sqlite import SQLiteStore
    from master_sdk.tracing.events import EventRow

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

# columns stored as JSON text; decoded in JSON Lines, re-encoded (and scrubbed) on import
_JSON = {
    "runs": ("inputs", "output", "state"),
    "steps": ("output",),
    "user_inputs": ("data",),
}
# JSON values scrubbed again on export (trace events come decoded from their chunks)
_VALUES_SCRUBBED = {**_JSON, "trace": ("attrs",)}
_TEXT_SCRUBBED = {"runs": ("error",), "steps": ("error",), "approvals": ("comment",)}
# primary keys, to rewrite a row of a redacted SQLite export
_KEYS = {
    "runs": ("pk",),
    "steps": ("run_pk", "idx"),
    "trace_chunks": ("run_pk", "first_seq"),
    "approvals": ("run_pk", "step_id", "at_us"),
    "user_inputs": ("run_pk", "step_id", "at_us"),
    "flow_versions": ("flow_hash",),
}
# JSON columns of a SQLite copy (a chunk's attrs are one JSON array)
_COPY_JSON = {**_JSON, "trace_chunks": ("attrs",)}
_FLOW_TEXT = {"flow_versions": ("source",)}
# the child records of a run bundle: trace events are decoded from and encoded into chunks
# (memory/chunks.py), the other tables are a row per record
_CHILDREN = (
    ("steps", STEP_FIELDS, "idx"),
    ("trace", TRACE_FIELDS, "seq"),
    ("approvals", APPROVAL_FIELDS, "at_us"),
    ("user_inputs", INPUT_FIELDS, "at_us"),
)
_RUN_TABLES = ("steps", "trace_chunks", "approvals", "user_inputs")

Record = dict[str, Any]


@dataclass(frozen=True, slots=True)
class TransferReport:
    """What an export or import did.

    Attributes:
        action: ``export`` or ``import``.
        path: the file written or read.
        fmt: ``jsonl`` or ``sqlite``.
        runs: ids of the runs written (export) or added to the store (import).
        skipped: ids of runs the store already held, left as they were (import).
    """

    action: str
    path: str
    fmt: str
    runs: tuple[str, ...]
    skipped: tuple[str, ...] = ()

    def __str__(self) -> str:
        if self.action == "export":
            return f"exported {len(self.runs)} run(s) to {self.path} ({self.fmt})"
        text = f"imported {len(self.runs)} run(s) from {self.path} ({self.fmt})"
        if self.skipped:
            text += f"; skipped {len(self.skipped)} already in the store: " + ", ".join(
                self.skipped
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
    store: SQLiteStore,
    target: Path,
    *,
    run_ids: Sequence[str] | None = None,
    fmt: str | None = None,
    overwrite: bool = False,
) -> TransferReport:
    """Write the store's runs (all, or ``run_ids``) to ``target``.

    Raises:
        StoreError: the target exists (without ``overwrite``) or the format is unknown.
        NotFound: a run in ``run_ids`` is not in the store.
    """
    kind = file_format(target, fmt)
    if target.exists() and not overwrite:
        raise StoreError(f"{target} exists; choose another file or pass overwrite=True")
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.part")
    try:
        if kind == "sqlite":
            ids = _export_sqlite(store, temp, run_ids)
        else:
            ids = _export_jsonl(store, temp, run_ids)
        os.replace(temp, target)
    finally:
        for leftover in (temp, Path(f"{temp}-journal")):
            leftover.unlink(missing_ok=True)
    return TransferReport("export", str(target), kind, tuple(ids))


def _export_sqlite(store: SQLiteStore, temp: Path, run_ids: Sequence[str] | None) -> list[str]:
    dest = sqlite3.connect(str(temp), isolation_level=None)
    try:
        # one backup step copies every page under one read lock: a consistent snapshot
        store.conn.backup(dest)
        dest.execute("PRAGMA journal_mode = DELETE")
        all_ids = [r[0] for r in dest.execute("SELECT run_id FROM runs ORDER BY pk")]
        if _redact_copy(dest, store.scrub) and run_ids is None:
            dest.execute("VACUUM")  # the pages that held the text before redaction
        if run_ids is None:
            return all_ids
        _missing(run_ids, all_ids, store.path)
        keep = set(run_ids)
        dest.execute("BEGIN")
        for run_id in all_ids:
            if run_id not in keep:
                (pk,) = dest.execute("SELECT pk FROM runs WHERE run_id = ?", (run_id,)).fetchone()
                for table in _RUN_TABLES:
                    dest.execute(f"DELETE FROM {table} WHERE run_pk = ?", (pk,))  # noqa: S608  # table names are constants
                dest.execute("DELETE FROM runs WHERE pk = ?", (pk,))
        dest.execute(
            "DELETE FROM flow_versions WHERE flow_hash NOT IN (SELECT flow_hash FROM runs)"
        )
        used = used_codes(dest)
        dest.executemany(
            "DELETE FROM trace_names WHERE code = ?",
            [(code,) for code in read_names(dest) if code not in used],
        )
        dest.execute("COMMIT")
        dest.execute("VACUUM")  # leave no trace of the runs that were not chosen
        return [r for r in all_ids if r in keep]
    finally:
        dest.close()


def _export_jsonl(store: SQLiteStore, temp: Path, run_ids: Sequence[str] | None) -> list[str]:
    conn = store.conn
    conn.execute("BEGIN")  # one read snapshot for every query below
    try:
        all_ids = [r[0] for r in conn.execute("SELECT run_id FROM runs ORDER BY pk")]
        if run_ids is not None:
            _missing(run_ids, all_ids, store.path)
            keep = set(run_ids)
            ids = [r for r in all_ids if r in keep]
        else:
            ids = all_ids
        with temp.open("w", encoding="utf-8") as out:
            header = {
                "format": FORMAT_NAME,
                "schema_version": stored_version(conn),
                "exported_at": datetime.now(UTC).isoformat(),
                "runs": len(ids),
            }
            out.write(_line(header))
            hashes = sorted(
                {
                    conn.execute("SELECT flow_hash FROM runs WHERE run_id = ?", (i,)).fetchone()[0]
                    for i in ids
                }
            )
            for flow_hash in hashes:
                row = conn.execute(
                    f"SELECT {', '.join(FLOW_FIELDS)} FROM flow_versions WHERE flow_hash = ?",  # noqa: S608  # constants
                    (flow_hash,),
                ).fetchone()
                if row is not None:
                    flow = dict(zip(FLOW_FIELDS, row, strict=True))
                    flow["source"] = store.scrub(flow["source"])
                    out.write(_line({"kind": "flow", **flow}))
            for bundle in _bundles(conn, ids):
                out.write(_line({"kind": "run", **_redacted(_decoded(bundle), store.scrub)}))
            out.flush()
            os.fsync(out.fileno())
    finally:
        conn.execute("COMMIT")
    return ids


def _missing(wanted: Sequence[str], present: Sequence[str], path: Path) -> None:
    known = set(present)
    absent = [r for r in wanted if r not in known]
    if absent:
        raise NotFound(f"no run {', '.join(map(repr, absent))} in {path}")


def _bundles(conn: sqlite3.Connection, ids: Sequence[str]) -> Iterator[Record]:
    """Each run with its child rows, as stored (JSON columns still text; trace events
    decoded from their chunks, with their codes and their attributes as values)."""
    columns = ", ".join(RUN_FIELDS)
    names = read_names(conn)
    for run_id in ids:
        row = conn.execute(
            f"SELECT pk, {columns} FROM runs WHERE run_id = ?",  # noqa: S608  # constants
            (run_id,),
        ).fetchone()
        pk = row[0]
        bundle: Record = {"run": dict(zip(RUN_FIELDS, row[1:], strict=True))}
        for table, fields, order in _CHILDREN:
            if table == "trace":
                bundle[table] = [
                    dict(zip(fields, event, strict=True)) for event in run_events(conn, pk, names)
                ]
                continue
            bundle[table] = [
                dict(zip(fields, r, strict=True))
                for r in conn.execute(
                    f"SELECT {', '.join(fields)} FROM {table} WHERE run_pk = ? ORDER BY {order}",  # noqa: S608  # constants
                    (pk,),
                )
            ]
        yield bundle


def _decoded(bundle: Record) -> Record:
    out: Record = {"run": _map_json(bundle["run"], _JSON["runs"], json.loads)}
    for table, _, _ in _CHILDREN:
        columns = _JSON.get(table, ())
        out[table] = [_map_json(r, columns, json.loads) for r in bundle[table]]
    return out


def _redacted(decoded: Record, scrub: Any) -> Record:
    """A decoded run bundle with its JSON and free-text columns redacted again."""
    out: Record = {"run": _scrub_columns(decoded["run"], "runs", scrub)}
    for table, _, _ in _CHILDREN:
        out[table] = [_scrub_columns(r, table, scrub) for r in decoded[table]]
    return out


def _scrub_columns(record: Record, table: str, scrub: Any) -> Record:
    columns = (*_VALUES_SCRUBBED.get(table, ()), *_TEXT_SCRUBBED.get(table, ()))
    return {k: (scrub(v) if k in columns and v is not None else v) for k, v in record.items()}


def _redact_copy(dest: sqlite3.Connection, scrub: Any) -> int:
    """Redact the JSON and free-text columns of an exported copy in place; rows changed."""
    changed = 0
    dest.execute("BEGIN")
    for table, keys in _KEYS.items():
        json_columns = _COPY_JSON.get(table, ())
        text_columns = (*_TEXT_SCRUBBED.get(table, ()), *_FLOW_TEXT.get(table, ()))
        columns = (*json_columns, *text_columns)
        if not columns:
            continue
        select = f"SELECT {', '.join(keys + columns)} FROM {table}"  # noqa: S608  # constants
        updates: list[tuple[Any, ...]] = []
        for row in dest.execute(select).fetchall():
            key, values = row[: len(keys)], row[len(keys) :]
            new: list[Any] = []
            for column, value in zip(columns, values, strict=True):
                if value is not None and column in json_columns:
                    decoded = json.loads(value)
                    clean = scrub(decoded)
                    new.append(value if clean is decoded else _json_text(clean))
                else:
                    new.append(value if value is None else scrub(value))
            if tuple(new) != tuple(values):
                updates.append((*new, *key))
        if updates:
            assign = ", ".join(f"{c} = ?" for c in columns)
            where = " AND ".join(f"{k} = ?" for k in keys)
            dest.executemany(f"UPDATE {table} SET {assign} WHERE {where}", updates)  # noqa: S608  # constants
            changed += len(updates)
    dest.execute("COMMIT")
    return changed


def _json_text(value: Any) -> str:
    # the store's own encoding (memory/sqlite.py), so an unchanged value compares equal
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def _map_json(record: Record, columns: Sequence[str], convert: Any) -> Record:
    if not columns:
        return dict(record)
    return {k: (convert(v) if k in columns and v is not None else v) for k, v in record.items()}


def _line(record: Record) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"


# ---------------------------------------------------------------------------- import


def import_store(
    store: SQLiteStore, source: Path, *, fmt: str | None = None, on_duplicate: str = "skip"
) -> TransferReport:
    """Merge the runs of ``source`` (an export, or another store file) into ``store``.

    Args:
        on_duplicate: ``skip`` (default) leaves a run the store already holds as it is and
            lists it in the report; ``error`` refuses the whole import instead.

    Raises:
        StoreError: the file is missing, not an export, from a newer schema, or (with
            ``on_duplicate="error"``) holds runs already in the store; nothing is imported.
    """
    if on_duplicate not in ("skip", "error"):
        raise StoreError(f"on_duplicate must be 'skip' or 'error', not {on_duplicate!r}")
    kind = file_format(source, fmt)
    if not source.is_file():
        raise StoreError(f"{source}: no such file to import")
    flows, bundles = _read_jsonl(source) if kind == "jsonl" else _read_sqlite(source)
    imported: list[str] = []
    skipped: list[str] = []
    with store._write("import") as conn:
        for bundle in bundles:
            run_id = bundle["run"]["run_id"]
            if conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone():
                skipped.append(run_id)
        if skipped and on_duplicate == "error":
            raise StoreError(
                f"{source}: {len(skipped)} run(s) are already in {store.path}: "
                f"{', '.join(skipped)}; nothing was imported (use on_duplicate='skip')"
            )
        conn.executemany(
            f"INSERT OR IGNORE INTO flow_versions ({', '.join(FLOW_FIELDS)}) "  # noqa: S608  # constants
            f"VALUES ({', '.join('?' * len(FLOW_FIELDS))})",
            [tuple(f[k] for k in FLOW_FIELDS) for f in flows],
        )
        duplicate = set(skipped)
        names = NewNames(conn, store._names, store.scrub)
        for bundle in bundles:
            if bundle["run"]["run_id"] in duplicate:
                continue
            _insert(store, conn, bundle, names)
            imported.append(bundle["run"]["run_id"])
    store._names.update(names.added)  # the import committed: its new codes are real
    return TransferReport("import", str(source), kind, tuple(imported), tuple(skipped))


def _insert(store: SQLiteStore, conn: sqlite3.Connection, bundle: Record, names: NewNames) -> None:
    run = _encoded(store, "runs", bundle["run"])
    run["owner"] = None  # the process that ran it is not on this machine's store
    cur = conn.execute(
        f"INSERT INTO runs ({', '.join(RUN_FIELDS)}) "  # noqa: S608  # constants
        f"VALUES ({', '.join('?' * len(RUN_FIELDS))})",
        tuple(run[k] for k in RUN_FIELDS),
    )
    pk = cur.lastrowid
    if pk is None:
        raise StoreError(f"{store.path}: SQLite gave no row id to imported run {run['run_id']}")
    for table, fields, _ in _CHILDREN:
        if table == "trace":
            events = [_event(r) for r in bundle[table]]
            try:
                chunks = chunk_rows(pk, events, names, store._dumps)
            except (struct.error, TypeError) as exc:
                raise StoreError(
                    f"run {run['run_id']}: a trace event has a value of the wrong type or size "
                    f"({exc}); nothing was imported"
                ) from None
            conn.executemany(INSERT_CHUNK, chunks)
            continue
        rows = [_encoded(store, table, r) for r in bundle[table]]
        conn.executemany(
            f"INSERT INTO {table} (run_pk, {', '.join(fields)}) "  # noqa: S608  # constants
            f"VALUES (?, {', '.join('?' * len(fields))})",
            [(pk, *(r[k] for k in fields)) for r in rows],
        )


def _event(record: Record) -> EventRow:
    """A trace event of a bundle as the engine emits it (its attributes still a value)."""
    r = record
    return (
        r["seq"],
        r["ts_us"],
        r["event"],
        r["step_id"],
        r["step_type"],
        r["name"],
        r["status"],
        r["duration_ms"],
        r["tokens_in"],
        r["tokens_out"],
        r["cost_usd"],
        r["attrs"],
    )


def _encoded(store: SQLiteStore, table: str, record: Record) -> Record:
    """A decoded record made ready for the store: JSON re-encoded, text scrubbed."""
    out = dict(record)
    for column in _JSON.get(table, ()):
        out[column] = store._dumps(out.get(column))
    for column in _TEXT_SCRUBBED.get(table, ()):
        if out.get(column):
            out[column] = store.scrub(out[column])
    return out


def _read_jsonl(source: Path) -> tuple[list[Record], list[Record]]:
    flows: list[Record] = []
    bundles: list[Record] = []
    header = False
    with source.open(encoding="utf-8") as handle:
        for number, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as exc:
                raise StoreError(f"{source}, line {number}: not JSON ({exc.msg})") from None
            if not isinstance(record, dict):
                raise StoreError(f"{source}, line {number}: expected a JSON object")
            if not header:
                _check_header(source, number, record)
                header = True
                continue
            kind = record.pop("kind", None)
            if kind == "flow":
                flows.append(_require(record, FLOW_FIELDS, source, number, "flow"))
            elif kind == "run":
                bundles.append(_bundle(record, source, number))
            else:
                raise StoreError(f"{source}, line {number}: unknown record kind {kind!r}")
    if not header:
        raise StoreError(f"{source}: the file is empty; it is not an export")
    return flows, bundles


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


def _bundle(record: Record, source: Path, number: int) -> Record:
    run = record.get("run")
    if not isinstance(run, dict):
        raise StoreError(f"{source}, line {number}: a run record needs a 'run' object")
    bundle: Record = {"run": _require(run, RUN_FIELDS, source, number, "run")}
    for table, fields, _ in _CHILDREN:
        rows = record.get(table, [])
        if not isinstance(rows, list):
            raise StoreError(f"{source}, line {number}: '{table}' must be a list")
        bundle[table] = [_require(r, fields, source, number, table) for r in rows]
    return bundle


def _require(record: Any, fields: Sequence[str], source: Path, number: int, what: str) -> Record:
    if not isinstance(record, dict):
        raise StoreError(f"{source}, line {number}: a {what} entry must be a JSON object")
    missing = [f for f in fields if f not in record]
    if missing:
        raise StoreError(f"{source}, line {number}: {what} lacks {', '.join(missing)}")
    return {f: record[f] for f in fields}


def _read_sqlite(source: Path) -> tuple[list[Record], list[Record]]:
    try:
        conn = sqlite3.connect(source.resolve().as_uri() + "?mode=ro", uri=True)
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{source}: cannot open: {exc}") from None
    try:
        version = stored_version(conn)
        refuse_newer(version, path=str(source))
        if version == 0:
            raise StoreError(f"{source}: not a master_sdk store (no schema version)")
        if version < SCHEMA_VERSION:
            conn.close()
            return _read_migrated_copy(source)
        return _read_connection(conn)
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{source}: cannot read: {exc}") from None
    finally:
        conn.close()


def _read_migrated_copy(source: Path) -> tuple[list[Record], list[Record]]:
    # an older store is migrated in a private copy: the file being imported stays as it is
    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / "source.sqlite3"
        conn = sqlite3.connect(source.resolve().as_uri() + "?mode=ro", uri=True)
        dest = sqlite3.connect(str(copy), isolation_level=None)
        try:
            conn.backup(dest)
            ensure_schema(dest, path=str(source))
            return _read_connection(dest)
        finally:
            conn.close()
            dest.close()


def _read_connection(conn: sqlite3.Connection) -> tuple[list[Record], list[Record]]:
    conn.execute("BEGIN")
    try:
        flows = [
            dict(zip(FLOW_FIELDS, r, strict=True))
            for r in conn.execute(f"SELECT {', '.join(FLOW_FIELDS)} FROM flow_versions")  # noqa: S608  # constants
        ]
        ids = [r[0] for r in conn.execute("SELECT run_id FROM runs ORDER BY pk")]
        bundles = [_decoded(b) for b in _bundles(conn, ids)]
    finally:
        conn.execute("COMMIT")
    return flows, bundles
