"""Policy only tightens: loosening, non-canonical names and disallowed steps fail at load."""

from __future__ import annotations

from pathlib import Path

import pytest

import master_sdk as ms
from master_sdk.contracts.policy import Policy, PolicyOverride, RetryPolicy
from master_sdk.errors import ConfigError, FlowError
from master_sdk.governance.policy import tighten
from tests.conftest import Project

ECHO_STEPS = """
steps:
  - {id: a, type: tool, tool: echo, input: {text: x}}
"""
ECHO_FLOW = "id: f\n" + ECHO_STEPS


def with_policy(policy: str) -> str:
    """The echo flow with a ``policy:`` block."""
    return f"id: f\npolicy: {policy}\n{ECHO_STEPS}"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def product_config(project: Project, text: str) -> Path:
    return write(project.root / "products" / "demo" / "config" / "product.yaml", text)


def load_error(project: Project, ref: str = "demo/f") -> FlowError:
    wb = project.open()
    try:
        with pytest.raises(FlowError) as caught:
            wb.flow(ref)
    finally:
        wb.close()
    return caught.value


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ("' Echo '", "surrounding spaces"),
        ("functions.echo", "wrapper prefix"),
        ("openai/gpt-4o", "provider prefix"),
        ('"\\uff45cho"', "compatibility characters"),
        ('"\\u0435cho"', "non-ASCII character"),
        ('"ec\\u200bho"', "invisible character"),
    ],
)
def test_a_platform_allow_list_entry_that_is_not_canonical_is_a_config_error(
    project: Project, entry: str, reason: str
) -> None:
    """configs/policy.yaml naming a tool with spaces, prefixes or look-alikes fails to open,
    naming the file and the list item."""
    write(project.root / "configs" / "policy.yaml", f"policy:\n  allowed_tools: [{entry}]\n")
    with pytest.raises(ConfigError) as caught:
        project.open()
    assert caught.value.file is not None and caught.value.file.endswith("policy.yaml")
    assert caught.value.key == "allowed_tools.0"
    assert reason in str(caught.value)


def test_a_product_allow_list_entry_that_is_not_canonical_is_a_flow_error(
    project: Project,
) -> None:
    """product.yaml listing 'functions.echo' is refused with the file and field named."""
    config = product_config(project, "policy:\n  allowed_tools: [functions.echo]\n")
    project.flow("f", ECHO_FLOW)
    error = load_error(project)
    assert error.file == str(config)
    assert error.field == "policy.allowed_tools.0"
    assert "wrapper prefix 'functions.'" in str(error)


@pytest.mark.parametrize(
    ("product_yaml", "field", "fragment"),
    [
        ("policy: {max_steps: 201}", "policy.max_steps", "201 is above the limit 200"),
        ("policy: {max_tool_calls: 101}", "policy.max_tool_calls", "above the limit 100"),
        ("policy: {max_model_calls: 1000}", "policy.max_model_calls", "above the limit"),
        ("policy: {max_total_tokens: 1000001}", "policy.max_total_tokens", "above the limit"),
        ("policy: {max_input_bytes: 65537}", "policy.max_input_bytes", "above the limit"),
        ("policy: {max_rendered_chars: 2000000}", "policy.max_rendered_chars", "above"),
        ("policy: {max_render_ms: 5000}", "policy.max_render_ms", "above the limit"),
        ("policy: {max_recoveries: 4}", "policy.max_recoveries", "above the limit"),
        (
            "policy: {model_retries: {max_attempts: 4}}",
            "policy.model_retries.max_attempts",
            "above 3",
        ),
    ],
)
def test_a_product_that_raises_a_limit_is_refused_naming_file_and_field(
    project: Project, product_yaml: str, field: str, fragment: str
) -> None:
    """Every limit may only go down: one above the platform's is a load-time FlowError."""
    write(
        project.root / "configs" / "policy.yaml",
        "policy: {max_steps: 200, max_tool_calls: 100, max_model_calls: 100}\n",
    )
    config = product_config(project, product_yaml + "\n")
    project.flow("f", ECHO_FLOW)
    error = load_error(project)
    assert error.file == str(config)
    assert error.field == field
    assert "may only tighten" in str(error) and fragment in str(error)


def test_a_product_cannot_add_a_tool_outside_the_platform_allow_list(project: Project) -> None:
    """The platform allows echo only: a product listing count is refused."""
    write(project.root / "configs" / "policy.yaml", "policy: {allowed_tools: [echo]}\n")
    config = product_config(project, "policy: {allowed_tools: [echo, count]}\n")
    project.flow("f", ECHO_FLOW)
    error = load_error(project)
    assert (error.file, error.field) == (str(config), "policy.allowed_tools")
    assert "count not in the enclosing policy's allowed_tools" in str(error)


def test_a_flow_cannot_loosen_what_its_product_tightened(project: Project) -> None:
    """Product max_steps 5, flow max_steps 6: refused, naming the flow file."""
    product_config(project, "policy: {max_steps: 5}\n")
    path = project.flow("f", with_policy("{max_steps: 6}"))
    error = load_error(project)
    assert (error.file, error.flow, error.field) == (str(path), "f", "policy.max_steps")
    assert "6 is above the limit 5" in str(error)


def test_a_flow_cannot_turn_automatic_retries_back_on(project: Project) -> None:
    """auto_retry_idempotent off at the platform stays off."""
    write(project.root / "configs" / "policy.yaml", "policy: {auto_retry_idempotent: false}\n")
    project.flow("f", with_policy("{auto_retry_idempotent: true}"))
    error = load_error(project)
    assert error.field == "policy.auto_retry_idempotent"


def test_tightening_is_applied_and_lower_levels_win(project: Project) -> None:
    """Platform 200 -> product 20 -> flow 3: the flow runs under 3 and the product's list."""
    product_config(project, "policy: {max_steps: 20, allowed_tools: [echo, count]}\n")
    project.flow("f", with_policy("{max_steps: 3, max_cost_usd: 0.5}"))
    wb = project.open()
    policy = wb.catalog.flow("demo/f").policy
    assert policy.max_steps == 3
    assert policy.max_cost_usd == 0.5
    assert policy.allowed_tools == ["echo", "count"]
    wb.close()


def test_a_retry_override_keeps_the_backoff_it_does_not_set() -> None:
    """Overriding only max_attempts keeps the platform's backoff, not the defaults."""
    base = Policy(model_retries=RetryPolicy(max_attempts=5, backoff_s=2.0, max_backoff_s=30))
    override = PolicyOverride.model_validate({"model_retries": {"max_attempts": 2}})
    merged = tighten(base, override, file="product.yaml")
    assert merged.model_retries == RetryPolicy(max_attempts=2, backoff_s=2.0, max_backoff_s=30)


def test_a_retry_override_without_max_attempts_is_not_read_as_the_default() -> None:
    """Platform max_attempts 1 and an override of backoff only: no 'above 1' error."""
    base = Policy(model_retries=RetryPolicy(max_attempts=1))
    override = PolicyOverride.model_validate({"model_retries": {"backoff_s": 0.1}})
    merged = tighten(base, override, file="product.yaml")
    assert merged.model_retries.max_attempts == 1
    assert merged.model_retries.backoff_s == 0.1


@pytest.mark.parametrize("value", [".nan", ".inf", "-1"])
def test_a_cost_limit_must_be_a_finite_non_negative_number(project: Project, value: str) -> None:
    """NaN would make every comparison false (no limit at all): it is refused at load."""
    project.flow("f", with_policy(f"{{max_cost_usd: {value}}}"))
    error = load_error(project)
    assert error.field == "policy.max_cost_usd"


def test_a_flow_step_calling_a_tool_outside_the_allow_list_fails_at_load(
    project: Project,
) -> None:
    """The product allows count only; a step calling echo is a load-time error, not a run."""
    product_config(project, "policy: {allowed_tools: [count]}\n")
    path = project.flow("f", ECHO_FLOW)
    error = load_error(project)
    assert (error.file, error.flow, error.step, error.field) == (str(path), "f", "a", "tool")
    assert "tool 'echo' is not in allowed_tools" in str(error)
    wb = project.open()
    assert [e.step for e in wb.validate()] == ["a"]
    wb.close()


def test_an_empty_allow_list_denies_every_tool(project: Project) -> None:
    """allowed_tools: [] allows nothing."""
    product_config(project, "policy: {allowed_tools: []}\n")
    project.flow("f", ECHO_FLOW)
    assert "not in allowed_tools" in str(load_error(project))


def test_an_agent_step_on_a_model_outside_the_allow_list_fails_at_load(project: Project) -> None:
    """The summarizer agent uses 'default'; a flow allowing only 'gpt' is refused."""
    write(
        project.root / "configs" / "models.yaml",
        "models: {default: {provider: fake}, gpt: {provider: fake}}\n",
    )
    project.flow(
        "f",
        """
        id: f
        policy: {allowed_models: [gpt]}
        steps:
          - {id: s, type: agent, agent: summarizer, input: {text: x}}
        """,
    )
    error = load_error(project)
    assert (error.step, error.field) == ("s", "model")
    assert "model 'default' is not in allowed_models" in str(error)


def test_an_agent_step_on_an_unknown_model_fails_at_load(project: Project) -> None:
    """A step overriding the model with a name models.yaml lacks is a load-time error."""
    project.flow(
        "f",
        """
        id: f
        steps:
          - {id: s, type: agent, agent: summarizer, model: defualt, input: {text: x}}
        """,
    )
    error = load_error(project)
    assert (error.step, error.field) == ("s", "model")
    assert "model 'defualt' is not a model in configs/models.yaml" in str(error)


def test_a_tool_registered_under_a_look_alike_name_is_refused(project: Project) -> None:
    """@tool(name=...) with a Cyrillic letter cannot be registered, so it cannot be allowed
    by accident either."""
    components = project.root / "products" / "demo" / "components.py"
    sneaky = (
        '@tool(name="\\u0435cho")\ndef sneaky(text: str) -> Echoed:\n    return Echoed(text=text)\n'
    )
    components.write_text(
        components.read_text(encoding="utf-8") + "\n\n" + sneaky, encoding="utf-8"
    )
    project.flow("f", ECHO_FLOW)
    error = load_error(project)
    assert error.field == "components"
    assert "tool name" in str(error) and "non-ASCII" in str(error)


@pytest.mark.parametrize(
    ("patterns", "fragment"),
    [
        ("{ticket: 'TCK-\\d+'}", "must be upper case"),
        ("{TICKET: '(unclosed'}", "does not compile"),
        ("{EVERYTHING: '.*'}", "matches the empty string"),
    ],
)
def test_redaction_patterns_are_checked_when_the_policy_is_read(
    project: Project, patterns: str, fragment: str
) -> None:
    """A bad extra redaction pattern is a ConfigError naming policy.yaml."""
    write(
        project.root / "configs" / "policy.yaml",
        f"policy:\n  redaction: {{extra_patterns: {patterns}}}\n",
    )
    with pytest.raises(ConfigError) as caught:
        ms.Workbench.open(project.root)
    assert "redaction.extra_patterns" in str(caught.value)
    assert fragment in str(caught.value)


def test_a_model_configured_under_a_non_canonical_name_is_a_config_error(
    project: Project,
) -> None:
    """Logical model names obey the same rules as allow-list entries."""
    write(project.root / "configs" / "models.yaml", "models:\n  openai/gpt: {provider: fake}\n")
    with pytest.raises(ConfigError) as caught:
        project.open()
    assert caught.value.file is not None and caught.value.file.endswith("models.yaml")
    assert "provider prefix" in str(caught.value)


def test_a_product_model_alias_must_be_canonical(project: Project) -> None:
    """product.yaml `models:` aliases with look-alike characters are refused at load."""
    product_config(project, 'models: {"summ\\u0430rizer": default}\n')
    project.flow("f", ECHO_FLOW)
    error = load_error(project)
    assert error.field is not None and error.field.startswith("models")
    assert "non-ASCII" in str(error)
