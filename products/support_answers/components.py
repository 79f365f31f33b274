"""Support answers: past tickets go into vector memory; a new ticket is answered from the
most similar ones.

``ingest_tickets`` adds tickets to the ``tickets`` collection (declared in
``config/product.yaml``) with their ticket ids, so loading the same tickets again replaces
them instead of adding copies. ``find_similar`` searches it, optionally within a category.
``drafter`` writes a reply from the ticket and the retrieved context.
"""

from __future__ import annotations

from pydantic import BaseModel

from master_sdk.authoring import AgentContext, AgentOutput, ToolContext, agent, tool


class PastTicket(BaseModel):
    ticket_id: str
    subject: str
    body: str
    category: str
    priority: int
    resolution: str = ""


class Ingested(BaseModel):
    added: int
    total: int


@tool(idempotent=True)
def ingest_tickets(tickets: list[PastTicket], ctx: ToolContext) -> Ingested:
    """Store past tickets (text: subject, body and resolution) with their metadata."""
    memory = ctx.memory("tickets")
    ids = memory.add(
        [f"{t.subject}\n{t.body}\nResolution: {t.resolution}" for t in tickets],
        metadata=[
            {"category": t.category, "priority": t.priority, "resolved": bool(t.resolution)}
            for t in tickets
        ],
        ids=[t.ticket_id for t in tickets],
    )
    return Ingested(added=len(ids), total=memory.count())


class Similar(BaseModel):
    id: str
    score: float
    category: str | None
    text: str


class Found(BaseModel):
    hits: list[Similar]


@tool
def find_similar(text: str, category: str, ctx: ToolContext) -> Found:
    """The five past tickets most similar to ``text`` (within ``category`` if given)."""
    where = {"category": category} if category else None
    hits = ctx.memory("tickets").search(text, k=5, where=where)
    return Found(
        hits=[
            Similar(
                id=h.id, score=round(h.score, 4), category=h.metadata.get("category"), text=h.text
            )
            for h in hits
        ]
    )


class Answer(AgentOutput):
    reply: str
    sources: list[str]


@agent(model="drafter")
def drafter(ctx: AgentContext, ticket: str, context: list[dict]) -> Answer:
    """Draft a reply to ``ticket`` that follows how the most similar tickets were resolved."""
    shown = "\n\n".join(f"[{c['id']}] (score {c['score']}) {c['text']}" for c in context[:3])
    reply = ctx.complete(
        f"New ticket:\n{ticket}\n\nSimilar past tickets and their resolutions:\n{shown}\n\n"
        "Write a short reply that applies the resolution that fits best.",
        system="You are a support agent. Cite the ticket ids you used.",
    )
    return Answer(reply=reply.text, sources=[c["id"] for c in context[:3]])
