"""A new product that works at once: ``master new product NAME`` / ``wb.new_product(name)``.

The scaffold is the smallest product that shows every part: a manifest, a product policy
that tightens the platform's, a flow with a tool step, a user input and an agent step on
the ``default`` model (the fake provider unless configured otherwise), the
``components.py`` defining the tool and the agent, and ``notebooks/draft.ipynb``, which runs
the flow end to end with its form answered in code and passes ``master test`` at once
(:mod:`master_sdk.notebook_tests`). It passes ``master validate`` and runs as written:
``wb.run("NAME/draft", inputs={"topic": "..."})`` pauses at the form, ``submit`` completes it.
"""

from __future__ import annotations

import re
from pathlib import Path

from master_sdk.errors import FlowError

NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,63}$")
FLOW_ID = "draft"

_MANIFEST = """\
name: {name}
version: "0.1.0"
description: A new product. Edit flows/{flow}.yaml and components.py, then run it again.
components: components.py
flows: flows/
"""

_POLICY = """\
# May only tighten configs/policy.yaml.
policy:
  max_steps: 10
  max_tool_calls: 5
  max_model_calls: 5
  allowed_tools: [tidy]
  allowed_models: [default]
models:
  writer: default      # the agent's model: a logical name from configs/models.yaml
"""

_FLOW = """\
id: {flow}
description: Tidy a topic, ask for a tone, then draft a line about it.
inputs:
  type: object
  properties:
    topic: {{type: string, minLength: 1, maxLength: 500, title: Topic}}
  required: [topic]
  additionalProperties: false
steps:
  - id: tidy
    type: tool
    tool: tidy
    input: {{text: "{{{{ inputs.topic }}}}"}}
  - id: tone
    type: user_input
    prompt: "Which tone should the draft take?"
    schema:
      type: object
      properties:
        tone: {{type: string, enum: [plain, friendly, formal], default: plain, title: Tone}}
      required: [tone]
  - id: draft
    type: agent
    agent: writer
    input:
      topic: "{{{{ steps.tidy.output.text }}}}"
      tone: "{{{{ steps.tone.output.tone }}}}"
output: "{{{{ steps.draft.output }}}}"
"""

_COMPONENTS = '''\
"""Tools and agents of the {name} product."""

from __future__ import annotations

from pydantic import BaseModel

from master_sdk.authoring import AgentContext, AgentOutput, agent, tool


class Tidied(BaseModel):
    """What the tidy tool returns."""

    text: str


@tool
def tidy(text: str) -> Tidied:
    """Collapse runs of spaces and trim the text."""
    return Tidied(text=" ".join(text.split()))


class Draft(AgentOutput):
    """The writer's output: data only."""

    draft: str
    tone: str


@agent(model="default")
def writer(ctx: AgentContext, topic: str, tone: str) -> Draft:
    """Draft one line about ``topic`` in ``tone`` with one model call."""
    reply = ctx.complete(f"Write one {{tone}} line about: {{topic}}")
    return Draft(draft=reply.text, tone=tone)
'''


def new_product(products_dir: Path, name: str) -> Path:
    """Write a working product ``name`` under ``products_dir``; return its folder.

    Raises:
        FlowError: ``name`` is not a valid product name, or the folder already exists
            (nothing is written then).
    """
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise FlowError(
            f"{name!r} is not a product name: use letters, digits, '_' and '-', starting "
            "with a letter or '_' (at most 64 characters)",
            field="name",
            hint="for example: master new product my_product",
        )
    folder = products_dir / name
    if folder.exists() or folder.is_symlink():
        raise FlowError(
            f"a product folder '{name}' already exists; choose another name or remove it",
            file=str(folder),
            field="name",
        )
    files = {
        "manifest.yaml": _MANIFEST.format(name=name, flow=FLOW_ID),
        "config/product.yaml": _POLICY,
        f"flows/{FLOW_ID}.yaml": _FLOW.format(flow=FLOW_ID),
        "components.py": _COMPONENTS.format(name=name),
        # a regression test of the flow from the start: `master test` runs it as it is
        f"notebooks/{FLOW_ID}.ipynb": _starter_notebook(name),
    }
    staging = products_dir / f".{name}.new"
    try:
        for relative, text in files.items():
            path = staging / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        # the folder appears whole or not at all: a workbench never loads half a product
        staging.rename(folder)
    except OSError as exc:
        _remove(staging)
        raise FlowError(
            f"cannot create product '{name}': {exc.strerror or exc}", file=str(folder)
        ) from None
    return folder


def _starter_notebook(name: str) -> str:
    """The flow end to end in a notebook: run it, answer the tone form, assert on frames."""
    from master_sdk.notebook_tests.starter import product_notebook_text

    return product_notebook_text(
        name,
        FLOW_ID,
        inputs={"topic": "  a   first topic "},
        answers={"tone": {"tone": "friendly"}},
    )


def _remove(path: Path) -> None:
    if not path.exists():
        return
    for child in sorted(path.rglob("*"), reverse=True):
        if child.is_dir() and not child.is_symlink():
            child.rmdir()
        else:
            child.unlink()
    path.rmdir()
