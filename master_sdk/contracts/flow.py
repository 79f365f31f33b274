"""Spec models for what analysts write: manifests, product config and flows.

Each model can publish its JSON Schema for editors (``master schema flow``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from master_sdk.contracts.memory import CollectionSpec
from master_sdk.contracts.policy import CanonicalName, PolicyOverride

IDENT = r"^[A-Za-z_][A-Za-z0-9_]*$"
PRODUCT_NAME = r"^[A-Za-z_][A-Za-z0-9_\-]*$"


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Manifest(_Spec):
    """``products/<name>/manifest.yaml``."""

    name: str = Field(pattern=PRODUCT_NAME, description="Must equal the folder name.")
    version: str = "0.0.0"
    description: str = ""
    components: list[str] | str = Field(
        default="components.py",
        description="Python module(s) with @tool and @agent definitions, inside the product.",
    )
    flows: str = Field(default="flows/", description="Folder of flow YAML files.")


class ProductConfig(_Spec):
    """``products/<name>/config/product.yaml``: may only tighten the platform policy."""

    policy: PolicyOverride | None = None
    models: dict[CanonicalName, CanonicalName] = Field(
        default_factory=dict, description="Aliases: name used by agents -> logical model name."
    )
    collections: dict[CanonicalName, CollectionSpec] = Field(
        default_factory=dict, description="Vector memory collections (ctx.memory(name))."
    )


class _Step(_Spec):
    id: str = Field(pattern=IDENT, description="Unique within the flow.")
    description: str | None = None
    when: str | None = Field(
        default=None,
        description="A guard: a Jinja expression without braces. False skips the step.",
    )


class ToolStep(_Step):
    """Call a registered tool with templated input."""

    type: Literal["tool"]
    tool: str
    input: dict[str, Any] = Field(default_factory=dict)


class AgentStep(_Step):
    """Call a registered agent; its output is validated against its AgentOutput model."""

    type: Literal["agent"]
    agent: str
    input: dict[str, Any] = Field(default_factory=dict)
    model: str | None = Field(default=None, description="Override the agent's logical model.")


class HitlStep(_Step):
    """Ask a human to approve or reject."""

    type: Literal["hitl"]
    prompt: str
    show: Any = Field(default=None, description="Template of what is being approved.")
    on_reject: str = Field(
        default="stop", description="'stop' ends the run as rejected; or a later step id."
    )


class UserInputStep(_Step):
    """Ask a human for data described by a JSON Schema."""

    type: Literal["user_input"]
    prompt: str
    schema_: dict[str, Any] = Field(alias="schema", description="JSON Schema of the data.")


Step = Annotated[ToolStep | AgentStep | HitlStep | UserInputStep, Field(discriminator="type")]


class FlowSpec(_Spec):
    """One flow file: a list of steps run in order."""

    id: str = Field(pattern=IDENT)
    description: str = ""
    inputs: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object"}, description="JSON Schema of the inputs."
    )
    steps: list[Step] = Field(min_length=1)
    output: Any = Field(default=None, description="Template of the run's output.")
    policy: PolicyOverride | None = None


SPEC_MODELS: dict[str, type[BaseModel]] = {
    "flow": FlowSpec,
    "manifest": Manifest,
    "product": ProductConfig,
}
