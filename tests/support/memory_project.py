"""A throwaway project whose product keeps vector memory, for memory tests (and crash tests,
which run it in a subprocess through :data:`DRIVER`)."""

from __future__ import annotations

import textwrap
from pathlib import Path

COMPONENTS = """
from __future__ import annotations

from pydantic import BaseModel

from master_sdk.authoring import AgentContext, AgentOutput, ToolContext, agent, tool


class Added(BaseModel):
    ids: list[str]
    count: int


@tool(idempotent=True)
def remember(texts: list[str], tag: str, ctx: ToolContext) -> Added:
    notes = ctx.memory("notes")
    ids = notes.add(texts, metadata=[{"tag": tag, "size": len(t)} for t in texts])
    return Added(ids=ids, count=notes.count())


class Found(BaseModel):
    hits: list[dict]


@tool
def recall(query: str, tag: str, ctx: ToolContext) -> Found:
    where = {"tag": tag} if tag else None
    hits = ctx.memory("notes").search(query, k=3, where=where)
    return Found(hits=[{"id": h.id, "score": h.score, "text": h.text} for h in hits])


class Forgot(BaseModel):
    deleted: int


@tool
def forget(ids: list[str], ctx: ToolContext) -> Forgot:
    return Forgot(deleted=ctx.memory("notes").delete(ids))


@tool
def peek_secret(ctx: ToolContext) -> Forgot:
    try:
        ctx.memory("secret")
    except Exception:
        pass  # swallowing the refusal must not help
    return Forgot(deleted=0)


class Sized(AgentOutput):
    dims: int
    tokens: int


@agent(model="default")
def sizer(ctx: AgentContext, text: str) -> Sized:
    out = ctx.embed([text, text.upper()])
    return Sized(dims=int(out.vectors.shape[1]), tokens=out.tokens)
"""

PRODUCT = """
policy:
  allowed_collections: [notes]
collections:
  notes:
    metadata: {tag: string, size: integer}
    max_items: 50
    max_text_chars: 200
  secret:
    metadata: {}
"""

FLOWS = {
    "remember": """
        id: remember
        inputs:
          type: object
          properties:
            texts: {type: array, items: {type: string}}
            tag: {type: string}
          required: [texts, tag]
        steps:
          - id: add
            type: tool
            tool: remember
            input: {texts: "{{ inputs.texts }}", tag: "{{ inputs.tag }}"}
        output: "{{ steps.add.output }}"
    """,
    "recall": """
        id: recall
        inputs:
          type: object
          properties: {query: {type: string}, tag: {type: string}}
          required: [query]
        steps:
          - id: search
            type: tool
            tool: recall
            input: {query: "{{ inputs.query }}", tag: "{{ inputs.tag | default('') }}"}
        output: "{{ steps.search.output }}"
    """,
    "forget": """
        id: forget
        inputs:
          type: object
          properties: {ids: {type: array, items: {type: string}}}
          required: [ids]
        steps:
          - id: drop
            type: tool
            tool: forget
            input: {ids: "{{ inputs.ids }}"}
        output: "{{ steps.drop.output }}"
    """,
    "peek": """
        id: peek
        steps:
          - id: peek
            type: tool
            tool: peek_secret
            input: {}
    """,
    "size": """
        id: size
        inputs:
          type: object
          properties: {text: {type: string}}
          required: [text]
        steps:
          - id: size
            type: agent
            agent: sizer
            input: {text: "{{ inputs.text }}"}
        output: "{{ steps.size.output }}"
    """,
}


def make_memory_project(root: Path, *, app: str = "", policy: str = "") -> Path:
    """A project with product ``mem`` (collections ``notes`` and ``secret``) under ``root``."""
    product = root / "products" / "mem"
    (product / "flows").mkdir(parents=True)
    (product / "config").mkdir()
    (root / "configs").mkdir(exist_ok=True)
    (product / "manifest.yaml").write_text("name: mem\nversion: '1.0'\n", encoding="utf-8")
    (product / "components.py").write_text(COMPONENTS, encoding="utf-8")
    (product / "config" / "product.yaml").write_text(PRODUCT, encoding="utf-8")
    for name, text in FLOWS.items():
        (product / "flows" / f"{name}.yaml").write_text(
            textwrap.dedent(text).lstrip(), encoding="utf-8"
        )
    if app:
        (root / "configs" / "app.yaml").write_text(app, encoding="utf-8")
    if policy:
        (root / "configs" / "policy.yaml").write_text(policy, encoding="utf-8")
    return root
