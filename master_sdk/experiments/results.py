"""The results frame (one row per case) and the summary of an experiment.

Columns of ``results`` (also in ``docs/dataframes.md``): ``case_key``, ``case_index``,
``run_id``, ``status``, then ``output.<field>`` (the run's output flattened, dotted
paths), one ``float64`` column per score, the scorers' extra columns (a judge's
``<name>.reason``, ``<name>.tokens``, ``<name>.cost_usd``), ``tokens_in``, ``tokens_out``,
``total_tokens``, ``cost_usd``, ``duration_ms`` and ``error``.

A case's status is its run's, or ``pending`` (not started yet), ``invalid`` (the row
failed admission) or ``error`` (it could not be started or continued).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from master_sdk.memory.experiments import CaseRun

STATUSES = (
    "completed",
    "rejected",
    "failed",
    "blocked",
    "aborted",
    "interrupted",
    "waiting_approval",
    "waiting_input",
    "running",
    "pending",
    "invalid",
    "error",
)
# what resume() never runs again: ended runs, and failed ones (a step raised: retrying it is
# a decision for the run, ``run.retry()``, not something a resume should spend money on)
FINISHED = frozenset({"completed", "rejected", "failed", "blocked", "aborted"})
PAUSED = frozenset({"waiting_approval", "waiting_input"})


def case_status(case: CaseRun) -> str:
    """What a case's row shows as its status (see the module docstring)."""
    if case.invalid:
        return "invalid"
    if case.status is not None:
        return case.status
    return "error" if case.case_error else "pending"


def flatten(value: Any, prefix: str, out: dict[str, Any]) -> None:
    """``{"a": {"b": 1}}`` -> ``out["<prefix>.a.b"] = 1`` (lists stay whole values)."""
    if isinstance(value, Mapping) and value:
        for key, item in value.items():
            flatten(item, f"{prefix}.{key}", out)
    else:
        out[prefix] = value


def results_frame(cases: Sequence[CaseRun], *, redact: Any = None) -> pd.DataFrame:
    """The results frame of an experiment's cases (see the module docstring)."""
    import numpy as np
    import pandas as pd

    n = len(cases)
    outputs: list[dict[str, Any]] = []
    output_columns: dict[str, None] = {}
    score_columns: dict[str, None] = {}
    meta_columns: dict[str, None] = {}
    for case in cases:
        flat: dict[str, Any] = {}
        if case.output is not None:
            flatten(case.output, "output", flat)
        outputs.append(flat)
        output_columns.update(dict.fromkeys(flat))
        if case.scores:
            score_columns.update(dict.fromkeys(case.scores.get("values", {})))
            meta_columns.update(dict.fromkeys(case.scores.get("meta", {})))
    data: dict[str, Any] = {
        "case_key": [c.case_key for c in cases],
        "case_index": np.fromiter((c.idx for c in cases), dtype="int64", count=n),
        "run_id": [c.run_id for c in cases],
        "status": pd.Categorical([case_status(c) for c in cases], categories=STATUSES),
    }
    for column in output_columns:
        data[column] = [o.get(column) for o in outputs]
    for column in score_columns:
        data[column] = np.fromiter(
            (_value(c, "values", column, np.nan) for c in cases), dtype="float64", count=n
        )
    for column in meta_columns:
        data[column] = [_value(c, "meta", column, None) for c in cases]
    tokens_in = pd.array([c.tokens_in for c in cases], dtype="Int64")
    tokens_out = pd.array([c.tokens_out for c in cases], dtype="Int64")
    data["tokens_in"] = tokens_in
    data["tokens_out"] = tokens_out
    data["total_tokens"] = pd.Series(tokens_in) + pd.Series(tokens_out)
    data["cost_usd"] = np.array(
        [c.cost_usd if c.cost_usd is not None else np.nan for c in cases], dtype="float64"
    )
    data["duration_ms"] = np.array(
        [
            (c.updated_us - c.created_us) / 1000.0
            if c.updated_us is not None and c.created_us is not None
            else np.nan
            for c in cases
        ],
        dtype="float64",
    )
    data["error"] = [_error(c) for c in cases]
    frame = pd.DataFrame(data)
    for column in ("case_key", "run_id", "error"):
        frame[column] = frame[column].astype("string")
    if redact is not None:
        from master_sdk.governance.exports import redact_frame

        frame = redact_frame(frame, redact)
    return frame


def _value(case: CaseRun, part: str, column: str, missing: Any) -> Any:
    scores = case.scores
    if not scores:
        return missing
    value = scores.get(part, {}).get(column, missing)
    return missing if value is None else value


def _error(case: CaseRun) -> str | None:
    problems = [p for p in (case.run_error, case.case_error) if p]
    if case.scores and case.scores.get("errors"):
        problems.extend(f"scorer {k}: {v}" for k, v in case.scores["errors"].items())
    return "; ".join(problems) if problems else None


def score_columns(cases: Sequence[CaseRun]) -> list[str]:
    """The numeric score columns, in order of first appearance."""
    columns: dict[str, None] = {}
    for case in cases:
        if case.scores:
            columns.update(dict.fromkeys(case.scores.get("values", {})))
    return list(columns)


def summary_frame(results: pd.DataFrame, scores: Sequence[str]) -> pd.DataFrame:
    """One row per figure: ``metric, kind, value, ci_low, ci_high, n``.

    ``kind`` is ``score`` (mean with a 95% bootstrap interval over completed cases),
    ``rate`` (``pass_rate``: completed cases whose every 0/1 score is 1, over completed
    cases), ``cost`` (``cost_usd`` in all, the judges' included; ``total_tokens``),
    ``latency`` (``p50_ms``, ``p95_ms`` of completed runs) or ``count`` (cases by status).
    """
    import numpy as np
    import pandas as pd

    from master_sdk.experiments.stats import bootstrap_ci

    rows: list[tuple[str, str, float, float, float, int]] = []
    completed = results[results["status"] == "completed"]
    for column in scores:
        values = completed[column].to_numpy(dtype="float64")
        mean, low, high = bootstrap_ci(values)
        rows.append((column, "score", mean, low, high, int((~np.isnan(values)).sum())))
    binary = [
        c
        for c in scores
        if completed[c].dropna().isin([0.0, 1.0]).all() and completed[c].notna().any()
    ]
    if len(completed):
        passed = np.ones(len(completed), dtype=bool)
        for column in binary:
            passed &= completed[column].to_numpy(dtype="float64") == 1.0
        rate = float(passed.mean())
    else:
        rate = float("nan")
    nan = float("nan")
    rows.append(("pass_rate", "rate", rate, nan, nan, len(completed)))
    judge_costs = [c for c in results.columns if c.endswith(".cost_usd")]
    cost = float(np.nansum(results["cost_usd"].to_numpy(dtype="float64")))
    for column in judge_costs:
        cost += float(pd.to_numeric(results[column], errors="coerce").fillna(0.0).sum())
    rows.append(("cost_usd", "cost", cost, nan, nan, len(results)))
    tokens = float(results["total_tokens"].fillna(0).sum())
    rows.append(("total_tokens", "cost", tokens, nan, nan, len(results)))
    latency = completed["duration_ms"].to_numpy(dtype="float64")
    latency = latency[~np.isnan(latency)]
    p50, p95 = np.percentile(latency, [50, 95]) if len(latency) else (nan, nan)
    rows.append(("p50_ms", "latency", float(p50), nan, nan, len(latency)))
    rows.append(("p95_ms", "latency", float(p95), nan, nan, len(latency)))
    counts = results["status"].value_counts()
    for status in STATUSES:
        count = int(counts.get(status, 0))
        if count:
            rows.append((status, "count", float(count), nan, nan, count))
    frame = pd.DataFrame(rows, columns=["metric", "kind", "value", "ci_low", "ci_high", "n"])
    frame["kind"] = pd.Categorical(
        frame["kind"], categories=["score", "rate", "cost", "latency", "count"]
    )
    frame["n"] = frame["n"].astype("int64")
    return frame
