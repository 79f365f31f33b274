"""The pending list: one row per paused run, with what a reviewer needs to decide.

Read in one statement through the store's status index (``Store.pending_runs``), typed
here once for every store. Columns (``docs/dataframes.md``): ``run_id``, ``product``,
``flow``, ``step``, ``kind`` (``approval`` / ``input``), ``prompt``, ``show`` (the step's
``show:`` value as JSON text, truncated), ``started_by``, ``waiting_since``, ``waited``,
``experiment``, ``reserved_by``, ``reserved_until`` (a lease in force; expired ones are
free again and read as empty).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from master_sdk.memory.store import PendingRun

PENDING_COLUMNS: tuple[str, ...] = (
    "run_id",
    "product",
    "flow",
    "step",
    "kind",
    "prompt",
    "show",
    "started_by",
    "waiting_since",
    "waited",
    "experiment",
    "reserved_by",
    "reserved_until",
)
KINDS: dict[str, str] = {"approval": "waiting_approval", "input": "waiting_input"}
"""The ``kind`` filter's values and the run status each stands for."""
SHOW_CHARS = 200
"""How much of a ``show:`` value the list keeps (the full value is in ``run.waiting_for``)."""

Prompt = Callable[[str, str, str], str]


def statuses_for(kind: str | None) -> list[str]:
    """The run statuses a ``kind`` filter reads (both pauses for None)."""
    if kind is None:
        return list(KINDS.values())
    if kind not in KINDS:
        from master_sdk.errors import NotFound

        raise NotFound(f"no pending kind '{kind}'; choose one of {', '.join(KINDS)}")
    return [KINDS[kind]]


def _show(text: str | None) -> str | None:
    if text is None:
        return None
    return text if len(text) <= SHOW_CHARS else text[: SHOW_CHARS - 1] + "…"


_SEPARATOR = "\n\u241e\n"  # a record separator no detector matches across


def redact_texts(texts: list[str | None], redact: Callable[[Any], Any]) -> list[str | None]:
    """``redact`` applied to every text, in one pass over them joined (a call per text
    costs more than the scan). If a finding spans a separator (the parts no longer split
    back one for one), each text is redacted on its own instead."""
    present = [t for t in texts if t is not None]
    if not present:
        return texts
    joined = redact(_SEPARATOR.join(present))
    parts = joined.split(_SEPARATOR) if isinstance(joined, str) else []
    if len(parts) != len(present):
        parts = [redact(t) for t in present]
    out: list[str | None] = []
    it = iter(parts)
    for text in texts:
        out.append(None if text is None else next(it))
    return out


def pending_frame(
    rows: Sequence[PendingRun],
    *,
    prompt: Prompt,
    redact: Callable[[Any], Any] | None = None,
    step: str | None = None,
    experiment: str | None = None,
    older_than: timedelta | float | None = None,
    now_us: int | None = None,
) -> pd.DataFrame:
    """The pending list from a store's rows, oldest wait first.

    Args:
        rows: ``Store.pending_runs`` of the paused statuses.
        prompt: ``(product, flow, step) -> prompt`` (from the flow file; called once per
            distinct step).
        redact: applied to the ``show`` texts in one pass (:func:`redact_texts`).
        step: keep one step id.
        experiment: keep the runs of one experiment.
        older_than: keep runs waiting at least this long (a timedelta or seconds).
        now_us: the clock (tests).
    """
    import numpy as np
    import pandas as pd

    now = time.time_ns() // 1000 if now_us is None else now_us
    if isinstance(older_than, timedelta):
        older_than = older_than.total_seconds()
    prompts: dict[tuple[str, str, str], str] = {}
    run_ids: list[str] = []
    products: list[str] = []
    flows: list[str] = []
    steps: list[str | None] = []
    kinds: list[str] = []
    prompt_col: list[str | None] = []
    shows: list[str | None] = []
    started_by: list[str | None] = []
    since: list[int] = []
    experiments: list[str | None] = []
    reserved_by: list[str | None] = []
    reserved_until: list[float] = []
    for row in rows:
        step_id = row.step
        if step is not None and step_id != step:
            continue
        if experiment is not None and row.experiment != experiment:
            continue
        at = row.since_us or row.updated_us
        if older_than is not None and (now - at) < older_than * 1e6:
            continue
        run_ids.append(row.run_id)
        products.append(row.product)
        flows.append(row.flow)
        steps.append(step_id)
        kinds.append("approval" if row.status == "waiting_approval" else "input")
        key = (row.product, row.flow, str(step_id))
        if key not in prompts:
            prompts[key] = prompt(*key)
        prompt_col.append(prompts[key])
        shows.append(_show(row.show))
        started_by.append(row.created_by)
        since.append(at)
        experiments.append(row.experiment)
        lease = row.reservation
        if lease is not None and lease.until_us > now:
            reserved_by.append(lease.by)
            reserved_until.append(float(lease.until_us))
        else:
            reserved_by.append(None)
            reserved_until.append(np.nan)
    if redact is not None:
        shows = redact_texts(shows, redact)
    since_arr = np.asarray(since, dtype="int64")
    return pd.DataFrame(
        {
            "run_id": pd.array(run_ids, dtype="string"),
            "product": pd.Categorical(products),
            "flow": pd.Categorical(flows),
            "step": pd.array(steps, dtype="string"),
            "kind": pd.Categorical(kinds, categories=list(KINDS)),
            "prompt": pd.array(prompt_col, dtype="string"),
            "show": pd.array(shows, dtype="string"),
            "started_by": pd.array(started_by, dtype="string"),
            "waiting_since": pd.to_datetime(since_arr, unit="us", utc=True),
            "waited": pd.to_timedelta(now - since_arr, unit="us"),
            "experiment": pd.array(experiments, dtype="string"),
            "reserved_by": pd.array(reserved_by, dtype="string"),
            "reserved_until": pd.to_datetime(
                np.asarray(reserved_until, dtype="float64"), unit="us", utc=True
            ),
        },
        columns=list(PENDING_COLUMNS),
    )
