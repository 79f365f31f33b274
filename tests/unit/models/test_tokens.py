"""The one token estimate, and who uses it."""

from __future__ import annotations

import inspect

import master_sdk.governance.budgets as budgets
import master_sdk.models.providers.fake as fake
import master_sdk.models.providers.openai as openai_provider
import master_sdk.models.router as router
import master_sdk.testing as testing
from master_sdk.models.tokens import (
    MESSAGE_OVERHEAD,
    REQUEST_OVERHEAD,
    estimate_prompt_tokens,
    estimate_tokens,
)
from master_sdk.models.types import Message, ModelRequest


def test_one_token_per_three_utf8_bytes_rounded_up_never_zero() -> None:
    """English, CJK, an empty string and a boundary: ceil(bytes / 3), at least one."""
    assert estimate_tokens("") == 1
    assert estimate_tokens("abc") == 1
    assert estimate_tokens("abcd") == 2
    assert estimate_tokens("hello world") == 4  # 11 bytes
    assert estimate_tokens("\u4f60\u597d\u4e16\u754c") == 4  # 4 CJK characters, 12 bytes
    assert estimate_tokens("é") == 1  # 2 bytes


def test_english_text_is_estimated_above_four_characters_per_token() -> None:
    """The estimate errs high for English: more tokens than len(text) / 4."""
    text = "The quick brown fox jumps over the lazy dog. " * 20
    assert estimate_tokens(text) > len(text) / 4


def test_a_prompt_counts_every_message_with_framing_and_the_output_schema() -> None:
    """Messages cost their text plus MESSAGE_OVERHEAD each, plus REQUEST_OVERHEAD; a
    structured-output schema is counted as one more message of its JSON."""
    messages = (Message("system", "be brief"), Message("user", "Summarise: hello"))
    plain = estimate_prompt_tokens(messages)
    assert plain == REQUEST_OVERHEAD + sum(
        estimate_tokens(m.content) + MESSAGE_OVERHEAD for m in messages
    )
    schema = {"type": "object", "properties": {"summary": {"type": "string"}}}
    assert estimate_prompt_tokens(messages, schema) > plain + MESSAGE_OVERHEAD


def test_providers_and_budgets_use_the_one_estimate() -> None:
    """The fake and scripted models, the OpenAI provider's fallback, the router's worst
    case and the budget's high count share one function: no module defines its own."""
    for module in (budgets, fake, openai_provider, router, testing):
        own = [
            name
            for name, value in vars(module).items()
            if inspect.isfunction(value)
            and value.__module__ == module.__name__
            and "estimate" in name
        ]
        assert own == [], (module.__name__, own)
    request = ModelRequest(model="fake", messages=(Message("user", "Summarise: hello"),))
    reply = fake.FakeProvider().complete(request)
    assert reply.usage.tokens_in == estimate_prompt_tokens(request.messages)
    assert reply.usage.tokens_out == estimate_tokens(reply.text)
