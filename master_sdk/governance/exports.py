"""Redaction on the way out: every DataFrame the public API returns passes through here.

The store redacts every value before it is written, so what it returns is already clean;
this is defence in depth for data written before a secret was added to the secrets file
(or before a detector existed). It is shaped to cost little on large frames:

* a categorical column is redacted once per category, not once per row;
* a string column once per distinct non-null value;
* an object column (``attrs``, ``output``) once per non-null cell, and the redactor
  returns clean values unchanged without copying;
* numeric, boolean and timestamp columns are never looked at, and neither are the
  identifiers the library generates itself (:data:`GENERATED`: run ids and flow hashes,
  hex digits that cannot hold personal data but number in the thousands);
* a column the frame's builder already redacted with the same redactor (the trace's
  ``attrs``: the store redacts each distinct chunk text once, then copies it into its rows)
  is named by the caller and skipped.

A column is replaced only when something in it changed, so a clean frame comes back as
the same object.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

Redact = Callable[[Any], Any]

__all__ = ["GENERATED", "redact_frame"]

GENERATED: frozenset[str] = frozenset({"run_id", "flow_hash"})
"""Columns of generated identifiers, skipped."""


def redact_frame(
    frame: pd.DataFrame, redact: Redact, *, redacted: Collection[str] = ()
) -> pd.DataFrame:
    """``frame`` with every text and object cell passed through ``redact``.

    Args:
        frame: a frame from the store.
        redact: the workbench's ``Redactor.value``.
        redacted: columns already passed through this same ``redact`` as the frame was
            built (the trace's ``attrs``, redacted once per distinct text), skipped.

    Returns:
        ``frame`` itself when nothing needed redaction, else a copy with the changed columns
        replaced (dtypes kept; a categorical whose categories collide after redaction keeps
        one category per distinct placeholder).
    """
    import pandas as pd

    changed: dict[str, Any] = {}
    for name in frame.columns:
        if name in GENERATED or name in redacted:
            continue
        column = frame[name]
        dtype = column.dtype
        if isinstance(dtype, pd.CategoricalDtype):
            replaced = _categorical(column, redact)
        elif isinstance(dtype, pd.StringDtype):
            replaced = _strings(column, redact)
        elif dtype.kind == "O":
            replaced = _objects(column, redact)
        else:
            continue
        if replaced is not None:
            changed[name] = replaced
    if not changed:
        return frame
    out = frame.copy(deep=False)
    for name, values in changed.items():
        out[name] = values
    return out


def _categorical(column: pd.Series, redact: Redact) -> Any:
    import numpy as np
    import pandas as pd

    categories = list(column.cat.categories)
    new = [redact(c) if isinstance(c, str) else c for c in categories]
    if all(a is b for a, b in zip(new, categories, strict=True)):
        return None
    unique = list(dict.fromkeys(new))
    if len(unique) == len(new):
        return column.cat.rename_categories(new)
    # two categories redact to the same placeholder: merge them through the codes
    position = {value: i for i, value in enumerate(unique)}
    remap = np.array([position[value] for value in new], dtype="int64")
    codes = column.cat.codes.to_numpy()
    merged = np.where(codes >= 0, remap[np.maximum(codes, 0)], -1).astype("int64")
    return pd.Series(
        pd.Categorical.from_codes(
            merged, categories=pd.Index(unique), ordered=bool(column.cat.ordered)
        ),
        index=column.index,
        name=column.name,
    )


def _strings(column: pd.Series, redact: Redact) -> Any:
    present = column.dropna()
    if present.empty:
        return None
    mapping = {}
    for value in present.unique():
        clean = redact(value)
        if clean is not value and clean != value:
            mapping[value] = clean
    if not mapping:
        return None
    return column.replace(mapping)


def _objects(column: pd.Series, redact: Redact) -> Any:
    import pandas as pd

    values = column.tolist()
    out: list[Any] | None = None
    for i, value in enumerate(values):
        if value is None:
            continue
        clean = redact(value)
        if clean is value:
            continue
        if out is None:
            out = list(values)
        out[i] = clean
    if out is None:
        return None
    return pd.Series(out, index=column.index, name=column.name, dtype=object)
