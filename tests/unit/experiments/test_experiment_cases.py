"""Cases: rows from a DataFrame or dicts, stable keys, per-row admission, answers."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from master_sdk.experiments.answers import AnswerInvalid, decide
from master_sdk.experiments.cases import CasesInvalid, case_keys, plain, row_hash, rows_of


def test_rows_of_a_frame_are_plain_python_values() -> None:
    """NaN becomes None and numpy scalars become Python numbers."""
    frame = pd.DataFrame({"text": ["a", None], "n": [1.0, math.nan], "k": [1, 2]})
    rows = rows_of(frame)
    assert rows == [{"text": "a", "n": 1.0, "k": 1}, {"text": None, "n": None, "k": 2}]
    assert type(rows[0]["k"]) is int


def test_rows_of_refuses_a_single_dict() -> None:
    """A dict is one case, not a table: the error says what to pass."""
    with pytest.raises(CasesInvalid, match="list of dicts"):
        rows_of({"text": "a"})


def test_case_key_comes_from_case_key_then_id_then_a_hash() -> None:
    """The key column wins; without one, the row hash is stable across calls."""
    assert case_keys([{"case_key": "a", "id": 1}, {"case_key": "b", "id": 2}]) == ["a", "b"]
    assert case_keys([{"id": 7}, {"id": 8}]) == ["7", "8"]
    rows = [{"text": "x"}, {"text": "y"}]
    assert case_keys(rows) == [row_hash(rows[0]), row_hash(rows[1])]
    assert case_keys(rows) == case_keys([dict(r) for r in rows])


def test_identical_rows_get_distinct_keys() -> None:
    """Two equal rows without a key column are two cases."""
    keys = case_keys([{"text": "x"}, {"text": "x"}])
    assert keys[0] != keys[1]


def test_repeated_explicit_keys_are_refused() -> None:
    """A case_key column must be unique; the error names the repeated value."""
    with pytest.raises(CasesInvalid, match="'a'"):
        case_keys([{"case_key": "a"}, {"case_key": "a"}])


def test_plain_turns_timestamps_into_iso_text() -> None:
    """A timestamp cell is stored as ISO text; NaT as None."""
    assert plain(pd.Timestamp("2026-01-02T03:04:05Z")) == "2026-01-02T03:04:05+00:00"
    assert plain(pd.NaT) is None


def test_answers_map_step_ids_to_decisions() -> None:
    """'approve'/'reject'/bools for approvals, dicts for inputs, None leaves it paused."""
    approval = {"step": "check", "kind": "hitl"}
    data = {"step": "note", "kind": "user_input"}
    answers = {"check": "approve", "note": {"note": "ok"}}
    assert decide(answers, {}, approval).action == "approve"  # type: ignore[union-attr]
    assert decide({"check": False}, {}, approval).action == "reject"  # type: ignore[union-attr]
    decision = decide({"check": {"decision": "reject", "comment": "no"}}, {}, approval)
    assert decision is not None and decision.comment == "no"
    assert decide(answers, {}, data).data == {"note": "ok"}  # type: ignore[union-attr]
    assert decide({}, {}, approval) is None
    assert decide(None, {}, approval) is None


def test_a_callable_answer_sees_the_case_and_the_step() -> None:
    """answers=f(case, step) decides per case."""

    def answer(case: dict[str, object], step: dict[str, object]) -> str:
        return "approve" if case["ok"] else "reject"

    approval = {"step": "check", "kind": "hitl"}
    assert decide(answer, {"ok": True}, approval).action == "approve"  # type: ignore[union-attr, arg-type]
    assert decide(answer, {"ok": False}, approval).action == "reject"  # type: ignore[union-attr, arg-type]


def test_an_answer_of_the_wrong_kind_is_refused() -> None:
    """A string for an input step, or 'maybe' for an approval, says what is expected."""
    with pytest.raises(AnswerInvalid, match="dict"):
        decide({"note": "ok"}, {}, {"step": "note", "kind": "user_input"})
    with pytest.raises(AnswerInvalid, match="'approve' or 'reject'"):
        decide({"check": "maybe"}, {}, {"step": "check", "kind": "hitl"})
