"""What the API shows: runs, flows, pending items and experiments as JSON data.

Built from the public API only (``Workbench``, ``Run``, their DataFrames), so the server
shows exactly what a notebook shows. Every value passes the workbench's redaction once
more on its way out (see ``app.py``).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from master_sdk import Run, Workbench

API = "/api/v1"


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """A DataFrame as JSON records (timestamps ISO 8601, missing values null)."""
    if not len(frame):
        return []
    out: list[dict[str, Any]] = json.loads(
        frame.to_json(orient="records", date_format="iso", date_unit="us", default_handler=str)
    )
    return out


def run_url(run_id: str) -> str:
    """The API URL of a run."""
    return f"{API}/runs/{run_id}"


def run_view(run: Run, *, steps: bool = True) -> dict[str, Any]:
    """A run: status, inputs, output, error, what it waits for, and its steps."""
    view: dict[str, Any] = {
        "run_id": run.id,
        "ref": run.ref,
        "product": run.product,
        "flow": run.flow,
        "status": str(run.status),
        "ended": run.ended,
        "inputs": run.inputs,
        "output": run.output,
        "error": run.error,
        "waiting_for": run.waiting_for,
        "parent_run_id": run.parent_run_id,
        "url": run_url(run.id),
    }
    if steps:
        frame = run.steps()
        keep = [
            c
            for c in ("step_id", "step_type", "status", "attempt", "started_at", "ended_at",
                      "duration_ms", "output", "error")
            if c in frame.columns
        ]  # fmt: skip
        view["steps"] = records(frame[keep])
    return view


def flow_view(wb: Workbench, ref: str) -> dict[str, Any]:
    """A flow: its description, its input JSON Schema and its steps."""
    flow = wb.flow(ref)
    product, _sep, flow_id = ref.partition("/")
    return {
        "ref": ref,
        "product": product,
        "flow": flow_id,
        "description": flow.description,
        "inputs": flow.inputs,
        "steps": flow.steps,
        "url": f"{API}/flows/{ref}",
    }
