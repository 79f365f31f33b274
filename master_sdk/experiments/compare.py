"""``wb.compare(a, b)``: two experiments paired by case.

Cases pair by their key (or by the case column ``on=``). Per case: each score of both
sides and its delta (``b - a``), cost and latency of both and their deltas, whether the
output changed and which fields (dotted paths). The summary gives, per score, the mean of
each side, the mean paired delta with a 95% paired bootstrap interval, and wins, ties and
losses of ``b`` against ``a`` (for cost and latency lower is better).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from master_sdk.errors import MasterError

if TYPE_CHECKING:
    import pandas as pd

    from master_sdk.experiments.experiment import Experiment
    from master_sdk.memory.experiments import CaseRun
    from master_sdk.workbench import Workbench

# rows of the per-case table shown in a notebook (changed ones first)
SHOWN_ROWS = 20


@dataclass(frozen=True)
class Comparison:
    """Two experiments side by side (see the module docstring).

    Attributes:
        a, b: the experiments' names.
        cases: one row per paired case (columns in ``docs/dataframes.md``).
        summary: one row per score, then ``cost_usd`` and ``duration_ms``.
        only_a, only_b: case keys present in one experiment only.
    """

    a: str
    b: str
    cases: pd.DataFrame
    summary: pd.DataFrame
    only_a: tuple[str, ...]
    only_b: tuple[str, ...]

    @property
    def changed(self) -> pd.DataFrame:
        """The paired cases whose output changed."""
        return self.cases[self.cases["output_changed"]]

    def _text(self) -> str:
        lines = [f"Comparison {self.a!r} -> {self.b!r}: {len(self.cases)} paired cases"]
        if self.only_a or self.only_b:
            lines.append(f"  unpaired: {len(self.only_a)} only in a, {len(self.only_b)} only in b")
        for row in self.summary.to_dict(orient="records"):
            low, high = row["ci_low"], row["ci_high"]
            ci = f" [{low:+.4g}, {high:+.4g}]" if low == low else ""  # NaN: no interval
            lines.append(
                f"  {row['metric']:<22} {row['mean_a']:.4g} -> {row['mean_b']:.4g}  "
                f"delta {row['delta']:+.4g}{ci}  "
                f"win/tie/loss {row['wins']}/{row['ties']}/{row['losses']}"
            )
        changed = int(self.cases["output_changed"].sum())
        lines.append(f"  outputs changed: {changed} of {len(self.cases)}")
        return "\n".join(lines)

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        return {"text/plain": self._text(), "text/html": self._html()}

    def _html(self) -> str:
        import html

        summary = self.summary.to_html(index=False, float_format=lambda v: f"{v:.4g}")
        shown = self.cases.sort_values("output_changed", ascending=False, kind="stable")
        # run ids and per-case latencies stay in .cases; the view shows what changed
        hidden = [c for c in shown.columns if c.startswith(("run_id_", "duration_ms_"))]
        shown = shown.drop(columns=hidden).head(SHOWN_ROWS)
        styled = shown.style.set_uuid("comparison").apply(_highlight, axis=1)
        table = styled.format(precision=4, na_rep="").hide(axis="index").to_html()
        head = html.escape(self._text().splitlines()[0])
        return (
            f"<div><b>{head}</b>{summary}"
            f"<p>First {len(shown)} cases, changed outputs first (highlighted):</p>{table}</div>"
        )

    def __repr__(self) -> str:
        return self._text()


def _highlight(row: pd.Series) -> list[str]:
    style = "background-color: #fff3cd" if bool(row.get("output_changed")) else ""
    return [style] * len(row)


def compare(
    wb: Workbench, a: str | Experiment, b: str | Experiment, *, on: str | None = None
) -> Comparison:
    """See :meth:`Workbench.compare`."""
    store = wb.store
    name_a = a if isinstance(a, str) else a.name
    name_b = b if isinstance(b, str) else b.name
    # outputs and scores repeat a lot (labels, 0/1 scores): each distinct text is parsed
    # (and its output redacted) once
    parse = _Parser(wb._redact)
    cases_a = parse.cases(store.experiment_cases(name_a, rows=on is not None, raw=True))
    cases_b = parse.cases(store.experiment_cases(name_b, rows=on is not None, raw=True))
    keys_a = _keys(cases_a, on, name_a)
    keys_b = _keys(cases_b, on, name_b)
    index_b = {k: i for i, k in enumerate(keys_b)}
    pairs = [(i, index_b[k]) for i, k in enumerate(keys_a) if k in index_b]
    paired = {k for k in keys_a if k in index_b}
    only_a = tuple(k for k in keys_a if k not in paired)
    only_b = tuple(k for k in keys_b if k not in paired)
    cases = _case_frame(
        [cases_a[i] for i, _ in pairs],
        [cases_b[j] for _, j in pairs],
        [keys_a[i] for i, _ in pairs],
        on or "case_key",
        wb._redact,
    )
    return Comparison(name_a, name_b, cases, _summary(cases), only_a, only_b)


class _Parser:
    """Parses stored JSON texts, each distinct one once; outputs come out redacted."""

    def __init__(self, redact: Any) -> None:
        self._redact = redact
        self._seen: dict[str | None, Any] = {None: None}
        self._outputs: dict[str | None, Any] = {None: None}

    def _parse(self, text: str | None) -> Any:
        seen = self._seen
        if text not in seen:
            seen[text] = json.loads(text)  # type: ignore[arg-type]  # None is seen already
        return seen[text]

    def _output(self, text: str | None) -> Any:
        outputs = self._outputs
        if text not in outputs:
            outputs[text] = self._redact(json.loads(text))  # type: ignore[arg-type]
        return outputs[text]

    def cases(self, cases: list[CaseRun]) -> list[CaseRun]:
        for case in cases:
            case.row = self._parse(case.row) if isinstance(case.row, str) else case.row
            case.scores = self._parse(case.scores)  # type: ignore[arg-type]  # raw text here
            case.output = self._output(case.output)
        return cases


def _keys(cases: Sequence[CaseRun], on: str | None, name: str) -> list[str]:
    if on is None:
        return [c.case_key for c in cases]
    missing = [c.case_key for c in cases if on not in c.row]
    if missing:
        raise MasterError(
            f"compare(on={on!r}): experiment '{name}' has cases without column '{on}' "
            f"(e.g. case {missing[0]}); pair by case key (on=None) or another column"
        )
    keys = [str(c.row[on]) for c in cases]
    if len(set(keys)) != len(keys):
        raise MasterError(
            f"compare(on={on!r}): column '{on}' repeats values in experiment '{name}'; "
            "pairing needs one case per value"
        )
    return keys


def _flat(output: Any) -> dict[str, Any]:
    from master_sdk.experiments.results import flatten

    flat: dict[str, Any] = {}
    if output is not None:
        flatten(output, "output", flat)
    return {k[len("output.") :] if k != "output" else k: v for k, v in flat.items()}


def _case_frame(
    left: Sequence[CaseRun],
    right: Sequence[CaseRun],
    keys: Sequence[str],
    key_name: str,
    redact: Any,
) -> pd.DataFrame:
    import numpy as np
    import pandas as pd

    from master_sdk.experiments.results import case_status

    n = len(keys)
    data: dict[str, Any] = {key_name: list(keys)}
    data["run_id_a"] = [c.run_id for c in left]
    data["run_id_b"] = [c.run_id for c in right]
    data["status_a"] = [case_status(c) for c in left]
    data["status_b"] = [case_status(c) for c in right]
    names: dict[str, None] = {}
    for c in (*left, *right):
        if c.scores:
            names.update(dict.fromkeys(c.scores.get("values", {})))
    for score in names:
        va = _scores(left, score)
        vb = _scores(right, score)
        data[f"{score}_a"] = va
        data[f"{score}_b"] = vb
        data[f"{score}_delta"] = vb - va
    for column, getter in (("cost_usd", _cost), ("duration_ms", _duration)):
        va = np.fromiter((getter(c) for c in left), dtype="float64", count=n)
        vb = np.fromiter((getter(c) for c in right), dtype="float64", count=n)
        data[f"{column}_a"] = va
        data[f"{column}_b"] = vb
        data[f"{column}_delta"] = vb - va
    changed_fields: list[list[str]] = []
    for ca, cb in zip(left, right, strict=True):
        if ca.output == cb.output:
            changed_fields.append([])
            continue
        fa, fb = _flat(ca.output), _flat(cb.output)
        changed_fields.append(sorted(k for k in fa.keys() | fb.keys() if fa.get(k) != fb.get(k)))
    data["output_changed"] = np.array([bool(f) for f in changed_fields], dtype=bool)
    data["changed_fields"] = [", ".join(f) for f in changed_fields]
    data["output_a"] = [c.output for c in left]  # redacted by the parser
    data["output_b"] = [c.output for c in right]
    frame = pd.DataFrame(data)
    for column in ("status_a", "status_b"):
        frame[column] = frame[column].astype("category")
    for column in (key_name, "run_id_a", "run_id_b", "changed_fields"):
        frame[column] = frame[column].astype("string")
    return frame


def _scores(cases: Sequence[CaseRun], score: str) -> Any:
    import numpy as np

    out = np.full(len(cases), np.nan)
    for i, c in enumerate(cases):
        if c.scores and c.status == "completed":
            value = c.scores.get("values", {}).get(score)
            if value is not None:
                out[i] = value
    return out


def _cost(case: CaseRun) -> float:
    cost = case.cost_usd if case.cost_usd is not None else float("nan")
    meta: Mapping[str, Any] = (case.scores or {}).get("meta") or {}
    for key, value in meta.items():
        if key.endswith(".cost_usd") and isinstance(value, int | float):
            cost = (0.0 if cost != cost else cost) + float(value)
    return cost


def _duration(case: CaseRun) -> float:
    if case.updated_us is None or case.created_us is None or case.status != "completed":
        return float("nan")
    return (case.updated_us - case.created_us) / 1000.0


def _summary(cases: pd.DataFrame) -> pd.DataFrame:
    import pandas as pd

    from master_sdk.experiments.stats import paired_bootstrap_ci, win_tie_loss

    rows: list[dict[str, Any]] = []
    scores = [c[: -len("_delta")] for c in cases.columns if c.endswith("_delta")]
    for metric in scores:
        a = cases[f"{metric}_a"].to_numpy(dtype="float64")
        b = cases[f"{metric}_b"].to_numpy(dtype="float64")
        delta, low, high = paired_bootstrap_ci(a, b)
        lower_is_better = metric in ("cost_usd", "duration_ms")
        wins, ties, losses = win_tie_loss(b, a) if lower_is_better else win_tie_loss(a, b)
        both = ~(pd.isna(a) | pd.isna(b))
        rows.append(
            {
                "metric": metric,
                "mean_a": float(a[both].mean()) if both.any() else float("nan"),
                "mean_b": float(b[both].mean()) if both.any() else float("nan"),
                "delta": delta,
                "ci_low": low,
                "ci_high": high,
                "wins": wins,
                "ties": ties,
                "losses": losses,
                "n": int(both.sum()),
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "metric", "mean_a", "mean_b", "delta", "ci_low", "ci_high",
            "wins", "ties", "losses", "n",
        ],
    )  # fmt: skip
