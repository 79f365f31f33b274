"""Canonical tool and model names: exact matching, refusals with reasons, suggestions."""

from __future__ import annotations

import pytest

from master_sdk.governance.budgets import AllowLists, refusal
from master_sdk.governance.names import fold, name_problem, skeleton, suggest


@pytest.mark.parametrize("name", ["echo", "gpt-4o-mini", "gpt-4.1", "_private", "Tool_2", "a-b.c"])
def test_canonical_names_pass(name: str) -> None:
    """Plain ASCII identifiers, with '-' and dotted parts, are canonical."""
    assert name_problem(name) is None


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        (" echo", "surrounding spaces"),
        ("echo ", "surrounding spaces"),
        ("echo\u00a0", "surrounding spaces"),  # no-break space
        ("ec ho", "must start with a letter"),
        ("ec\u200bho", "invisible character"),  # zero-width space
        ("\u200decho", "invisible character"),  # zero-width joiner
        ("echo\u202e", "invisible character"),  # right-to-left override
        ("\uff45\uff43\uff48\uff4f", "compatibility characters"),  # fullwidth 'echo'
        ("\U0001d41e\U0001d41c\U0001d421\U0001d428", "compatibility characters"),  # math bold
        ("\u0435cho", "non-ASCII character"),  # Cyrillic e
        ("\u03bfpenai", "non-ASCII character"),  # Greek omicron
        ("functions.echo", "wrapper prefix 'functions.'"),
        ("Functions.echo", "wrapper prefix 'Functions.'"),
        ("tools.echo", "wrapper prefix 'tools.'"),
        ("tool.echo", "wrapper prefix 'tool.'"),
        ("openai/gpt-4o", "provider prefix"),
        ("openai:gpt-4o", "provider prefix"),
        ("", "is empty"),
        ("x" * 129, "longer than 128"),
        ("1echo", "must start with a letter"),
        ("echo.", "must start with a letter"),
        ("echo;rm", "must start with a letter"),
    ],
)
def test_non_canonical_names_are_refused_with_the_reason(name: str, reason: str) -> None:
    """Spaces, invisible and look-alike characters and prefixes are refused, never folded."""
    problem = name_problem(name)
    assert problem is not None
    assert reason in problem


def test_a_name_that_is_not_a_string_is_refused() -> None:
    """Allow-list entries from YAML can be numbers or nulls: those are refused too."""
    assert name_problem(3) == "must be a string, not int"
    assert name_problem(None) == "must be a string, not NoneType"


def test_case_is_significant_and_never_folded() -> None:
    """'Echo' is canonical but is a different name from 'echo': it does not match."""
    allow = AllowLists(tools=frozenset({"echo"}), models=None)
    assert name_problem("Echo") is None
    assert allow.tool_refusal("echo") is None
    message = allow.tool_refusal("Echo")
    assert message is not None
    assert "not in allowed_tools" in message and "did you mean 'echo'" in message


@pytest.mark.parametrize(
    "disguised",
    [
        " echo ",
        "ECHO",
        "\uff45\uff43\uff48\uff4f",
        "\u0435cho",
        "ec\u200bho",
        "functions.echo",
        "tools.echo",
        "openai/echo",
    ],
)
def test_disguised_names_never_match_the_allow_list(disguised: str) -> None:
    """Every disguise of an allowed name is denied and the real name is suggested."""
    allow = AllowLists(tools=frozenset({"echo", "count"}), models=None)
    message = allow.tool_refusal(disguised)
    assert message is not None
    assert "echo" in message
    assert suggest(disguised, ["echo", "count"]) == "echo"


def test_no_allow_list_still_refuses_non_canonical_names() -> None:
    """With every name allowed (None), a non-canonical name is still refused."""
    assert refusal("model", "default", None) is None
    assert "wrapper prefix" in (refusal("model", "functions.default", None) or "")


def test_suggestions_need_exactly_one_candidate() -> None:
    """Two candidates that fold to the same key give no suggestion (no guessing)."""
    assert suggest("ECHO", ["echo", "Echo"]) is None
    assert suggest("zzz", ["echo"]) is None


def test_skeleton_and_fold_map_look_alikes_for_comparison_only() -> None:
    """The skeleton drops invisible characters and maps look-alikes; fold drops prefixes."""
    assert skeleton("\uff27\uff2f\u200b\u0422\u041e") == "goto"
    assert fold("functions. Echo") == "echo"
    assert fold("openai/GPT-4o") == "gpt-4o"
