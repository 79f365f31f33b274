"""Per-run budgets: at the limit is allowed, one over is refused, unknowns count high."""

from __future__ import annotations

import math

import pytest

from master_sdk.contracts.policy import Policy
from master_sdk.errors import PolicyViolation
from master_sdk.governance.budgets import RunBudget, conservative_usage
from master_sdk.memory.records import RunRow
from master_sdk.models.tokens import estimate_tokens
from master_sdk.models.types import Usage


def run_row(**used: float) -> RunRow:
    row = RunRow(
        run_id="r",
        product="p",
        flow="f",
        status="running",
        version=0,
        cursor=0,
        created_us=0,
        updated_us=0,
        flow_hash="h",
        product_version="1",
        created_by="ana",
    )
    for name, value in used.items():
        setattr(row, name, value)
    return row


def budget(policy: Policy, **used: float) -> RunBudget:
    return RunBudget(run_row(**used), policy)


def test_a_step_exactly_at_max_steps_runs_and_the_next_is_refused() -> None:
    """max_steps 3: the third step is allowed, the fourth is a violation naming 4 and 3."""
    policy = Policy(max_steps=3)
    budget(policy, steps_used=2).check_step("c")
    with pytest.raises(PolicyViolation) as caught:
        budget(policy, steps_used=3).check_step("d")
    assert (caught.value.rule, caught.value.limit, caught.value.value) == ("max_steps", 3, 4)
    assert caught.value.step == "d"


def test_a_zero_limit_refuses_the_first_use() -> None:
    """max_tool_calls 0 means no tool call at all."""
    with pytest.raises(PolicyViolation) as caught:
        budget(Policy(max_tool_calls=0)).check_tool("a", "echo")
    assert (caught.value.rule, caught.value.value) == ("max_tool_calls", 1)


def test_tool_calls_at_the_limit_pass_and_one_over_fails() -> None:
    """max_tool_calls 2: the second call passes, the third is refused."""
    policy = Policy(max_tool_calls=2)
    budget(policy, tool_calls=1).check_tool("a", "echo")
    with pytest.raises(PolicyViolation):
        budget(policy, tool_calls=2).check_tool("a", "echo")


def test_a_tool_outside_the_allow_list_is_refused_before_the_count() -> None:
    """The allow-list is checked first and names the tool and the list."""
    with pytest.raises(PolicyViolation) as caught:
        budget(Policy(allowed_tools=["count"])).check_tool("a", "echo")
    assert caught.value.rule == "allowed_tools"
    assert (caught.value.limit, caught.value.value) == (["count"], "echo")


def test_model_calls_at_the_limit_pass_and_one_over_fails() -> None:
    """max_model_calls 1: the first call passes, the second is refused."""
    policy = Policy(max_model_calls=1)
    budget(policy).check_model("s", "default", worst_tokens=0, worst_cost=0.0)
    with pytest.raises(PolicyViolation) as caught:
        budget(policy, model_calls=1).check_model("s", "default", worst_tokens=0, worst_cost=0.0)
    assert (caught.value.rule, caught.value.value) == ("max_model_calls", 2)


def test_worst_case_tokens_exactly_at_the_limit_pass_and_one_more_is_refused() -> None:
    """600 used + a worst case of 400 fits 1000 exactly; 401 does not."""
    policy = Policy(max_total_tokens=1000)
    budget(policy, tokens_in=500, tokens_out=100).check_model(
        "s", "default", worst_tokens=400, worst_cost=None
    )
    with pytest.raises(PolicyViolation) as caught:
        budget(policy, tokens_in=500, tokens_out=100).check_model(
            "s", "default", worst_tokens=401, worst_cost=None
        )
    assert (caught.value.rule, caught.value.limit, caught.value.value) == (
        "max_total_tokens",
        1000,
        1001,
    )


def test_a_cost_that_lands_exactly_on_the_limit_through_float_sums_is_allowed() -> None:
    """0.1 + 0.2 is 0.30000000000000004 in floats: still exactly the 0.3 limit."""
    policy = Policy(max_cost_usd=0.3)
    budget(policy, cost_usd=0.1).check_model("s", "gpt", worst_tokens=1, worst_cost=0.2)
    with pytest.raises(PolicyViolation) as caught:
        budget(policy, cost_usd=0.1).check_model("s", "gpt", worst_tokens=1, worst_cost=0.2001)
    assert caught.value.rule == "max_cost_usd"


def test_an_unpriced_model_is_refused_only_under_a_cost_budget() -> None:
    """worst_cost None (no price) is refused when max_cost_usd is set, allowed otherwise."""
    budget(Policy(max_cost_usd=None)).check_model("s", "mystery", worst_tokens=1, worst_cost=None)
    with pytest.raises(PolicyViolation) as caught:
        budget(Policy(max_cost_usd=5.0)).check_model(
            "s", "mystery", worst_tokens=1, worst_cost=None
        )
    assert caught.value.rule == "max_cost_usd" and caught.value.value is None
    assert "no price" in str(caught.value)


def test_reported_usage_over_the_limit_is_caught_after_the_call() -> None:
    """A provider that used more than the worst case was allowed is stopped afterwards."""
    policy = Policy(max_total_tokens=100, max_cost_usd=1.0)
    budget(policy, tokens_in=50, tokens_out=50, cost_usd=1.0).check_after_model("s")
    with pytest.raises(PolicyViolation) as caught:
        budget(policy, tokens_in=50, tokens_out=51).check_after_model("s")
    assert caught.value.value == 101
    with pytest.raises(PolicyViolation):
        budget(policy, cost_usd=1.01).check_after_model("s")


@pytest.mark.parametrize(
    ("model", "fragment"),
    [
        ("functions.default", "wrapper prefix"),
        (" default", "surrounding spaces"),
        ("DEFAULT", "not a configured model"),
        ("d\u0435fault", "non-ASCII"),
        ("gpt-5", "not a configured model"),
    ],
)
def test_a_model_name_asked_for_at_run_time_must_be_canonical_and_known(
    model: str, fragment: str
) -> None:
    """Names an agent asks for are checked before any lookup: a policy violation."""
    with pytest.raises(PolicyViolation) as caught:
        budget(Policy()).check_model_name("s", model, {"default", "summarizer"})
    assert caught.value.rule == "allowed_models" and caught.value.value == model
    assert fragment in str(caught.value)


def test_unreported_usage_is_estimated_high_and_flagged() -> None:
    """A provider reporting nothing counts the prompt bound and an estimate of the reply."""
    counted = conservative_usage(Usage(0, 0, reported=False), prompt_tokens=40, reply="x" * 30)
    assert counted == Usage(40, 10, 0, reported=False)


def test_a_reported_zero_for_a_real_call_is_not_believed() -> None:
    """reported=True with zero tokens for a non-empty prompt and reply is re-estimated."""
    counted = conservative_usage(Usage(0, 0), prompt_tokens=12, reply="hello there")
    assert counted.tokens_in == 12
    assert counted.tokens_out == estimate_tokens("hello there") > 0
    assert counted.reported is False


def test_negative_counts_are_never_subtracted_from_the_budget() -> None:
    """A provider reporting negative tokens cannot give tokens back."""
    counted = conservative_usage(Usage(-500, -5), prompt_tokens=8, reply="ok")
    assert counted.tokens_in >= 8 and counted.tokens_out >= 1


def test_reported_usage_is_kept_as_it_is() -> None:
    """Real numbers pass through untouched (the same object)."""
    usage = Usage(120, 30, cached_tokens=100)
    assert conservative_usage(usage, prompt_tokens=500, reply="a reply") is usage


def test_an_empty_reply_may_cost_zero_output_tokens() -> None:
    """Zero output tokens for an empty reply is plausible and kept."""
    usage = Usage(10, 0)
    assert conservative_usage(usage, prompt_tokens=10, reply="") is usage


def test_estimates_count_bytes_so_other_scripts_are_not_undercounted() -> None:
    """Three UTF-8 bytes per token: CJK text counts about one token per character."""
    assert estimate_tokens("\u4f60\u597d\u4e16\u754c") == 4
    assert estimate_tokens("") == 1


def test_budget_rows_show_a_rule_that_is_not_a_budget() -> None:
    """A run blocked by allowed_tools gets a row named after the rule."""
    row = run_row(steps_used=2)
    row.state["violation"] = {"rule": "allowed_tools", "limit": ["count"], "value": "echo"}
    rows = RunBudget(row, Policy()).rows()
    assert [name for name, _, _ in rows][-1] == "allowed_tools"
    assert math.isnan(rows[-1][1]) and rows[-1][2] is None
    assert rows[0] == ("steps", 2, 200)
