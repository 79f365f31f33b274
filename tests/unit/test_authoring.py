"""The authoring surface: tools from signatures, agents with data-only outputs."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from master_sdk.authoring import (
    AGENT_ATTR,
    TOOL_ATTR,
    AgentContext,
    AgentOutput,
    ToolContext,
    agent,
    is_control_field,
    tool,
)


class Out(BaseModel):
    text: str


class Said(AgentOutput):
    said: str


def test_tool_input_model_comes_from_the_signature() -> None:
    """Parameters become fields; defaults stay optional; ToolContext is not an input."""

    @tool(name="shout", idempotent=True)
    def loud(text: str, times: int = 2, ctx: ToolContext | None = None) -> Out:
        return Out(text=text.upper() * times)

    spec = getattr(loud, TOOL_ATTR)
    assert spec.name == "shout"
    assert spec.idempotent is True
    assert spec.output_model is Out
    assert set(spec.input_model.model_fields) == {"text", "times"}
    assert spec.context_param == "ctx"
    assert spec.input_model.model_validate({"text": "a"}).times == 2
    with pytest.raises(ValidationError):
        spec.input_model.model_validate({"text": "a", "colour": "red"})
    assert loud("a", 1) == Out(text="A")


def test_tool_context_parameter_is_detected_by_annotation() -> None:
    """A parameter annotated ToolContext receives the context and is not an input field."""

    @tool
    def keyed(text: str, context: ToolContext) -> dict[str, Any]:
        return {"key": context.idempotency_key}

    spec = getattr(keyed, TOOL_ATTR)
    assert spec.context_param == "context"
    assert set(spec.input_model.model_fields) == {"text"}


def test_agent_requires_an_agent_output_return_annotation() -> None:
    """An agent returning a plain model is refused when it is defined."""
    with pytest.raises(TypeError, match="AgentOutput subclass"):

        @agent
        def bad(ctx: AgentContext, text: str) -> Out:
            return Out(text=text)


def test_agent_spec_records_model_and_inputs() -> None:
    """@agent(model=...) keeps the logical model name and an input model without ctx."""

    @agent(model="gpt")
    def sayer(ctx: AgentContext, text: str) -> Said:
        return Said(said=text)

    spec = getattr(sayer, AGENT_ATTR)
    assert spec.model == "gpt"
    assert set(spec.input_model.model_fields) == {"text"}
    assert spec.output_model is Said


@pytest.mark.parametrize(
    "name",
    [
        "next_step",
        "nextStep",
        "NEXT-STEP",
        "goto",
        "Go_To",
        "retry",
        "branch",
        "route",
        "stop",
        "jump",
        "call_agent",
        "callAgent",
        "handoff",
    ],
)
def test_control_field_names_are_recognised_in_any_spelling(name: str) -> None:
    """Case, underscores and hyphens do not hide a control field."""
    assert is_control_field(name)


@pytest.mark.parametrize("name", ["summary", "steps", "router_notes", "stopwatch", "branches"])
def test_ordinary_field_names_are_not_control_fields(name: str) -> None:
    """Only the exact control words are refused."""
    assert not is_control_field(name)


def test_agent_output_with_a_control_field_is_refused_at_class_definition() -> None:
    """Declaring next_step on an AgentOutput fails when the class is created."""
    with pytest.raises(TypeError, match="next_step"):

        class Steering(AgentOutput):
            answer: str
            next_step: str


def test_control_field_in_a_nested_model_is_refused_at_class_definition() -> None:
    """A nested model carrying `goto` is found too."""

    class Inner(BaseModel):
        goto: str

    with pytest.raises(TypeError, match=r"plan\.goto"):

        class Outer(AgentOutput):
            plan: list[Inner]


def test_control_keys_inside_free_form_data_are_refused_at_validation() -> None:
    """A dict field cannot smuggle a control key at any depth."""

    class Loose(AgentOutput):
        data: dict[str, Any]

    assert Loose(data={"a": {"b": 1}}).data == {"a": {"b": 1}}
    with pytest.raises(ValidationError, match="control field"):
        Loose(data={"a": [{"Route": "x"}]})
    with pytest.raises(ValidationError, match="control field"):
        Loose.model_validate({"data": {}, "jump": 1})
