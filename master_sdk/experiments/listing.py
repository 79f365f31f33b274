"""``wb.experiments()``: the stored experiments as a DataFrame."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from master_sdk.workbench import Workbench

COLUMNS = (
    "name",
    "ref",
    "status",
    "cases",
    "created_at",
    "updated_at",
    "created_by",
    "flow_hash",
    "product_version",
    "concurrency",
    "max_cost_usd",
    "models",
    "error",
)


def experiments_frame(wb: Workbench) -> pd.DataFrame:
    """One row per experiment, newest first (columns: :data:`COLUMNS`)."""
    import pandas as pd

    from master_sdk.experiments.experiment import Experiment

    records = wb.store.experiments()
    statuses = [Experiment(wb, r.name).status for r in records]
    frame = pd.DataFrame(
        {
            "name": [r.name for r in records],
            "ref": [r.ref for r in records],
            "status": pd.Categorical(
                statuses,
                categories=[
                    "running",
                    "completed",
                    "waiting",
                    "interrupted",
                    "cancelled",
                    "blocked",
                ],
            ),
            "cases": pd.array([r.cases for r in records], dtype="int64"),
            "created_at": pd.to_datetime([r.created_us for r in records], unit="us", utc=True),
            "updated_at": pd.to_datetime([r.updated_us for r in records], unit="us", utc=True),
            "created_by": [r.created_by for r in records],
            "flow_hash": [r.flow_hash for r in records],
            "product_version": [r.product_version for r in records],
            "concurrency": pd.array(
                [(r.params or {}).get("concurrency") for r in records], dtype="Int64"
            ),
            "max_cost_usd": pd.array(
                [(r.params or {}).get("max_cost_usd") for r in records], dtype="Float64"
            ).astype("float64"),
            "models": [(r.params or {}).get("models") or {} for r in records],
            "error": [r.error for r in records],
        },
        columns=list(COLUMNS),
    )
    for column in ("created_at", "updated_at"):
        frame[column] = frame[column].astype("datetime64[us, UTC]")
    for column in ("name", "ref", "created_by", "flow_hash", "product_version", "error"):
        frame[column] = frame[column].astype("string")
    return frame
