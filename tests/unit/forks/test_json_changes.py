"""The JSON paths a diff reports, and the template reads a fork checks."""

from __future__ import annotations

from master_sdk.diffing import MAX_SHOWN, _shown, json_changes
from master_sdk.forks.planning import references


def test_equal_values_have_no_changes() -> None:
    """Nothing is reported for equal nested values."""
    assert list(json_changes({"a": [1, {"b": 2}]}, {"a": [1, {"b": 2}]})) == []


def test_changed_leaves_are_reported_by_json_path() -> None:
    """A changed nested field and list item are reported with their path, old and new."""
    old = {"summary": "x", "meta": {"n": 1, "tags": ["a", "b"]}}
    new = {"summary": "y", "meta": {"n": 1, "tags": ["a", "c"]}}
    assert list(json_changes(old, new)) == [
        ("$.summary", "x", "y"),
        ("$.meta.tags[1]", "b", "c"),
    ]


def test_added_and_removed_keys_and_items_show_none_on_the_missing_side() -> None:
    """A key or item only one side has is reported against None."""
    assert list(json_changes({"a": 1}, {"b": 2})) == [("$.a", 1, None), ("$.b", None, 2)]
    assert list(json_changes([1], [1, 2])) == [("$[1]", None, 2)]


def test_a_value_that_changes_type_is_a_change_even_when_equal() -> None:
    """1 and 1.0 or True compare equal in Python but are different JSON."""
    assert list(json_changes({"a": 1}, {"a": True})) == [("$.a", 1, True)]
    assert list(json_changes(None, {"a": 1})) == [("$", None, {"a": 1})]


def test_long_values_are_cut_for_display() -> None:
    """A value longer than MAX_SHOWN characters ends with an ellipsis; newlines go."""
    shown = _shown("word " * 50)
    assert len(shown) == MAX_SHOWN and shown.endswith("…")
    assert _shown("a\nb") == "a b"
    assert _shown({"k": 1}) == '{"k": 1}'


def test_template_reads_of_step_outputs_are_found() -> None:
    """Dotted and bracketed reads of steps.<id>.output.<field> are found; others are not."""
    text = (
        '{"a": "{{ steps.clean.output.text }}", "b": "{{ steps.ask.output[\'angle\'] }}",'
        ' "c": "{{ inputs.text }}", "d": "{{ steps.x.status }}"}'
    )
    assert list(references(text)) == [("clean", "text"), ("ask", "angle")]
