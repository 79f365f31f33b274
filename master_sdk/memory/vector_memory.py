"""Governed vector memory: the collections products declare, as tools and notebooks see them.

:class:`VectorMemory` belongs to a workbench. It hands out :class:`Collection` handles —
bound to a run step for tools (``ctx.memory("tickets")``) or detached for notebooks
(``wb.memory("support_answers/tickets")``) — and keeps one in-memory search index per
collection, refreshed when the store's version of the collection moved (another process
wrote).

Governance on every path:

* a collection must be declared by the product and allowed by the policy's
  ``allowed_collections`` (a refusal blocks the run, like a tool outside ``allowed_tools``);
* texts are redacted before they are stored; ``policy.redact_before_embedding`` (default
  on) decides whether the embedding model sees the redacted or the raw text — queries are
  treated the same way, so they are compared like with like;
* ``max_items`` and ``max_text_chars`` are checked before anything is embedded or written;
* inside a run, embedding calls are governed by the router (budget, allow-list, trace) and
  every add, search and delete is a trace event (``memory_added``, ``memory_searched``
  with the redacted query, ``k``, the filter and the hits' ids and scores,
  ``memory_deleted``).

Adding from a run step is idempotent: entries without explicit ids get
``run_id:step_id:n`` (``n`` counts the step's entries), so a retried step writes the same
ids again — replacing, never duplicating — and entries an earlier attempt wrote under the
step's prefix that the retry does not write again are removed in the same transaction.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from master_sdk.authoring import Embeddings, Hit
from master_sdk.errors import CollectionError, PolicyViolation
from master_sdk.memory.vector_index import VectorIndex
from master_sdk.memory.vectors import (
    CollectionFull,
    CollectionInfo,
    Entry,
    VectorStore,
    WriteResult,
    step_prefix,
)

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from master_sdk.contracts.memory import CollectionSpec
    from master_sdk.contracts.policy import Policy
    from master_sdk.models.router import ModelScope

__all__ = [
    "Collection",
    "CollectionError",
    "Declared",
    "Hits",
    "StaleCollection",
    "StepBinding",
    "VectorMemory",
    "not_declared",
    "stale",
]

Scrub = Callable[[Any], Any]
EmbedFn = Callable[[str, Sequence[str], "ModelScope | None", "Policy"], Embeddings]
MAX_K = 1000
# a search repeated this often against a collection that keeps changing returns what the
# last try read (its hits exist; their scores are from a moment before)
_SEARCH_TRIES = 3
MAX_ID_CHARS = 256
_PY_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
}


@dataclass(frozen=True, slots=True)
class Declared:
    """What a product declares about one collection, resolved: its spec, the model's
    identity (provider and provider model, stored with the vectors) and dimensions."""

    product: str
    name: str
    spec: CollectionSpec
    model: str
    model_identity: str
    dimensions: int
    policy: Policy

    @property
    def full_name(self) -> str:
        """``product/collection``."""
        return f"{self.product}/{self.name}"


@dataclass(slots=True)
class StepBinding:
    """A run step using memory: where events go, what ids its entries get, and the
    policy violations it caused (re-raised even if the tool swallows them)."""

    run_id: str
    step_id: str
    step_type: str
    attempt: int
    scope: ModelScope
    violations: list[PolicyViolation] = field(default_factory=list)
    added: int = 0


class Hits(list[Hit]):
    """Search results, best first; :meth:`frame` shows them as a DataFrame."""

    def frame(self) -> pd.DataFrame:
        """One row per hit: ``rank, id, score`` and ``text``, then one column per
        metadata field present, with a nullable dtype (columns in ``docs/dataframes.md``)."""
        import pandas as pd

        fields = list(dict.fromkeys(key for hit in self for key in hit.metadata))
        data: dict[str, Any] = {
            "rank": pd.array(range(1, len(self) + 1), dtype="int64"),
            "id": pd.array([h.id for h in self], dtype="string"),
            "score": pd.array([h.score for h in self], dtype="float64"),
            "text": pd.array([h.text for h in self], dtype="string"),
        }
        for name in fields:
            values: list[Any] = [h.metadata.get(name) for h in self]
            # typed like the collection's frame: string, Int64, Float64 or boolean
            data[name] = pd.Series(values, dtype=object).convert_dtypes().array
        return pd.DataFrame(data)


class _Slot:
    """One collection's index and the lock that guards it and its writes."""

    __slots__ = ("index", "lock")

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.index: VectorIndex | None = None


class VectorMemory:
    """The vector memory of one workbench (see the module docstring).

    Args:
        store: where collections persist.
        embed: ``embed(model, texts, scope, policy)`` through the router.
        declared: the :class:`Declared` collection ``name`` of ``product`` (raises
            CollectionError when the product declares no such collection).
        redact: the workbench's redaction of values.
        crash: the crash-point hook (tests), called with ``"after_vectors"``.
        kernel: how indexes scan (see :class:`~master_sdk.memory.vector_index.VectorIndex`).
    """

    def __init__(
        self,
        store: VectorStore,
        *,
        embed: EmbedFn,
        declared: Callable[[str, str], Declared],
        redact: Scrub,
        crash: Callable[[str], None] | None = None,
        kernel: Literal["auto", "numpy"] = "auto",
    ) -> None:
        self.store = store
        self._kernel: Literal["auto", "numpy"] = kernel
        self._embed = embed
        self._declared = declared
        self._redact = redact
        self._crash = crash
        self._lock = threading.Lock()
        self._slots: dict[str, _Slot] = {}
        self._opened: set[str] = set()

    def collection(self, product: str, name: str, *, step: StepBinding | None = None) -> Collection:
        """A handle on a declared collection, checked against ``allowed_collections``.

        Raises:
            CollectionError: the product declares no collection ``name``.
            PolicyViolation: the policy's ``allowed_collections`` does not list it.
        """
        declared = self._declared(product, name)
        policy = step.scope.policy if step is not None else declared.policy
        allowed = policy.allowed_collections
        if allowed is not None and name not in allowed:
            from master_sdk.governance.budgets import refusal

            exc = PolicyViolation(
                "allowed_collections",
                limit=allowed,
                value=name,
                step=step.step_id if step is not None else None,
                message=refusal("collection", name, allowed),
            )
            if step is not None:
                step.violations.append(exc)
            raise exc
        self._open(declared)
        return Collection(self, declared, policy, step)

    def _open(self, declared: Declared) -> CollectionInfo | None:
        full = declared.full_name
        if full in self._opened:
            return None
        stored = self.store.info(full)
        if stored is not None and stale(stored, declared):
            # left as it is: count, frame, get and delete work; search and add say what to do
            return stored
        info = self.store.open_collection(
            full,
            model=declared.model_identity,
            dimensions=declared.dimensions,
            fields=declared.spec.metadata,
        )
        with self._lock:
            self._opened.add(full)
        return info

    def check_current(self, declared: Declared) -> None:
        """Raise :class:`StaleCollection` when the stored vectors are of another model or
        size than the declaration (one store read, only until the collection is opened)."""
        full = declared.full_name
        if full in self._opened:
            return
        stored = self.store.info(full)
        if stored is not None and stale(stored, declared):
            raise StaleCollection(declared, stored)
        self._open(declared)

    def collections(self) -> list[CollectionInfo]:
        """Every collection the store holds."""
        return self.store.collections()

    def declaration(self, product: str, name: str) -> Declared:
        """What ``product`` declares about collection ``name`` (raises CollectionError)."""
        return self._declared(product, name)

    def _slot(self, full: str) -> _Slot:
        with self._lock:
            slot = self._slots.get(full)
            if slot is None:
                slot = self._slots[full] = _Slot()
            return slot

    def _loaded(self, declared: Declared, slot: _Slot) -> VectorIndex:
        """The collection's index as the store holds it now (call with ``slot.lock``)."""
        stored = self.store.info(declared.full_name)
        if stored is not None and stale(stored, declared):
            # re-embedded with another model by another process since this one opened it
            with self._lock:
                self._opened.discard(declared.full_name)
            slot.index = None
            raise StaleCollection(declared, stored)
        snapshot = self.store.load(declared.full_name)
        index = VectorIndex(
            declared.dimensions, declared.spec.metadata, snapshot.version, kernel=self._kernel
        )
        index.upsert(snapshot.ids, snapshot.vectors, snapshot.metadata)
        slot.index = index
        return index

    def _applied(
        self, slot: _Slot, result: WriteResult, change: Callable[[VectorIndex], None]
    ) -> None:
        """Apply a committed write to the in-memory index when it is the next version;
        otherwise another writer came between and the index reloads on next use."""
        index = slot.index
        if index is None:
            return
        if index.version == result.version - 1:
            change(index)
            index.version = result.version
        else:
            slot.index = None


class Collection:
    """A vector memory collection (the :class:`~master_sdk.authoring.Memory` protocol).

    From a tool: ``ctx.memory("tickets")``; from a notebook:
    ``wb.memory("support_answers/tickets")``, which adds :meth:`frame`.
    """

    def __init__(
        self,
        memory: VectorMemory,
        declared: Declared,
        policy: Policy,
        step: StepBinding | None,
    ) -> None:
        self._memory = memory
        self._declared = declared
        self._policy = policy
        self._step = step
        self.name = declared.name

    @property
    def full_name(self) -> str:
        """``product/collection``, as the store names it."""
        return self._declared.full_name

    @property
    def spec(self) -> CollectionSpec:
        """The collection's declaration."""
        return self._declared.spec

    def __repr__(self) -> str:
        return f"Collection({self.full_name!r}, count={self.count()})"

    # ------------------------------------------------------------------ writes

    def add(
        self,
        texts: Sequence[str],
        *,
        metadata: Sequence[Mapping[str, Any]] | None = None,
        ids: Sequence[str] | None = None,
    ) -> list[str]:
        """Embed and store ``texts``; returns their ids.

        Texts are redacted before they are stored (and, by policy, before they are
        embedded). An id that exists is replaced. Without ``ids``: inside a run step,
        ``run_id:step_id:n`` (stable across retries of the step); from a notebook, a hash
        of the redacted text and metadata (adding the same text twice keeps one entry).

        Raises:
            CollectionError: texts, metadata or ids do not fit the declaration.
            PolicyViolation: ``max_text_chars`` or ``max_items`` would be exceeded, or a
                budget refuses the embedding calls; nothing was written.
        """
        from master_sdk.tracing.events import now_us

        if isinstance(texts, str):
            raise CollectionError(f"{self.full_name}: add() takes a list of strings, not one")
        texts = list(texts)
        if not all(isinstance(t, str) for t in texts):
            raise CollectionError(f"{self.full_name}: add() takes a list of strings")
        if not texts:
            return []
        self._memory.check_current(self._declared)
        metas = self._check_metadata(texts, metadata)
        spec = self.spec
        for i, text in enumerate(texts):
            if len(text) > spec.max_text_chars:
                self._violation(
                    "max_text_chars",
                    spec.max_text_chars,
                    len(text),
                    f"text {i} has {len(text)} characters, above max_text_chars "
                    f"{spec.max_text_chars} of collection '{self.name}'",
                )
        stored = [self._redact_text(t) for t in texts]
        keys = self._ids(stored, metas, ids)
        step = self._step
        if step is not None:
            step.added += len(texts)
        memory = self._memory
        slot = memory._slot(self.full_name)
        vectors = self._vectors(stored if self._policy.redact_before_embedding else texts)
        at = now_us()
        origin = (step.run_id, step.step_id, step.attempt) if step is not None else None
        entries = [
            Entry(
                id=key,
                text=text,
                vector=vectors[i],
                metadata=metas[i],
                added_us=at,
                run_id=step.run_id if step is not None else None,
                step_id=step.step_id if step is not None else None,
                attempt=step.attempt if step is not None else None,
            )
            for i, (key, text) in enumerate(zip(keys, stored, strict=True))
        ]
        with slot.lock:
            try:
                result = memory.store.upsert(
                    self.full_name, entries, max_items=spec.max_items, origin=origin
                )
            except CollectionFull as exc:
                self._violation("max_items", exc.limit, exc.value, str(exc))

            def change(index: VectorIndex) -> None:
                index.remove(result.removed)
                index.upsert(keys, vectors, metas)

            memory._applied(slot, result, change)
        if memory._crash is not None:
            memory._crash("after_vectors")
        self._event(
            "memory_added",
            {
                "entries": len(keys),
                "added": result.added,
                "replaced": result.replaced,
                "removed_earlier_attempt": len(result.removed),
                "ids": keys[:20],
            },
        )
        return keys

    def delete(self, ids: Sequence[str]) -> int:
        """Remove entries by id; returns how many existed (unknown ids are ignored)."""
        wanted = [ids] if isinstance(ids, str) else list(ids)
        memory = self._memory
        slot = memory._slot(self.full_name)
        with slot.lock:
            result = memory.store.delete(self.full_name, wanted)
            memory._applied(slot, result, lambda index: index.remove(result.removed))
        self._event("memory_deleted", {"requested": len(wanted), "deleted": len(result.removed)})
        return len(result.removed)

    # ------------------------------------------------------------------ reads

    def search(self, query: str, *, k: int = 5, where: Mapping[str, Any] | None = None) -> Hits:
        """The ``k`` entries most similar to ``query`` (cosine similarity, exact) that
        match ``where`` (see :mod:`master_sdk.memory.vector_index` for the syntax).

        Raises:
            FilterError: ``where`` names an unknown field or operator, or a wrong type.
        """
        import numpy as np

        if not isinstance(query, str):
            raise CollectionError(f"{self.full_name}: search() takes a query string")
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
            raise CollectionError(f"{self.full_name}: k must be an integer from 1 to {MAX_K}")
        self._memory.check_current(self._declared)
        redacted = self._redact_text(query)
        vector = self._vectors([redacted if self._policy.redact_before_embedding else query])[0]
        memory = self._memory
        slot = memory._slot(self.full_name)
        vector = vector.astype(np.float32)
        with slot.lock:
            # search what this process holds, then read the hits' texts together with the
            # collection's version: one round trip, unless another process or workbench
            # wrote since, in which case the index is reloaded and the search repeated
            index = slot.index or memory._loaded(self._declared, slot)
            for _ in range(_SEARCH_TRIES):
                found = index.search(vector, k, where)
                version, entries = memory.store.hits(self.full_name, [i for i, _ in found])
                if version == index.version:
                    break
                index = memory._loaded(self._declared, slot)
        stored = {e.id: e for e in entries}
        hits = Hits(
            Hit(
                id=key,
                score=score,
                text=self._redact(stored[key].text),
                metadata=stored[key].metadata,
            )
            for key, score in found
            if key in stored
        )
        self._event(
            "memory_searched",
            {
                "query": redacted,
                "k": k,
                "where": dict(where) if where else None,
                "hits": [{"id": h.id, "score": round(h.score, 6)} for h in hits],
            },
        )
        return hits

    def reembed(self, *, batch: int = 512) -> int:
        """Embed every stored text again with the declared model, and replace the vectors
        and the collection's model in one transaction; returns how many entries.

        Needed after the collection's model (or its provider model, or dimensions)
        changed in ``config/product.yaml`` or ``configs/models.yaml``: until then a search
        or add raises :class:`StaleCollection`. The stored texts are the redacted ones,
        so after re-embedding the model has seen redacted texts even where
        ``redact_before_embedding`` was off. Embedding calls go through the router
        (``batch`` texts per call; budgets apply inside a run).

        Raises:
            StoreError: an entry was written while the texts were being embedded
                (nothing was replaced; run it again).

        Example:
            >>> wb.memory("support_answers/tickets").reembed()  # doctest: +SKIP
            500
        """
        import numpy as np

        memory = self._memory
        declared = self._declared
        full = self.full_name
        slot = memory._slot(full)
        with slot.lock:
            stored = memory.store.info(full)
            if stored is None:
                memory._open(declared)
                return 0
            entries = memory.store.entries(full)
            texts = [e.text for e in entries]
            parts = [self._vectors(texts[at : at + batch]) for at in range(0, len(texts), batch)]
            vectors = np.vstack(parts) if parts else np.zeros((0, declared.dimensions), np.float32)
            memory.store.reembed(
                full,
                model=declared.model_identity,
                dimensions=declared.dimensions,
                ids=[e.id for e in entries],
                vectors=vectors,
                expect_version=stored.version,
            )
            slot.index = None
            with memory._lock:
                memory._opened.discard(full)
            memory._open(declared)
        return len(entries)

    def count(self) -> int:
        """How many entries the collection holds."""
        return self._memory.store.count(self.full_name)

    def get(self, ids: Sequence[str]) -> list[dict[str, Any]]:
        """Stored entries by id (those that exist), as ``{id, text, metadata}``."""
        return [
            {"id": e.id, "text": self._redact(e.text), "metadata": e.metadata}
            for e in self._memory.store.entries(self.full_name, list(ids))
        ]

    def frame(self) -> pd.DataFrame:
        """Every entry as a DataFrame: ``id, text``, one column per declared metadata
        field, ``run_id, step_id, attempt, added_at`` (see ``docs/dataframes.md``)."""
        import pandas as pd

        rows = self._memory.store.entries(self.full_name)
        data: dict[str, Any] = {
            "id": pd.array([r.id for r in rows], dtype="string"),
            "text": pd.array([self._redact(r.text) for r in rows], dtype="string"),
        }
        dtypes = {"string": "string", "integer": "Int64", "number": "Float64", "boolean": "boolean"}
        for name, kind in self.spec.metadata.items():
            values: list[Any] = [r.metadata.get(name) for r in rows]
            data[name] = pd.Series(values, dtype=dtypes[kind]).array
        data["run_id"] = pd.array([r.run_id for r in rows], dtype="string")
        data["step_id"] = pd.array([r.step_id for r in rows], dtype="string")
        data["attempt"] = pd.array([r.attempt for r in rows], dtype="Int64")
        data["added_at"] = pd.to_datetime([r.added_us for r in rows], unit="us", utc=True)
        return pd.DataFrame(data)

    # ------------------------------------------------------------------ helpers

    def _redact(self, value: Any) -> Any:
        return self._memory._redact(value)

    def _redact_text(self, text: str) -> str:
        return str(self._redact(text))

    def _vectors(self, texts: Sequence[str]) -> np.ndarray:
        import numpy as np

        declared = self._declared
        step = self._step
        scope = step.scope if step is not None else None
        try:
            result = self._memory._embed(declared.model, texts, scope, self._policy)
        except PolicyViolation as exc:
            if step is not None:
                step.violations.append(exc)
            raise
        vectors = np.asarray(result.vectors, dtype=np.float32)
        if vectors.shape != (len(texts), declared.dimensions):
            raise CollectionError(
                f"{self.full_name}: model '{declared.model}' returned vectors of shape "
                f"{vectors.shape}; the collection holds {declared.dimensions} dimensions"
            )
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        # a zero vector (an empty text to some models) stays zero and matches nothing
        unit: np.ndarray = np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
        return unit

    def _check_metadata(
        self, texts: list[str], metadata: Sequence[Mapping[str, Any]] | None
    ) -> list[dict[str, Any]]:
        fields = self.spec.metadata
        if metadata is None:
            return [{} for _ in texts]
        metas = list(metadata)
        if len(metas) != len(texts):
            raise CollectionError(
                f"{self.full_name}: {len(metas)} metadata entries for {len(texts)} texts"
            )
        clean: list[dict[str, Any]] = []
        for i, meta in enumerate(metas):
            if not isinstance(meta, Mapping):
                raise CollectionError(f"{self.full_name}: metadata {i} is not a mapping")
            row: dict[str, Any] = {}
            for key, value in meta.items():
                kind = fields.get(key)
                if kind is None:
                    known = ", ".join(sorted(fields)) or "(none declared)"
                    raise CollectionError(
                        f"{self.full_name}: metadata {i} has field '{key}', which the "
                        f"collection does not declare (fields: {known}); declare it under "
                        f"collections.{self.name}.metadata in config/product.yaml"
                    )
                if value is None:
                    continue
                wrong = not isinstance(value, _PY_TYPES[kind]) or (
                    kind != "boolean" and isinstance(value, bool)
                )
                if wrong:
                    raise CollectionError(
                        f"{self.full_name}: metadata {i} field '{key}' must be {kind}, "
                        f"got {type(value).__name__}"
                    )
                row[key] = self._redact(value) if kind == "string" else value
            clean.append(row)
        return clean

    def _ids(
        self, stored: list[str], metas: list[dict[str, Any]], ids: Sequence[str] | None
    ) -> list[str]:
        if ids is not None:
            keys = [ids] if isinstance(ids, str) else list(ids)
            if len(keys) != len(stored):
                raise CollectionError(f"{self.full_name}: {len(keys)} ids for {len(stored)} texts")
            for key in keys:
                if not isinstance(key, str) or not key or len(key) > MAX_ID_CHARS:
                    raise CollectionError(
                        f"{self.full_name}: an id must be a non-empty string of at most "
                        f"{MAX_ID_CHARS} characters"
                    )
                if self._redact(key) != key:
                    # redacting it would merge different entries: refuse instead
                    raise CollectionError(
                        f"{self.full_name}: an id holds personal data or a secret "
                        f"({self._redact(key)}); use a key without it"
                    )
        elif self._step is not None:
            step = self._step
            first = step.added
            prefix = step_prefix(step.run_id, step.step_id)
            keys = [f"{prefix}{first + i}" for i in range(len(stored))]
        else:
            keys = [_content_id(text, meta) for text, meta in zip(stored, metas, strict=True)]
        if len(set(keys)) != len(keys):
            raise CollectionError(f"{self.full_name}: ids repeat within one add()")
        return keys

    def _violation(self, rule: str, limit: Any, value: Any, message: str) -> None:
        step = self._step
        exc = PolicyViolation(
            rule,
            limit=limit,
            value=value,
            step=step.step_id if step is not None else None,
            message=message,
        )
        if step is not None:
            step.violations.append(exc)
        raise exc

    def _event(self, event: str, attrs: dict[str, Any]) -> None:
        step = self._step
        if step is None:
            return
        step.scope.trace.emit(
            event,
            step_id=step.step_id,
            step_type=step.step_type,
            name=self.name,
            status="ok",
            attrs=attrs,
        )


def _content_id(text: str, metadata: Mapping[str, Any]) -> str:
    digest = hashlib.sha256(
        json.dumps([text, metadata], sort_keys=True, ensure_ascii=False).encode("utf-8")
    )
    return f"h:{digest.hexdigest()[:24]}"


def not_declared(product: str, name: str, declared: Sequence[str]) -> CollectionError:
    """The error for a collection a product does not declare."""
    known = ", ".join(sorted(declared)) or "(none)"
    return CollectionError(
        f"product '{product}' declares no vector collection '{name}' (collections: {known}); "
        f"declare it under collections: in products/{product}/config/product.yaml"
    )


def stale(stored: CollectionInfo, declared: Declared) -> bool:
    """Whether a stored collection holds vectors of another model or size than declared."""
    return stored.model != declared.model_identity or stored.dimensions != declared.dimensions


class StaleCollection(CollectionError):
    """The collection's stored vectors come from another embedding model (or size) than
    the one it is declared with: they cannot be compared with new queries."""

    def __init__(self, declared: Declared, stored: CollectionInfo) -> None:
        self.declared = declared
        self.stored = stored
        full = declared.full_name
        super().__init__(
            f"vector collection '{full}' holds {stored.count} entries embedded by "
            f"'{stored.model}' ({stored.dimensions} dimensions), but "
            f"products/{declared.product}/config/product.yaml declares it with model "
            f"'{declared.model}' = '{declared.model_identity}' ({declared.dimensions} "
            "dimensions); their vectors cannot be compared. Re-embed it: "
            f"wb.memory('{full}').reembed() or `master memory reembed {full}` "
            "(or declare the old model again)"
        )
