"""A run's lineage: the runs it was forked from and the runs forked from it.

Built from the run list of the run's flow (forks run on their parent's flow), read once:
``parent_run_id`` and ``forked_at`` are columns of the runs table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from master_sdk.workbench import Workbench

__all__ = ["LINEAGE_COLUMNS", "lineage"]

LINEAGE_COLUMNS = [
    "run_id",
    "relation",
    "depth",
    "parent_run_id",
    "forked_at",
    "status",
    "created_at",
]
"""Columns of :func:`lineage` (documented in ``docs/dataframes.md``)."""


def lineage(wb: Workbench, run_id: str, product: str, flow: str) -> pd.DataFrame:
    """Ancestors (oldest first), the run itself, then its descendants (breadth first).

    ``relation`` is ``ancestor``, ``self`` or ``descendant``; ``depth`` counts forks from the
    run: -1 its parent, 0 itself, 1 its children, 2 their children...
    """
    runs = wb.runs(product=product, flow=flow).set_index("run_id", drop=False)
    parents = runs["parent_run_id"]
    rows: list[tuple[str, str, int]] = []
    chain: list[str] = []
    seen = {run_id}
    current = parents.get(run_id)
    while isinstance(current, str) and current in runs.index and current not in seen:
        chain.append(current)
        seen.add(current)
        current = parents.get(current)
    for depth, ancestor in zip(range(-len(chain), 0), reversed(chain), strict=True):
        rows.append((ancestor, "ancestor", depth))
    rows.append((run_id, "self", 0))
    children: dict[str, list[str]] = {}
    # the run list is newest first: children are listed oldest first
    for child, parent in zip(runs["run_id"][::-1], parents[::-1], strict=True):
        if isinstance(parent, str):
            children.setdefault(parent, []).append(child)
    level = [run_id]
    depth = 0
    while level:
        depth += 1
        nxt: list[str] = []
        for parent in level:
            for child in children.get(parent, []):
                if child not in seen:
                    seen.add(child)
                    rows.append((child, "descendant", depth))
                    nxt.append(child)
        level = nxt
    frame = runs.loc[[r[0] for r in rows], ["run_id", "parent_run_id", "forked_at", "status"]]
    frame = frame.assign(
        relation=[r[1] for r in rows],
        depth=[r[2] for r in rows],
        created_at=runs.loc[[r[0] for r in rows], "created_at"].to_numpy(),
    ).reset_index(drop=True)
    frame["relation"] = frame["relation"].astype("category")
    frame["depth"] = frame["depth"].astype("int64")
    return frame[LINEAGE_COLUMNS]
