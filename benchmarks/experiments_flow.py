"""The experiments benchmark flow, shared by master_sdk and its LangGraph peer.

``prepare`` (tool: normalise spaces) -> ``classify`` (agent: one model call; the fake
model sleeps like a remote one and its reply's last word is the label) -> ``tag`` (tool).
Standard library only, so a peer's process pays for its own imports alone.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

FLOW = """
id: classify
description: Prepare the text, classify it with a model, tag the label.
inputs:
  type: object
  properties: {text: {type: string, minLength: 1}}
  required: [text]
steps:
  - {id: prepare, type: tool, tool: prepare, input: {text: "{{ inputs.text }}"}}
  - {id: classify, type: agent, agent: classify, input: {text: "{{ steps.prepare.output.text }}"}}
  - id: tag
    type: tool
    tool: tag
    input: {label: "{{ steps.classify.output.label }}"}
output: "{{ steps.tag.output }}"
"""

COMPONENTS = """
from pydantic import BaseModel

from master_sdk.authoring import AgentContext, AgentOutput, agent, tool


class Prepared(BaseModel):
    text: str


@tool
def prepare(text: str) -> Prepared:
    return Prepared(text=" ".join(text.split()))


class Label(AgentOutput):
    label: str


@agent(model="default")
def classify(ctx: AgentContext, text: str) -> Label:
    reply = ctx.complete(f"Classify: {text}")
    return Label(label=reply.text.rsplit(" ", 1)[-1])


class Tagged(BaseModel):
    label: str
    tag: str


@tool
def tag(label: str) -> Tagged:
    return Tagged(label=label, tag=f"#{label}")
"""


def write_project(root: Path) -> Path:
    """A project folder holding the ``bench`` product; returns ``root``."""
    product = root / "products" / "bench"
    (product / "flows").mkdir(parents=True, exist_ok=True)
    (root / "configs").mkdir(parents=True, exist_ok=True)
    (product / "manifest.yaml").write_text("name: bench\nversion: '1'\n", encoding="utf-8")
    (product / "components.py").write_text(COMPONENTS, encoding="utf-8")
    (product / "flows" / "classify.yaml").write_text(textwrap.dedent(FLOW).lstrip())
    (root / "configs" / "app.yaml").write_text("synchronous: FULL\n", encoding="utf-8")
    return root


def case_text(index: int) -> str:
    """The text of case ``index``: distinct per case; every third is about money."""
    topic = "win money prize" if index % 3 == 0 else "meeting notes"
    return f"case {index}:  {topic}   label{index % 3}"


def prepared(text: str) -> str:
    """What the ``prepare`` tool returns."""
    return " ".join(text.split())


def classify_reply(text: str) -> str:
    """The fake model's reply to the classify prompt (master_sdk's fake echoes it)."""
    return f"[fake] Classify: {text}"


def label_of(reply: str) -> str:
    """The label the agent takes from a reply: its last word."""
    return reply.rsplit(" ", 1)[-1]
