"""The benchmark flow's semantics, shared by every system measured.

Every system runs the same three steps on ``{"text": str}``:

1. ``echo``: a tool returning ``{"text": text}``;
2. ``approval``: a human approval; the run is persisted and may stop here, and is resumed
   from the store with :data:`APPROVAL`;
3. ``summary``: a deterministic fake model call, :func:`fake_model`.

This module imports nothing but the standard library, so that a fresh process timing one
peer pays for that peer's imports only.
"""

from __future__ import annotations

from typing import Any, Final

APPROVAL: Final[dict[str, Any]] = {"approved": True, "by": "bench", "comment": "ok"}
"""The decision every benchmark run resumes with."""

STEPS_PER_RUN: Final = 3


def echo_tool(text: str) -> dict[str, str]:
    """Step 1, the ``echo`` tool: returns its input unchanged."""
    return {"text": text}


def fake_model(text: str, audience: str | None) -> dict[str, Any]:
    """Step 3, a deterministic stand-in for a model call.

    Token counts are derived from the words of the prompt text and of the reply, so the
    work is proportional to the input and no system can skip it.

    Example:
        >>> fake_model("a b", None)
        {'reply': 'Summary for you: a b', 'tokens_in': 2, 'tokens_out': 5}
    """
    reply = f"Summary for {audience or 'you'}: {text}"
    return {"reply": reply, "tokens_in": len(text.split()), "tokens_out": len(reply.split())}


def run_text(index: int) -> str:
    """The input text of the ``index``-th run: distinct per run, a dozen words long."""
    return f"run {index}: the quick brown fox jumps over the lazy dog again"


def expected_summary(text: str) -> dict[str, Any]:
    """What a completed run must produce for ``text``; each peer checks every run against it."""
    return fake_model(text, None)


class FlowMismatch(AssertionError):
    """A system produced something other than the benchmark flow's result."""


def check_summary(text: str, summary: Any) -> None:
    """Raises :class:`FlowMismatch` unless ``summary`` is the flow's result for ``text``."""
    if summary != expected_summary(text):
        raise FlowMismatch(f"unexpected summary for {text!r}: {summary!r}")
