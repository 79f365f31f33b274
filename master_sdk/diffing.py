"""Diffing two runs of the same flow, step by step (``run.diff(other)``, ``ms.diff(a, b)``).

One row per step, aligned by step id (flow order; a step only one run has gets a row
too): each run's status, whether the output changed and which fields (JSON paths with
``old → new``, redacted and cut short for display), and the tokens, cost and duration of
each run's step with the deltas (``b - a``). A copied step of a fork
(``copied_b``/``copied_a``) spent nothing in the fork: its tokens and cost there are 0.

The result is a :class:`RunDiff`, a pandas DataFrame whose notebook display highlights
the rows and cells that changed. Works for any two runs of the same flow, forked or not.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping
from functools import cache
from html import escape
from typing import TYPE_CHECKING, Any

from master_sdk.errors import RunError

if TYPE_CHECKING:
    import pandas as pd

    from master_sdk.run import Run

__all__ = ["DIFF_COLUMNS", "MAX_SHOWN", "diff", "diff_runs", "json_changes"]

DIFF_COLUMNS = [
    "step_id",
    "step_type",
    "status_a",
    "status_b",
    "copied_a",
    "copied_b",
    "output_changed",
    "changed_paths",
    "changes",
    "tokens_a",
    "tokens_b",
    "tokens_delta",
    "cost_usd_a",
    "cost_usd_b",
    "cost_usd_delta",
    "duration_ms_a",
    "duration_ms_b",
    "duration_ms_delta",
]
"""Columns of a run diff (documented in ``docs/dataframes.md``)."""

MAX_SHOWN = 40
"""Characters of a value shown in ``changes`` before it is cut with ``…``."""

_MISSING = object()


def json_changes(old: Any, new: Any, path: str = "$") -> Iterator[tuple[str, Any, Any]]:
    """``(path, old, new)`` of every leaf that differs between two JSON values; a key only
    one side has is reported with ``None`` on the other side (``$.a.b``, ``$.items[2]``).

    Example:
        >>> list(json_changes({"a": 1, "b": [1, 2]}, {"a": 1, "b": [1, 3]}))
        [('$.b[1]', 2, 3)]
    """
    if isinstance(old, dict) and isinstance(new, dict):
        for key in list(old) + [k for k in new if k not in old]:
            yield from json_changes(old.get(key, _MISSING), new.get(key, _MISSING), f"{path}.{key}")
    elif isinstance(old, list) and isinstance(new, list):
        for i in range(max(len(old), len(new))):
            a = old[i] if i < len(old) else _MISSING
            b = new[i] if i < len(new) else _MISSING
            yield from json_changes(a, b, f"{path}[{i}]")
    elif old != new or type(old) is not type(new):
        yield path, None if old is _MISSING else old, None if new is _MISSING else new


def _shown(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    text = text.replace("\n", " ")
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 1] + "…"


def diff_runs(a: Run, b: Run) -> pd.DataFrame:
    """Step-aligned differences between runs ``a`` and ``b`` of the same flow.

    Raises:
        RunError: the runs are of different flows.
    """
    import pandas as pd

    if a.ref != b.ref:
        raise RunError(
            f"cannot diff run {a.id} ({a.ref}) with run {b.id} ({b.ref}): a diff aligns the "
            "steps of one flow; compare runs of different flows with their traces",
            run_id=b.id,
        )
    redact: Callable[[Any], Any] = a.workbench.redact
    side_a, side_b = _side(a), _side(b)
    order = list(side_a)
    order += [s for s in side_b if s not in side_a]
    rows = []
    for step_id in order:
        sa, sb = side_a.get(step_id), side_b.get(step_id)
        found = [(p, o, n) for p, o, n in json_changes(_out(sa), _out(sb))]
        changes = [f"{p}: {_shown(redact(o))} → {_shown(redact(n))}" for p, o, n in found]
        rows.append(
            {
                "step_id": step_id,
                "step_type": (sa or sb or {}).get("type"),
                "status_a": sa["status"] if sa else None,
                "status_b": sb["status"] if sb else None,
                "copied_a": bool(sa and sa["copied"]),
                "copied_b": bool(sb and sb["copied"]),
                "output_changed": bool(found),
                "changed_paths": [p for p, _, _ in found],
                "changes": changes,
                "tokens_a": _get(sa, "tokens"),
                "tokens_b": _get(sb, "tokens"),
                "cost_usd_a": _get(sa, "cost"),
                "cost_usd_b": _get(sb, "cost"),
                "duration_ms_a": _get(sa, "duration"),
                "duration_ms_b": _get(sb, "duration"),
            }
        )
    frame = pd.DataFrame(rows, columns=[c for c in DIFF_COLUMNS if not c.endswith("_delta")])
    kinds: dict[str, Any] = {"tokens": "Int64", "cost_usd": "float64", "duration_ms": "float64"}
    for name, kind in kinds.items():
        frame[f"{name}_a"] = frame[f"{name}_a"].astype(kind)
        frame[f"{name}_b"] = frame[f"{name}_b"].astype(kind)
        frame[f"{name}_delta"] = frame[f"{name}_b"] - frame[f"{name}_a"]
    for column in ("step_id", "step_type", "status_a", "status_b"):
        frame[column] = frame[column].astype("string")
    out: pd.DataFrame = _run_diff_class()(frame[DIFF_COLUMNS])
    out.attrs.update({"run_a": a.id, "run_b": b.id})
    return out


def diff(a: Run, b: Run) -> pd.DataFrame:
    """``ms.diff(a, b)``: what changed from run ``a`` to run ``b``, one row per step (the
    same as ``a.diff(b)``; columns in ``docs/dataframes.md``).

    Example:
        >>> fork = run.fork(at="summary")                     # doctest: +SKIP
        >>> d = ms.diff(run, fork)                            # doctest: +SKIP
        >>> d[d.output_changed][["step_id", "changes"]]       # doctest: +SKIP
    """
    return diff_runs(a, b)


def _out(side: dict[str, Any] | None) -> Any:
    return None if side is None else side["output"]


def _get(side: dict[str, Any] | None, key: str) -> Any:
    return None if side is None else side[key]


def _side(run: Run) -> dict[str, dict[str, Any]]:
    """Per step id: type, status, output, whether copied, tokens, cost and duration."""
    steps = run.steps()
    trace = run.trace()
    spent: dict[str, list[float]] = {}
    copied: set[str] = set()
    if len(trace):
        calls = trace[trace["event"] == "model_called"]
        columns = (calls[c] for c in ("step_id", "tokens_in", "tokens_out", "cost_usd"))
        for step_id, tin, tout, cost in zip(*columns, strict=True):
            row = spent.setdefault(str(step_id), [0, 0.0])
            row[0] += _num(tin) + _num(tout)
            row[1] += _num(cost)
        copied = {str(s) for s in trace.loc[trace["event"] == "step_copied", "step_id"]}
    out: dict[str, dict[str, Any]] = {}
    for rec in steps.to_dict("records"):
        step_id = str(rec["step_id"])
        used = spent.get(step_id, [0, 0.0])
        out[step_id] = {
            "type": str(rec["step_type"]),
            "status": str(rec["status"]),
            "output": rec["output"],
            "copied": step_id in copied,
            "tokens": int(used[0]),
            "cost": float(used[1]),
            # a copied step took no time in this run (its timestamps are the parent's)
            "duration": 0.0 if step_id in copied else _duration(rec),
        }
    return out


def _num(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0.0
    return 0.0 if number != number else number  # NaN: no value


def _duration(rec: Mapping[Any, Any]) -> float | None:
    value = rec.get("duration_ms")
    if value is None:
        return None
    number = _num(value)
    return number if value == value else None


def _differ(a: Any, b: Any) -> bool:
    """Whether two statuses differ, a missing one (``<NA>``) included."""
    import pandas as pd

    missing_a, missing_b = bool(pd.isna(a)), bool(pd.isna(b))
    return missing_a != missing_b or (not missing_a and str(a) != str(b))


def _styled(frame: pd.DataFrame) -> str:
    """HTML of a diff (or of a selection of its rows and columns that keeps
    ``output_changed``) with changed rows and cells highlighted."""
    columns = set(frame.columns)
    statuses = {"status_a", "status_b"} <= columns

    def row_style(row: pd.Series) -> list[str]:
        moved = statuses and _differ(row["status_a"], row["status_b"])
        changed = bool(row["output_changed"])
        base = "background-color: #fff4ce" if changed or moved else ""
        hot = "background-color: #ffd6a5; font-weight: bold"
        return [
            hot
            if (moved and c in ("status_a", "status_b"))
            or (changed and c in ("output_changed", "changes", "changed_paths"))
            else base
            for c in row.index
        ]

    shown = frame.copy()
    if "changed_paths" in columns:
        shown["changed_paths"] = frame["changed_paths"].map(lambda p: escape(", ".join(p)))
    if "changes" in columns:
        shown["changes"] = frame["changes"].map(lambda c: "<br>".join(escape(x) for x in c))
    # the table's CSS ids come from what decides its styles, not from a random uuid: the
    # same diff renders the same HTML (saved notebooks compare equal), and two tables that
    # share ids share their styles too
    decides = [list(frame.columns), frame["output_changed"].tolist()]
    if statuses:
        decides += [
            [_differ(a, b) for a, b in zip(frame["status_a"], frame["status_b"], strict=True)]
        ]
    uuid = hashlib.sha256(json.dumps(decides).encode()).hexdigest()[:10]
    html: str = (
        shown.style.set_uuid(uuid)
        .apply(row_style, axis=1)
        .format(precision=4, na_rep="")
        .hide(axis="index")
        .to_html(escape=False)
    )
    return html


@cache
def _run_diff_class() -> type[pd.DataFrame]:
    import pandas as pd

    class RunDiff(pd.DataFrame):
        """A run diff: a DataFrame (columns in ``DIFF_COLUMNS``) that highlights changes
        when shown in a notebook."""

        @property
        def _constructor(self) -> type[pd.DataFrame]:
            return RunDiff

        def _repr_html_(self) -> str | None:
            if "output_changed" not in self.columns:  # not a diff any more: shown plainly
                html: str | None = super()._repr_html_()  # type: ignore[misc]  # pandas-stubs omit it
                return html
            return _styled(self)

    return RunDiff


def __getattr__(name: str) -> Any:
    # ``RunDiff`` subclasses pandas, imported only when first asked for (``import
    # master_sdk`` stays light)
    if name == "RunDiff":
        return _run_diff_class()
    raise AttributeError(name)
