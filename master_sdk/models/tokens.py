"""Token counts nobody measured: the one estimate, used wherever a count is missing.

Budgets check the worst case of a call before it is sent, a provider that reports no usage
is counted high, and the fake and scripted models report deterministic counts: all of them
use :func:`estimate_tokens` (one token per three UTF-8 bytes, rounded up, at least one) and
:func:`estimate_prompt_tokens` (the messages plus per-message framing, plus the output
schema that travels with a structured-output request). Real tokenisers average about four
characters per token in English and approach one token per character for CJK scripts, so
the estimate errs on the side of the budget for both.

Example:
    >>> estimate_tokens("hello world")
    4
    >>> estimate_tokens("\u4f60\u597d")  # two CJK characters, six bytes
    2
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

__all__ = ["MESSAGE_OVERHEAD", "REQUEST_OVERHEAD", "estimate_prompt_tokens", "estimate_tokens"]

MESSAGE_OVERHEAD = 8
"""Tokens counted per message for its role and framing (chat formats use 3-4)."""
REQUEST_OVERHEAD = 4
"""Tokens counted once per request (the reply's priming)."""


class _Message(Protocol):
    @property
    def content(self) -> str: ...


def estimate_tokens(text: str) -> int:
    """A high token count for ``text``: one per three UTF-8 bytes, rounded up, at least one."""
    return max(1, -(-len(text.encode("utf-8")) // 3))


def estimate_prompt_tokens(
    messages: Iterable[_Message], output_schema: Mapping[str, Any] | None = None
) -> int:
    """A high token count for a request's prompt: every message with its framing, and the
    output schema (sent with the request and billed as prompt tokens), if any."""
    total = REQUEST_OVERHEAD + sum(estimate_tokens(m.content) + MESSAGE_OVERHEAD for m in messages)
    if output_schema is not None:
        total += estimate_tokens(json.dumps(dict(output_schema))) + MESSAGE_OVERHEAD
    return total
