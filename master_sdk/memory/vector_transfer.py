"""Vector collections in store exports: written beside the runs, merged back on import.

An export of the whole store carries its collections (an export of chosen runs does not:
memory belongs to the product, not to a run). In the two export formats of
:mod:`master_sdk.memory.transfer`:

* ``.jsonl``: after the runs, one ``{"kind": "collection", ...}`` line per collection
  (name, model, dimensions, metadata fields, entry count) followed by one
  ``{"kind": "vector", ...}`` line per entry (id, text, metadata, run/step/attempt,
  added_us, and the vector as base64 of little-endian ``float32``);
* ``.sqlite3``: the export file's own ``vector_collections`` and ``vectors`` tables, as a
  store keeps them.

Texts and string metadata pass through the workbench's redaction on the way out and on the
way in. An import treats the file as untrusted: every entry is checked (id, text,
metadata, a finite vector of the declared size) and the first problem is named by file
and line (or collection and entry). A collection that exists here with another model or
size is refused before anything is written; entries whose id the collection already
holds are left as they are, so importing twice adds nothing. A collection imported with
another model than its declaration here shows as stale (``wb.collections()``) until it
is re-embedded.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import os
import sqlite3
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from master_sdk.errors import StoreError
from master_sdk.memory.vectors import CollectionInfo, Entry, VectorStore

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "ExportedCollection",
    "ImportPlan",
    "export_collections",
    "import_collections",
    "plan_import",
    "read_collections",
]

Redact = Callable[[Any], Any]
_BATCH = 1000
_MAX_ID_CHARS = 256
_ENTRY_KEYS = {"id", "text", "metadata", "run_id", "step_id", "attempt", "added_us", "vector"}


@dataclass
class ExportedCollection:
    """One collection as a file holds it."""

    info: CollectionInfo
    entries: list[Entry] = field(default_factory=list)


# ---------------------------------------------------------------------------- export


def _exported(
    store: VectorStore, names: Sequence[str] | None, redact: Redact
) -> Iterator[ExportedCollection]:
    import numpy as np

    known = {c.name: c for c in store.collections()}
    wanted = list(known) if names is None else list(names)
    absent = [n for n in wanted if n not in known]
    if absent:
        raise StoreError(f"no vector collection {', '.join(map(repr, absent))} in the store")
    for name in wanted:
        snapshot = store.load(name)
        vectors = dict(zip(snapshot.ids, snapshot.vectors, strict=True))
        entries = [
            Entry(
                id=e.id,
                text=str(redact(e.text)),
                vector=np.asarray(vectors[e.id], dtype=np.float32),
                metadata=_redacted_metadata(e.metadata, redact),
                added_us=e.added_us,
                run_id=e.run_id,
                step_id=e.step_id,
                attempt=e.attempt,
            )
            for e in store.entries(name)
            if e.id in vectors
        ]
        info = known[name]
        yield ExportedCollection(
            CollectionInfo(info.name, info.model, info.dimensions, info.fields, len(entries), 0),
            entries,
        )


def export_collections(
    store: VectorStore,
    target: Path,
    fmt: str,
    *,
    names: Sequence[str] | None = None,
    redact: Redact | None = None,
) -> list[str]:
    """Add collections (all, or ``names``) to an export file being written (``fmt``
    ``jsonl``: appended lines; ``sqlite``: the file's vector tables); returns their names.
    """
    clean = redact or (lambda value: value)
    done: list[str] = []
    if fmt == "jsonl":
        with target.open("a", encoding="utf-8") as out:
            for coll in _exported(store, names, clean):
                _write_jsonl(out, coll)
                done.append(coll.info.name)
            out.flush()
            os.fsync(out.fileno())
        return done
    conn = sqlite3.connect(str(target), isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        for coll in _exported(store, names, clean):
            _write_sqlite(conn, coll)
            done.append(coll.info.name)
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        raise StoreError(f"{target}: could not write the vector collections ({exc})") from None
    finally:
        conn.close()
    return done


def _write_jsonl(out: TextIO, coll: ExportedCollection) -> None:
    info = coll.info
    head = {
        "kind": "collection",
        "name": info.name,
        "model": info.model,
        "dimensions": info.dimensions,
        "fields": info.fields,
        "count": len(coll.entries),
    }
    out.write(json.dumps(head, ensure_ascii=False, separators=(",", ":")) + "\n")
    for e in coll.entries:
        line = {
            "kind": "vector",
            "collection": info.name,
            "id": e.id,
            "text": e.text,
            "metadata": e.metadata,
            "run_id": e.run_id,
            "step_id": e.step_id,
            "attempt": e.attempt,
            "added_us": e.added_us,
            "vector": base64.b64encode(e.vector.astype("<f4").tobytes()).decode("ascii"),
        }
        out.write(json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n")


def _write_sqlite(conn: sqlite3.Connection, coll: ExportedCollection) -> None:
    info = coll.info
    cur = conn.execute(
        "INSERT INTO vector_collections (name, model, dimensions, fields, version, count, "
        "created_us) VALUES (?,?,?,?,1,?,0)",
        (info.name, info.model, info.dimensions, json.dumps(info.fields), len(coll.entries)),
    )
    cid = cur.lastrowid
    conn.executemany(
        "INSERT INTO vectors (cid, id, metadata, run_id, step_id, attempt, added_us, vector, "
        "text) VALUES (?,?,?,?,?,?,?,?,?)",
        [
            (
                cid, e.id, json.dumps(e.metadata) if e.metadata else None, e.run_id,
                e.step_id, e.attempt, e.added_us, e.vector.astype("<f4").tobytes(), e.text,
            )
            for e in coll.entries
        ],
    )  # fmt: skip


# ---------------------------------------------------------------------------- import


def read_collections(source: Path, fmt: str) -> list[ExportedCollection]:
    """The collections an export file holds (none for files without any), checked."""
    if fmt == "jsonl":
        return _read_jsonl(source)
    return _read_sqlite(source)


def _read_jsonl(source: Path) -> list[ExportedCollection]:
    found: dict[str, ExportedCollection] = {}
    with source.open(encoding="utf-8") as handle:
        for number, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            where = f"{source}, line {number}"
            try:
                record = json.loads(text)
            except (json.JSONDecodeError, RecursionError):
                raise StoreError(f"{where}: not valid JSON") from None
            if not isinstance(record, dict):
                raise StoreError(f"{where}: expected a JSON object")
            kind = record.get("kind")  # the header, flows and runs: read by the run import
            if kind == "collection":
                info = _collection_info(record, where)
                if info.name in found:
                    raise StoreError(f"{where}: collection '{info.name}' appears twice")
                found[info.name] = ExportedCollection(info)
            elif kind == "vector":
                owner = found.get(str(record.get("collection")))
                if owner is None:
                    raise StoreError(
                        f"{where}: an entry of collection {record.get('collection')!r} "
                        "before that collection's line"
                    )
                owner.entries.append(_entry(record, owner.info, where, _b64(record, where)))
    return list(found.values())


def _read_sqlite(source: Path) -> list[ExportedCollection]:
    try:
        conn = sqlite3.connect(source.resolve().as_uri() + "?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise StoreError(f"{source}: cannot read ({exc})") from None
    try:
        has = conn.execute(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'vectors'"
        ).fetchone()[0]
        if not has:
            return []
        out: list[ExportedCollection] = []
        heads = conn.execute(
            "SELECT cid, name, model, dimensions, fields FROM vector_collections ORDER BY name"
        ).fetchall()
        for cid, name, model, dims, fields in heads:
            where = f"{source}, collection {name!r}"
            try:
                parsed = json.loads(fields)
            except (json.JSONDecodeError, TypeError):
                raise StoreError(f"{where}: its fields are not JSON") from None
            info = _collection_info(
                {"name": name, "model": model, "dimensions": dims, "fields": parsed}, where
            )
            coll = ExportedCollection(info)
            rows = conn.execute(
                "SELECT id, text, metadata, run_id, step_id, attempt, added_us, vector "
                "FROM vectors WHERE cid = ? ORDER BY rowid",
                (cid,),
            )
            for key, text, meta, run_id, step_id, attempt, added_us, blob in rows:
                record = {
                    "id": key, "text": text, "run_id": run_id, "step_id": step_id,
                    "attempt": attempt, "added_us": added_us,
                    "metadata": json.loads(meta) if meta else {},
                }  # fmt: skip
                blob_bytes = blob if isinstance(blob, bytes) else b""
                coll.entries.append(_entry(record, info, f"{where}, entry {key!r}", blob_bytes))
            out.append(coll)
        return out
    except sqlite3.Error as exc:
        raise StoreError(f"{source}: cannot read its vector collections ({exc})") from None
    finally:
        conn.close()


def _collection_info(record: dict[str, Any], where: str) -> CollectionInfo:
    name, model = record.get("name"), record.get("model")
    dims, fields = record.get("dimensions"), record.get("fields")
    if not isinstance(name, str) or name.count("/") != 1 or not all(name.split("/")):
        raise StoreError(f"{where}: a collection name must be 'product/collection'")
    if not isinstance(model, str) or not model:
        raise StoreError(f"{where}: collection '{name}' has no model")
    if isinstance(dims, bool) or not isinstance(dims, int) or not 1 <= dims <= 65536:
        raise StoreError(f"{where}: collection '{name}' has no valid dimensions")
    kinds = ("string", "integer", "number", "boolean")
    if not isinstance(fields, dict) or any(v not in kinds for v in fields.values()):
        raise StoreError(f"{where}: collection '{name}' fields must map names to {kinds}")
    return CollectionInfo(name, model, dims, {str(k): str(v) for k, v in fields.items()}, 0, 0)


def _b64(record: dict[str, Any], where: str) -> bytes:
    try:
        return base64.b64decode(str(record.get("vector", "")), validate=True)
    except (binascii.Error, ValueError):
        raise StoreError(f"{where}: the vector is not base64") from None


def _entry(record: dict[str, Any], info: CollectionInfo, where: str, blob: bytes) -> Entry:
    import numpy as np

    extra = set(record) - _ENTRY_KEYS - {"kind", "collection"}
    if extra:
        raise StoreError(f"{where}: unknown field(s) {', '.join(sorted(extra))}")
    key, text = record.get("id"), record.get("text")
    if not isinstance(key, str) or not key or len(key) > _MAX_ID_CHARS:
        raise StoreError(f"{where}: an id must be a non-empty string of at most 256 characters")
    if not isinstance(text, str):
        raise StoreError(f"{where}: entry '{key}' has no text")
    meta = record.get("metadata") or {}
    if not isinstance(meta, dict) or not all(
        isinstance(v, str | int | float | bool) or v is None for v in meta.values()
    ):
        raise StoreError(f"{where}: entry '{key}' metadata must be an object of scalars")
    if len(blob) != 4 * info.dimensions:
        raise StoreError(
            f"{where}: entry '{key}' has a vector of {len(blob)} bytes; collection "
            f"'{info.name}' holds {info.dimensions} float32 values ({4 * info.dimensions} bytes)"
        )
    vector = np.frombuffer(blob, dtype="<f4").astype(np.float32)
    if not np.all(np.isfinite(vector)):
        raise StoreError(f"{where}: entry '{key}' has a vector with NaN or infinite values")
    attempt, added_us = record.get("attempt"), record.get("added_us")
    return Entry(
        id=key,
        text=text,
        vector=_unit(vector),
        metadata={str(k): v for k, v in meta.items() if v is not None},
        added_us=added_us if isinstance(added_us, int) and not isinstance(added_us, bool) else 0,
        run_id=_text_or_none(record.get("run_id")),
        step_id=_text_or_none(record.get("step_id")),
        attempt=attempt if isinstance(attempt, int) and not isinstance(attempt, bool) else None,
    )


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = float((vector.astype("float64") ** 2).sum()) ** 0.5
    return vector / norm if norm > 0 and math.isfinite(norm) else vector


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _redacted_metadata(meta: dict[str, Any], redact: Redact) -> dict[str, Any]:
    return {k: redact(v) if isinstance(v, str) else v for k, v in meta.items()}


@dataclass
class ImportPlan:
    """What importing one collection will write: its entries not already here."""

    collection: ExportedCollection
    fresh: list[Entry]
    max_items: int


def plan_import(
    store: VectorStore,
    collections: Sequence[ExportedCollection],
    *,
    source: Path,
    max_items: Callable[[str], int | None] = lambda name: None,
) -> list[ImportPlan]:
    """Check ``collections`` against ``store`` before anything is written (the run import
    included): the same model and size as here, and within declared ``max_items``.

    Raises:
        StoreError: a collection holds another model or size here, or would pass its
            ``max_items``.
    """
    plans: list[ImportPlan] = []
    for coll in collections:
        info = coll.info
        here = store.info(info.name)
        if here is not None and (here.model, here.dimensions) != (info.model, info.dimensions):
            raise StoreError(
                f"{source}: collection '{info.name}' holds '{info.model}' vectors "
                f"({info.dimensions} dimensions) but here it holds '{here.model}' "
                f"({here.dimensions}); nothing was imported. Re-embed one side first "
                f"(`master memory reembed {info.name}`) so both use the same model"
            )
        present: set[str] = set()
        if here is not None:
            present = {e.id for e in store.entries(info.name, [e.id for e in coll.entries])}
        fresh = [e for e in coll.entries if e.id not in present]
        limit = max_items(info.name) or sys.maxsize
        total = (here.count if here is not None else 0) + len(fresh)
        if total > limit:
            raise StoreError(
                f"{source}: importing collection '{info.name}' would make it hold {total} "
                f"entries, above its max_items {limit}; nothing was imported"
            )
        plans.append(ImportPlan(coll, fresh, limit))
    return plans


def import_collections(
    store: VectorStore, plans: Sequence[ImportPlan], *, redact: Redact
) -> tuple[list[str], int]:
    """Write what :func:`plan_import` planned, redacted; returns the collections' names
    and how many entries were added (in batches of 1,000, each one transaction)."""
    added = 0
    for plan in plans:
        info = plan.collection.info
        store.open_collection(
            info.name, model=info.model, dimensions=info.dimensions, fields=info.fields
        )
        for e in plan.fresh:
            e.text = str(redact(e.text))
            e.metadata = _redacted_metadata(e.metadata, redact)
        for at in range(0, len(plan.fresh), _BATCH):
            batch = plan.fresh[at : at + _BATCH]
            added += store.upsert(info.name, batch, max_items=plan.max_items).added
    return [p.collection.info.name for p in plans], added
