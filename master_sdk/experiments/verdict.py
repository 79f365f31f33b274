"""The judge's structured reply (a pydantic model, imported only when a judge grades)."""

from __future__ import annotations

from master_sdk.authoring import AgentOutput


class Verdict(AgentOutput):
    """A grade between 0 and 1 and why."""

    score: float
    reason: str
