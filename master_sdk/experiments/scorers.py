"""Scorers: ``f(case, output) -> number | bool | dict``, and the ready-made ones.

A scorer is any callable taking the case (its row, every column included, e.g.
``expected_label``) and the run's output (a dict for most flows), returning a number, a
bool (counted as 1 or 0), a dict of those (one column each, ``name.key``) or None (no
score for this case). A scorer that raises records its error for that case only.

Example:
    >>> import master_sdk as ms
    >>> scorers = [ms.scorers.exact("label", expected="expected_label"),
    ...            ms.scorers.contains("summary", value="board")]

``llm_judge`` asks a model through the router, with the experiment's policy, allow-lists
and cost cap, like any other model call; its tokens and cost get their own columns, and
the call is traced in the case's run (a ``judge:<scorer>`` step with its ``model_called``
event), so trace frames and telemetry see it like any other.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from master_sdk.authoring import Reply

__all__ = [
    "Judge",
    "Scorer",
    "contains",
    "exact",
    "json_match",
    "llm_judge",
    "numeric_close",
    "regex",
    "scorer",
]

ScoreValue = float | int | bool | Mapping[str, Any] | None
_MISSING = object()


@runtime_checkable
class Scorer(Protocol):
    """What an experiment calls for each finished case."""

    def __call__(self, case: Mapping[str, Any], output: Any) -> ScoreValue: ...


def scorer_name(scorer: Callable[..., Any], index: int) -> str:
    """The column a scorer's value goes to: its ``name``, else its function name."""
    name = getattr(scorer, "name", None) or getattr(scorer, "__name__", None)
    if not name or name == "<lambda>":
        return f"score_{index}"
    return str(name)


def field_value(output: Any, path: str | None) -> Any:
    """``output`` at a dotted ``path`` (``"a.b"``); ``_MISSING`` when absent."""
    if path is None:
        return output
    value = output
    for part in path.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list | tuple) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
    return value


def _expected(case: Mapping[str, Any], column: str | None, value: Any) -> Any:
    if column is not None:
        if column not in case:
            raise KeyError(f"the case has no column '{column}' (columns: {', '.join(case)})")
        return case[column]
    return value


@dataclass(frozen=True)
class _Exact:
    name: str
    field: str | None
    expected: str | None
    value: Any
    case_sensitive: bool

    def __call__(self, case: Mapping[str, Any], output: Any) -> bool:
        got = field_value(output, self.field)
        want = _expected(case, self.expected, self.value)
        if got is _MISSING:
            return False
        if not self.case_sensitive and isinstance(got, str) and isinstance(want, str):
            return got.strip().casefold() == want.strip().casefold()
        return bool(got == want)


def exact(
    field: str | None = None,
    *,
    expected: str | None = None,
    value: Any = None,
    case_sensitive: bool = True,
    name: str | None = None,
) -> Scorer:
    """1 when the output ``field`` equals the case's ``expected`` column (or ``value``).

    Example:
        >>> s = exact("label", expected="expected_label")
        >>> s({"expected_label": "spam"}, {"label": "spam"})
        True
    """
    return _Exact(name or f"exact_{field or 'output'}", field, expected, value, case_sensitive)


@dataclass(frozen=True)
class _Contains:
    name: str
    field: str | None
    expected: str | None
    value: Any
    case_sensitive: bool

    def __call__(self, case: Mapping[str, Any], output: Any) -> bool:
        got = field_value(output, self.field)
        want = _expected(case, self.expected, self.value)
        if got is _MISSING or got is None:
            return False
        text = got if isinstance(got, str) else json.dumps(got, default=str)
        needle = str(want)
        if not self.case_sensitive:
            return needle.casefold() in text.casefold()
        return needle in text


def contains(
    field: str | None = None,
    *,
    expected: str | None = None,
    value: Any = None,
    case_sensitive: bool = False,
    name: str | None = None,
) -> Scorer:
    """1 when the output ``field`` (text) contains the case's ``expected`` column or ``value``."""
    return _Contains(
        name or f"contains_{field or 'output'}", field, expected, value, case_sensitive
    )


@dataclass(frozen=True)
class _Regex:
    name: str
    field: str | None
    pattern: re.Pattern[str]

    def __call__(self, case: Mapping[str, Any], output: Any) -> bool:
        got = field_value(output, self.field)
        if got is _MISSING or got is None:
            return False
        text = got if isinstance(got, str) else json.dumps(got, default=str)
        return self.pattern.search(text) is not None


def regex(field: str | None, pattern: str, *, flags: int = 0, name: str | None = None) -> Scorer:
    """1 when ``pattern`` is found in the output ``field``."""
    return _Regex(name or f"regex_{field or 'output'}", field, re.compile(pattern, flags))


@dataclass(frozen=True)
class _JsonMatch:
    name: str
    expected: str | None
    value: Any
    fields: tuple[str, ...] | None
    field: str | None

    def __call__(self, case: Mapping[str, Any], output: Any) -> dict[str, float]:
        want = _expected(case, self.expected, self.value)
        if isinstance(want, str):
            want = json.loads(want)
        if not isinstance(want, Mapping):
            raise TypeError(f"json_match expects a JSON object to match, got {type(want).__name__}")
        got = field_value(output, self.field)
        names = self.fields if self.fields is not None else tuple(want)
        scores: dict[str, float] = {}
        for key in names:
            have = field_value(got, key)
            scores[key] = 1.0 if have is not _MISSING and have == field_value(want, key) else 0.0
        scores["all"] = float(all(v == 1.0 for v in scores.values())) if scores else 1.0
        return scores


def json_match(
    *,
    expected: str | None = None,
    value: Any = None,
    fields: list[str] | tuple[str, ...] | None = None,
    field: str | None = None,
    name: str = "json_match",
) -> Scorer:
    """Field-wise match of the output (or its ``field``) against a JSON object.

    The expected object comes from the case's ``expected`` column (a dict or JSON text) or
    ``value``. One score per compared field (``json_match.<field>``: 1 or 0) plus
    ``json_match.all`` (1 when every field matched). ``fields`` limits the comparison
    (dotted paths allowed); by default every key of the expected object.
    """
    return _JsonMatch(name, expected, value, tuple(fields) if fields is not None else None, field)


@dataclass(frozen=True)
class _NumericClose:
    name: str
    field: str | None
    expected: str | None
    value: Any
    rel_tol: float
    abs_tol: float

    def __call__(self, case: Mapping[str, Any], output: Any) -> bool:
        got = field_value(output, self.field)
        want = _expected(case, self.expected, self.value)
        if got is _MISSING or got is None or isinstance(got, bool):
            return False
        try:
            return math.isclose(float(got), float(want), rel_tol=self.rel_tol, abs_tol=self.abs_tol)
        except (TypeError, ValueError):
            return False


def numeric_close(
    field: str | None = None,
    *,
    expected: str | None = None,
    value: Any = None,
    rel_tol: float = 1e-6,
    abs_tol: float = 0.0,
    name: str | None = None,
) -> Scorer:
    """1 when the output ``field`` is a number within tolerance of the expected one."""
    return _NumericClose(
        name or f"close_{field or 'output'}", field, expected, value, rel_tol, abs_tol
    )


@dataclass(frozen=True)
class _Named:
    name: str
    fn: Callable[[Mapping[str, Any], Any], ScoreValue]

    def __call__(self, case: Mapping[str, Any], output: Any) -> ScoreValue:
        return self.fn(case, output)


def scorer(fn: Callable[[Mapping[str, Any], Any], ScoreValue], *, name: str) -> Scorer:
    """Give a function (a lambda, say) the column name its scores go to."""
    return _Named(name, fn)


# --------------------------------------------------------------------------- the judge

JUDGE_SYSTEM = (
    "You grade the output of an automated flow against a rubric. Answer with a score "
    "between 0 and 1 (1: fully meets the rubric) and a one-sentence reason."
)


class JudgeModels(Protocol):
    """How a judge reaches a model: the experiment's governed router (see runner)."""

    def complete(self, model: str, *, prompt: str, system: str, output: type[Any]) -> Reply: ...


@dataclass(frozen=True)
class Judge:
    """A rubric graded by a model (see :func:`llm_judge`)."""

    name: str
    rubric: str
    model: str
    fields: tuple[str, ...] | None
    columns: tuple[str, ...] = field(default=())

    def prompt(self, case: Mapping[str, Any], output: Any) -> str:
        """The text the judge model reads."""
        shown = output
        if self.fields is not None and isinstance(output, Mapping):
            shown = {k: field_value(output, k) for k in self.fields}
        context = {k: case[k] for k in self.columns if k in case}
        parts = [f"Rubric: {self.rubric}"]
        if context:
            parts.append(f"Case: {json.dumps(context, default=str, sort_keys=True)}")
        parts.append(f"Output: {json.dumps(shown, default=str, sort_keys=True)}")
        return "\n".join(parts)

    def grade(self, case: Mapping[str, Any], output: Any, models: JudgeModels) -> dict[str, Any]:
        """Ask the model; returns ``score`` (clipped to 0..1) and the call's usage."""
        from master_sdk.experiments.verdict import Verdict

        reply = models.complete(
            self.model, prompt=self.prompt(case, output), system=JUDGE_SYSTEM, output=Verdict
        )
        verdict = reply.output
        score = float(getattr(verdict, "score", float("nan")))
        return {
            "score": min(1.0, max(0.0, score)) if not math.isnan(score) else score,
            "reason": getattr(verdict, "reason", None),
            "tokens": (reply.tokens_in or 0) + (reply.tokens_out or 0),
            "cost_usd": reply.cost_usd,
        }

    def __call__(self, case: Mapping[str, Any], output: Any) -> ScoreValue:
        raise TypeError(
            f"llm_judge '{self.name}' needs a model: pass it in scorers= of wb.evaluate, "
            "which grades through the workbench's router"
        )


def llm_judge(
    rubric: str,
    *,
    model: str = "default",
    fields: list[str] | tuple[str, ...] | None = None,
    context: list[str] | tuple[str, ...] = (),
    name: str = "judge",
) -> Judge:
    """A model grades each output against ``rubric`` (score 0..1, with a reason).

    The call goes through the router like any agent's: the flow's policy (allowed models,
    token and cost budgets), the experiment's cost cap and its rate-limit backoff all apply.
    Results get ``<name>`` (the score), ``<name>.reason``, ``<name>.tokens`` and
    ``<name>.cost_usd``.

    Args:
        rubric: what a good output is.
        model: the logical model name (an experiment's ``models=`` override applies).
        fields: output fields shown to the judge (default: the whole output).
        context: case columns shown to the judge too (e.g. ``["expected_label"]``).
        name: the score's column.
    """
    return Judge(name, rubric, model, tuple(fields) if fields else None, tuple(context))
