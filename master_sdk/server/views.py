"""What the API shows: runs, flows, pending items and experiments as JSON data.

Built from the public API only (``Workbench``, ``Run``, their DataFrames), so the server
shows exactly what a notebook shows. Every value passes the workbench's redaction once
more on its way out (see ``app.py``).
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
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


# A paused run stays as it is until it is decided (a flow has no loops: a run pauses at a
# step at most once), and an ended one never changes: their views can be kept.
_STILL = frozenset({"waiting_approval", "waiting_input", "completed", "rejected", "blocked",
                    "aborted"})  # fmt: skip


class ViewCache:
    """The encoded views of runs that cannot change while they keep their status and
    step, so polling a paused or ended run costs one read of the run, not its steps frame.

    The key is the run, its status and the step it waits at; any move of the run changes
    the status (a decision makes it ``decided``), so a kept view is never stale. Bounded
    (least recently used first out).
    """

    def __init__(self, size: int = 1024) -> None:
        self._size = size
        self._kept: OrderedDict[tuple[str, str, str, bool], bytes] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(run: Run, *, steps: bool) -> tuple[str, str, str, bool] | None:
        """The cache key of ``run``'s view now, or None when it may still change."""
        status = str(run.status)
        if status not in _STILL:
            return None
        waiting = run.waiting_for or {}
        return (run.id, status, str(waiting.get("step", "")), steps)

    def get(self, key: tuple[str, str, str, bool]) -> bytes | None:
        with self._lock:
            body = self._kept.get(key)
            if body is not None:
                self._kept.move_to_end(key)
            return body

    def put(self, key: tuple[str, str, str, bool], body: bytes) -> None:
        with self._lock:
            self._kept[key] = body
            self._kept.move_to_end(key)
            while len(self._kept) > self._size:
                self._kept.popitem(last=False)
