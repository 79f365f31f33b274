"""ms.scorers: each ready-made scorer, and how a scorer's value becomes score columns."""

from __future__ import annotations

import math

import pytest

import master_sdk as ms
from master_sdk.experiments.scoring import score_case


def _no_judge() -> object:
    raise AssertionError("no judge in these tests")


def test_exact_compares_an_output_field_with_a_case_column() -> None:
    """exact() is 1 when the field equals the case's expected column, else 0."""
    s = ms.scorers.exact("label", expected="expected_label")
    assert s({"expected_label": "spam"}, {"label": "spam"}) is True
    assert s({"expected_label": "spam"}, {"label": "ham"}) is False
    assert s({"expected_label": "spam"}, {"other": "spam"}) is False


def test_exact_case_insensitive_ignores_case_and_outer_spaces() -> None:
    """case_sensitive=False compares casefolded, stripped text."""
    s = ms.scorers.exact("label", value="Spam", case_sensitive=False)
    assert s({}, {"label": " spam "}) is True


def test_exact_names_the_missing_case_column() -> None:
    """A scorer pointing at a column the case lacks raises, naming the column."""
    with pytest.raises(KeyError, match="expected_label"):
        ms.scorers.exact("label", expected="expected_label")({"x": 1}, {"label": "a"})


def test_contains_and_regex_search_text_fields() -> None:
    """contains() finds a substring (case-insensitive by default); regex() a pattern."""
    assert ms.scorers.contains("summary", value="BOARD")({}, {"summary": "for the board"})
    assert not ms.scorers.contains("summary", value="team")({}, {"summary": "for the board"})
    assert ms.scorers.regex("summary", r"\bboard\b")({}, {"summary": "the board."})
    assert not ms.scorers.regex("summary", r"^board")({}, {"summary": "the board"})


def test_json_match_scores_each_field_and_all() -> None:
    """json_match() gives one 0/1 per expected field plus 'all'."""
    s = ms.scorers.json_match(expected="want")
    out = s({"want": '{"label": "spam", "tag": "#x"}'}, {"label": "spam", "tag": "#y"})
    assert out == {"label": 1.0, "tag": 0.0, "all": 0.0}


def test_json_match_follows_dotted_fields() -> None:
    """fields= limits the comparison to dotted paths."""
    s = ms.scorers.json_match(value={"a": {"b": 1}, "c": 2}, fields=["a.b"])
    assert s({}, {"a": {"b": 1}, "c": 3}) == {"a.b": 1.0, "all": 1.0}


def test_numeric_close_uses_tolerances_and_refuses_non_numbers() -> None:
    """numeric_close() is within rel/abs tolerance; text or bool outputs score 0."""
    s = ms.scorers.numeric_close("x", expected="want", abs_tol=0.01)
    assert s({"want": 1.0}, {"x": 1.005}) is True
    assert s({"want": 1.0}, {"x": 1.1}) is False
    assert s({"want": 1.0}, {"x": "n/a"}) is False
    assert s({"want": 1.0}, {"x": True}) is False


def test_score_case_flattens_dicts_and_counts_bools() -> None:
    """Bools count 1/0, dicts become name.key columns, non-numbers go to meta."""
    scored = score_case(
        [
            ms.scorers.exact("label", value="a"),
            ms.scorers.scorer(lambda c, o: {"f1": 0.5, "note": "x"}, name="custom"),
        ],
        {},
        {"label": "a"},
        judge_router=_no_judge,  # type: ignore[arg-type]
    )
    assert scored["values"] == {"exact_label": 1.0, "custom.f1": 0.5}
    assert scored["meta"] == {"custom.note": "x"}
    assert scored["errors"] == {}


def test_a_raising_scorer_records_its_error_and_the_others_still_score() -> None:
    """One scorer raising is an error for that scorer only."""

    def broken(case: object, output: object) -> float:
        raise ValueError("bad rubric")

    scored = score_case(
        [broken, ms.scorers.exact("label", value="a")],
        {},
        {"label": "a"},
        judge_router=_no_judge,  # type: ignore[arg-type]
    )
    assert scored["errors"] == {"broken": "ValueError: bad rubric"}
    assert scored["values"] == {"exact_label": 1.0}


def test_a_lambda_gets_a_positional_column_name() -> None:
    """An unnamed scorer's column is score_<position>; None scores NaN."""
    scored = score_case(
        [lambda c, o: None],
        {},
        {},
        judge_router=_no_judge,  # type: ignore[arg-type]
    )
    assert math.isnan(scored["values"]["score_0"])


def test_a_judge_called_outside_an_experiment_says_how_to_use_it() -> None:
    """llm_judge needs the experiment's router; calling it bare explains that."""
    judge = ms.scorers.llm_judge("Is it polite?")
    with pytest.raises(TypeError, match=r"scorers= of wb\.evaluate"):
        judge({}, {"text": "hi"})
