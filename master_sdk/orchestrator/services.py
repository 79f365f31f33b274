"""What a step's context offers besides ids: embeddings and vector memory.

The workbench builds one :class:`StepServiceFactory` over its router, product catalog and
vector memory; the tool executor asks it for a step's :class:`StepServices`, which back
``ToolContext.embed`` and ``ToolContext.memory``. Collections are resolved here from the
product's declaration (``config/product.yaml`` ``collections:``) and the router's model
entries: the model must be of kind ``embedding`` and its dimensions must agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from master_sdk.errors import CollectionError, FlowError
from master_sdk.memory.vector_memory import (
    Declared,
    StepBinding,
    VectorMemory,
    not_declared,
)
from master_sdk.memory.vectors import VectorStore
from master_sdk.orchestrator.agents import DEFAULT_EMBEDDING
from master_sdk.tools.executor import StepServices

if TYPE_CHECKING:
    from master_sdk.authoring import Embeddings, Memory
    from master_sdk.contracts.policy import Policy
    from master_sdk.models.router import ModelScope, Router
    from master_sdk.products.loader import ProductCatalog

__all__ = ["StepServiceFactory", "build_memory", "vector_store_for"]


def vector_store_for(store: Any, *, crash: Any = None) -> VectorStore:
    """Where a run store keeps vector collections: in its own SQLite file or PostgreSQL
    database, or in process memory beside an in-memory run store. ``crash`` is called
    with ``commit:vectors`` inside each vector write (crash tests)."""
    from master_sdk.memory.sqlite import SQLiteStore
    from master_sdk.memory.sqlite_vectors import SQLiteVectorStore
    from master_sdk.memory.vectors import InMemoryVectorStore

    before = (lambda label: crash(f"commit:{label}")) if crash is not None else None
    if isinstance(store, SQLiteStore):
        return SQLiteVectorStore(store, before_commit=before)
    if getattr(store, "kind", None) == "postgresql":
        from master_sdk.memory.postgres.vectors import PostgresVectorStore

        return PostgresVectorStore(store, before_commit=before)
    return InMemoryVectorStore()


def build_memory(
    store: VectorStore,
    *,
    router: Router,
    catalog: ProductCatalog,
    redact: Any,
    crash: Any = None,
) -> VectorMemory:
    """The workbench's :class:`VectorMemory`: collections declared by ``catalog``'s
    products, embedded through ``router``, kept in ``store``."""

    def declared(product: str, name: str) -> Declared:
        return resolve_collection(router, catalog, product, name)

    def embed(
        model: str, texts: Sequence[str], scope: ModelScope | None, policy: Policy
    ) -> Embeddings:
        return router.embed(model, texts, aliases=None, scope=scope, policy=policy)

    return VectorMemory(store, embed=embed, declared=declared, redact=redact, crash=crash)


def resolve_collection(
    router: Router, catalog: ProductCatalog, product: str, name: str
) -> Declared:
    """A product's declared collection with its embedding model resolved.

    Raises:
        CollectionError: the product declares no such collection, or its model is not an
            embedding model, or the dimensions are unknown or disagree.
        FlowError: the product is broken.
    """
    loaded = catalog.product(product)
    spec = loaded.config.collections.get(name)
    if spec is None:
        raise not_declared(product, name, list(loaded.config.collections))
    aliases = loaded.config.models
    logical = aliases.get(spec.model, spec.model)
    where = f"products/{product}/config/product.yaml, collections.{name}"
    try:
        resolved = router.resolve(logical)
    except FlowError:
        raise
    except Exception as exc:
        raise CollectionError(f"{where}.model: {exc}") from None
    entry = resolved.entry
    if entry.kind != "embedding":
        raise CollectionError(
            f"{where}.model: '{logical}' is a chat model; give a model of kind embedding "
            "(configs/models.yaml), e.g. default_embedding"
        )
    dims = spec.dimensions or entry.dimensions
    if dims is None:
        raise CollectionError(
            f"{where}.dimensions: model '{logical}' does not say its dimensions; set "
            "dimensions on the collection or on the model"
        )
    if entry.dimensions is not None and spec.dimensions not in (None, entry.dimensions):
        raise CollectionError(
            f"{where}.dimensions: {spec.dimensions} differs from model '{logical}' "
            f"({entry.dimensions})"
        )
    source = resolved.wrapped if resolved.wrapped is not None else resolved
    identity = f"{source.entry.provider}:{source.provider_model}"
    return Declared(
        product=product,
        name=name,
        spec=spec,
        model=logical,
        model_identity=identity,
        dimensions=dims,
        policy=loaded.policy,
    )


class StepServiceFactory:
    """Builds the :class:`StepServices` of one tool step (see the module docstring)."""

    def __init__(self, *, router: Router, memory: VectorMemory) -> None:
        self.router = router
        self.memory = memory

    def __call__(self, scope: Any) -> StepServices:
        flow = getattr(scope, "flow", None)
        product: str = flow.product if flow is not None else ""
        aliases = flow.model_aliases if flow is not None else {}
        binding = StepBinding(
            run_id=scope.run_id,
            step_id=scope.step_id,
            step_type=scope.step_type,
            attempt=scope.attempt,
            scope=scope,
        )
        router = self.router
        known = router.names | set(aliases)

        def embed(texts: Sequence[str], model: str | None) -> Embeddings:
            wanted = model or DEFAULT_EMBEDDING
            try:
                scope.budget.check_model_name(scope.step_id, wanted, known)
                return router.embed(wanted, texts, aliases=aliases, scope=scope)
            except Exception as exc:
                from master_sdk.errors import PolicyViolation

                if isinstance(exc, PolicyViolation):
                    binding.violations.append(exc)
                raise

        def memory(name: str) -> Memory:
            if not product:
                raise CollectionError("vector memory needs a step of a product's flow")
            return self.memory.collection(product, name, step=binding)

        return StepServices(embed=embed, memory=memory, violations=binding.violations)
