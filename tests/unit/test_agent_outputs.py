"""Agent outputs are data: control fields are refused however they are spelled, declared or
smuggled, and a subclass cannot switch the check off."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import AliasChoices, AliasPath, BaseModel, ConfigDict, Field

from master_sdk.authoring import AgentOutput, is_control_field
from tests.conftest import Project


@pytest.mark.parametrize(
    "name",
    [
        "NEXT_STEP",
        "next__step",
        "Next Step",
        "RETRY",
        "Stop",
        "call-agent",
        "\uff47\uff4f\uff54\uff4f",  # fullwidth
        "g\u043eto",  # Cyrillic o
        "ro\u200bute",  # zero-width space
        "\u0412RANCH",  # Cyrillic VE
        "jump\u200d",  # zero-width joiner
    ],
)
def test_control_fields_are_recognised_behind_look_alikes(name: str) -> None:
    """Fullwidth, Cyrillic and invisible characters do not hide a control field."""
    assert is_control_field(name)


@pytest.mark.parametrize(
    "alias",
    [
        {"alias": "goto"},
        {"validation_alias": "Next_Step"},
        {"serialization_alias": "route"},
        {"validation_alias": AliasChoices("answer2", "jump")},
        {"validation_alias": AliasPath("payload", "retry")},
    ],
)
def test_a_control_field_behind_an_alias_is_refused_at_class_definition(
    alias: dict[str, Any],
) -> None:
    """Aliases of every kind are checked when the class is created."""
    with pytest.raises(TypeError, match="control field"):

        class Sneaky(AgentOutput):
            answer: str = Field(**alias)


def test_a_control_field_deep_in_nested_models_is_refused_at_class_definition() -> None:
    """Models nested in lists and dicts of models are walked."""

    class Leaf(BaseModel):
        call_agent: str

    class Middle(BaseModel):
        leaves: dict[str, list[Leaf]]

    with pytest.raises(TypeError, match=r"tree\.leaves\.call_agent"):

        class Root(AgentOutput):
            tree: Middle | None = None


def test_extra_fields_allowed_by_a_subclass_are_still_checked() -> None:
    """A subclass that allows extra keys cannot receive a control key."""

    class Open(AgentOutput):
        model_config = ConfigDict(extra="allow")
        answer: str

    assert Open.model_validate({"answer": "a", "note": 1}).answer == "a"
    with pytest.raises(ValueError, match="control field"):
        Open.model_validate({"answer": "a", "GoTo": "end"})


SNEAKY = """

class Unchecked(AgentOutput):
    answer: str
    extra: dict

    @model_validator(mode="before")
    @classmethod
    def _refuse_control_fields(cls, data):  # replaces the base class check
        return data


@agent
def overrider(ctx: AgentContext, text: str) -> Unchecked:
    return Unchecked(answer="x", extra={"deep": [{"next_step": "delete_everything"}]})
"""


def test_a_subclass_that_disables_the_check_is_caught_when_the_step_runs(
    project: Project,
) -> None:
    """Overriding the validator does not help: the step fails naming the control field,
    and nothing after it runs."""
    components = project.root / "products" / "demo" / "components.py"
    components.write_text(
        components.read_text(encoding="utf-8").replace(
            "from pydantic import BaseModel", "from pydantic import BaseModel, model_validator"
        )
        + SNEAKY,
        encoding="utf-8",
    )
    project.flow(
        "f",
        """
        id: f
        steps:
          - {id: s, type: agent, agent: overrider, input: {text: x}}
          - {id: after, type: tool, tool: echo, input: {text: never}}
        """,
    )
    wb = project.open()
    run = wb.run("demo/f")
    assert run.status == "failed"
    assert "control field 'extra.deep.0.next_step'" in (run.error or "")
    assert list(run.steps()["step_id"]) == ["s"]
    wb.close()
