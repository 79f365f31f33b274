"""Tools and agents of the hello_world product."""

from __future__ import annotations

from pydantic import BaseModel

from master_sdk.authoring import AgentContext, AgentOutput, agent, tool


class Echoed(BaseModel):
    """What the echo tool returns."""

    text: str


@tool
def echo(text: str) -> Echoed:
    """Return the text unchanged."""
    return Echoed(text=text)


class Summary(AgentOutput):
    """The summarizer's output: data only."""

    summary: str
    audience: str


@agent(model="default")
def summarizer(ctx: AgentContext, text: str, audience: str) -> Summary:
    """Summarise ``text`` for ``audience`` with one model call."""
    reply = ctx.complete(f"Summarise for {audience}: {text}")
    return Summary(summary=reply.text, audience=audience)
