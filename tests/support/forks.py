"""A project for fork tests: tools that count their calls in a real file, an agent whose
prompt comes from a file the test edits, a human step, and two configured models."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

import master_sdk as ms
from master_sdk.models.types import ModelRequest
from master_sdk.testing import FunctionModel

COMPONENTS = """
from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from master_sdk.authoring import AgentContext, AgentOutput, agent, tool

HERE = Path(__file__).parent


def _count(name: str) -> None:
    with open(HERE / "calls.log", "a", encoding="utf-8") as log:
        log.write(name + "\\n")


class Cleaned(BaseModel):
    text: str
    words: int


@tool
def clean(text: str) -> Cleaned:
    _count("clean")
    return Cleaned(text=text.strip(), words=len(text.split()))


class Published(BaseModel):
    url: str


@tool
def publish(summary: str) -> Published:
    _count("publish")
    return Published(url="https://example.org/" + str(len(summary)))


class Summary(AgentOutput):
    summary: str


@agent(model="default")
def summarizer(ctx: AgentContext, text: str) -> Summary:
    _count("summarizer")
    prompt = (HERE / "prompt.txt").read_text(encoding="utf-8").strip()
    return Summary(summary=ctx.complete(prompt + " " + text).text)
"""

FLOW = """
id: report
inputs:
  type: object
  properties: {text: {type: string, minLength: 1}, tone: {type: string}}
  required: [text]
steps:
  - id: clean
    type: tool
    tool: clean
    input: {text: "{{ inputs.text }}"}
  - id: summary
    type: agent
    agent: summarizer
    input: {text: "{{ steps.clean.output.text }}"}
  - id: publish
    type: tool
    tool: publish
    input: {summary: "{{ steps.summary.output.summary }}"}
output: "{{ steps.publish.output }}"
"""

REVIEWED = """
id: reviewed
inputs:
  type: object
  properties: {text: {type: string, minLength: 1}}
  required: [text]
steps:
  - id: clean
    type: tool
    tool: clean
    input: {text: "{{ inputs.text }}"}
  - id: review
    type: hitl
    prompt: "Summarise this?"
  - id: summary
    type: agent
    agent: summarizer
    input: {text: "{{ steps.clean.output.text }}"}
  - id: check
    type: hitl
    prompt: "Publish this summary?"
  - id: publish
    type: tool
    tool: publish
    input: {summary: "{{ steps.summary.output.summary }}"}
"""


def answer(request: ModelRequest) -> str:
    """The fake model: says which model answered and echoes the prompt."""
    return f"[{request.model}] {request.messages[-1].content}"


@dataclass
class ForkProject:
    """A project with product ``news`` (flows ``report`` and ``reviewed``)."""

    root: Path

    @property
    def product(self) -> Path:
        return self.root / "products" / "news"

    def calls(self) -> list[str]:
        """Every tool and agent body that ran, in order."""
        log = self.product / "calls.log"
        return log.read_text(encoding="utf-8").split() if log.exists() else []

    def set_prompt(self, text: str) -> None:
        (self.product / "prompt.txt").write_text(text, encoding="utf-8")

    def write_flow(self, name: str, text: str) -> None:
        path = self.product / "flows" / f"{name}.yaml"
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")

    def open(self, model: FunctionModel, **kwargs: object) -> ms.Workbench:
        providers = {"default": model, "other": model, "banned": model}
        return ms.Workbench.open(self.root, providers=providers, **kwargs)  # type: ignore[arg-type]


def make_project(tmp_path: Path, *, policy: str = "") -> ForkProject:
    """Write the ``news`` product under ``tmp_path/proj``."""
    root = tmp_path / "proj"
    product = root / "products" / "news"
    (product / "flows").mkdir(parents=True)
    (root / "configs").mkdir()
    (product / "manifest.yaml").write_text("name: news\nversion: '1.0'\n", encoding="utf-8")
    (product / "components.py").write_text(COMPONENTS, encoding="utf-8")
    (root / "configs" / "models.yaml").write_text(
        "models:\n  default: {provider: fake}\n  other: {provider: fake}\n"
        "  banned: {provider: fake}\n",
        encoding="utf-8",
    )
    if policy:
        (root / "configs" / "policy.yaml").write_text(policy, encoding="utf-8")
    project = ForkProject(root)
    project.set_prompt("Summarise:")
    project.write_flow("report", FLOW)
    project.write_flow("reviewed", REVIEWED)
    return project
