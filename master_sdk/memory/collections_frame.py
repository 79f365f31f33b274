"""``wb.collections()``: every vector collection as a DataFrame, beside its declaration.

Columns (see ``docs/dataframes.md``): ``collection`` (``product/name``), ``product``,
``name``, ``entries``, ``model`` (what the stored vectors were embedded with, as
``provider:model``), ``dimensions``, ``declared_model`` (what the product's declaration
resolves to now, empty when the product or the collection is gone), ``stale`` (True when
the two differ: search and add refuse until :meth:`Collection.reembed`), ``version`` and
``max_items``. Declared collections nothing was added to yet appear with 0 entries.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from master_sdk.errors import MasterError

if TYPE_CHECKING:
    import pandas as pd

    from master_sdk.memory.vector_memory import Declared
    from master_sdk.memory.vectors import CollectionInfo

__all__ = ["COLUMNS", "collections_frame"]

COLUMNS = (
    "collection", "product", "name", "entries", "model", "dimensions", "declared_model",
    "stale", "version", "max_items",
)  # fmt: skip


def collections_frame(
    stored: list[CollectionInfo],
    declared: Callable[[str, str], Declared],
    products: dict[str, list[str]],
) -> pd.DataFrame:
    """One row per stored or declared collection, by name.

    Args:
        stored: what the vector store holds.
        declared: resolves ``(product, name)`` to its declaration (raising when gone).
        products: each loadable product's declared collection names.
    """
    import pandas as pd

    rows: dict[str, dict[str, Any]] = {}
    for info in stored:
        product, _, name = info.name.partition("/")
        rows[info.name] = {
            "collection": info.name,
            "product": product,
            "name": name,
            "entries": info.count,
            "model": info.model,
            "dimensions": info.dimensions,
            "version": info.version,
        }
    for product, names in products.items():
        for name in names:
            rows.setdefault(
                f"{product}/{name}",
                {"collection": f"{product}/{name}", "product": product, "name": name,
                 "entries": 0, "model": None, "dimensions": None, "version": 0},
            )  # fmt: skip
    for row in rows.values():
        try:
            found = declared(row["product"], row["name"])
        except MasterError:
            row.update(declared_model=None, stale=False, max_items=None)
            continue
        row["declared_model"] = found.model_identity
        row["max_items"] = found.spec.max_items
        row["stale"] = row["model"] is not None and (
            row["model"] != found.model_identity or row["dimensions"] != found.dimensions
        )
        if row["model"] is None:
            row["dimensions"] = found.dimensions
    ordered = [rows[key] for key in sorted(rows)]
    dtypes = {
        "collection": "string", "product": "string", "name": "string", "entries": "int64",
        "model": "string", "dimensions": "Int64", "declared_model": "string",
        "stale": "boolean", "version": "int64", "max_items": "Int64",
    }  # fmt: skip
    return pd.DataFrame(
        {col: pd.Series([r.get(col) for r in ordered], dtype=dtypes[col]) for col in COLUMNS}
    )
