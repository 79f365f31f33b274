"""A small triage product for experiment tests, benchmarks and the notebook.

``triage/classify``: ``clean`` (tool) -> ``classify`` (agent, one model call) -> ``tag``
(tool). ``triage/review``: ``clean`` -> ``check`` (approval) -> ``note`` (user input) ->
``classify``. The prompt carries the product's ``prompt_style`` so two versions of the
prompt can be compared.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

COMPONENTS = """
from __future__ import annotations

from pydantic import BaseModel

from master_sdk.authoring import AgentContext, AgentOutput, agent, tool


class Cleaned(BaseModel):
    text: str


@tool
def clean(text: str) -> Cleaned:
    return Cleaned(text=" ".join(text.split()))


class Label(AgentOutput):
    label: str
    confidence: float


@agent(model="default")
def classify(ctx: AgentContext, text: str, style: str) -> Label:
    reply = ctx.complete(f"[{style}] Classify: {text}")
    label = reply.text.strip().split()[-1].strip(".").lower() if reply.text.strip() else ""
    return Label(label=label, confidence=0.9 if style == "v2" else 0.6)


class Tagged(BaseModel):
    label: str
    confidence: float
    tag: str


@tool
def tag(label: str, confidence: float) -> Tagged:
    return Tagged(label=label, confidence=confidence, tag=f"#{label}")
"""

CLASSIFY = """
id: classify
description: Clean the text, classify it with a model, tag the label.
inputs:
  type: object
  properties:
    text: {type: string, minLength: 1, maxLength: 2000}
    style: {type: string, enum: [v1, v2]}
  required: [text, style]
  additionalProperties: false
steps:
  - id: clean
    type: tool
    tool: clean
    input: {text: "{{ inputs.text }}"}
  - id: classify
    type: agent
    agent: classify
    input: {text: "{{ steps.clean.output.text }}", style: "{{ inputs.style }}"}
  - id: tag
    type: tool
    tool: tag
    input:
      label: "{{ steps.classify.output.label }}"
      confidence: "{{ steps.classify.output.confidence }}"
output: "{{ steps.tag.output }}"
"""

REVIEW = """
id: review
description: Clean, ask for approval and a note, then classify.
inputs:
  type: object
  properties:
    text: {type: string, minLength: 1}
  required: [text]
steps:
  - id: clean
    type: tool
    tool: clean
    input: {text: "{{ inputs.text }}"}
  - id: check
    type: hitl
    prompt: "Classify this text?"
    show: "{{ steps.clean.output }}"
  - id: note
    type: user_input
    prompt: "A note for the record"
    schema:
      type: object
      properties: {note: {type: string, minLength: 1}}
      required: [note]
  - id: classify
    type: agent
    agent: classify
    input: {text: "{{ steps.clean.output.text }}", style: "v1"}
output: "{{ steps.classify.output }}"
"""

MODELS = """
models:
  default: {provider: fake}
  judge: {provider: fake}
  priced: {provider: fake, model: priced-fake}
prices:
  priced-fake: {input: 1000.0, cached_input: 1000.0, output: 1000.0}
"""


def write_triage(root: Path, *, models: str = MODELS) -> Path:
    """Create a project folder with the triage product under ``root``; returns ``root``."""
    product = root / "products" / "triage"
    (product / "flows").mkdir(parents=True, exist_ok=True)
    (root / "configs").mkdir(parents=True, exist_ok=True)
    (product / "manifest.yaml").write_text("name: triage\nversion: '1.0'\n", encoding="utf-8")
    (product / "components.py").write_text(COMPONENTS, encoding="utf-8")
    (product / "flows" / "classify.yaml").write_text(textwrap.dedent(CLASSIFY).lstrip())
    (product / "flows" / "review.yaml").write_text(textwrap.dedent(REVIEW).lstrip())
    (root / "configs" / "models.yaml").write_text(textwrap.dedent(models).lstrip())
    return root


def label_of(text: str) -> str:
    """The label the test model gives a text: ``spam`` when it mentions money, else ``ham``."""
    return "spam" if any(w in text.lower() for w in ("money", "prize", "win")) else "ham"
