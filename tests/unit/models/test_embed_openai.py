"""The openai provider's embeddings call, against a real OpenAI-protocol server on 127.0.0.1.

The official SDK sends real requests to ``tests.support.openai_server.FakeOpenAIServer``,
which answers ``POST /v1/embeddings`` with deterministic vectors (listed in reverse order,
so the provider must sort them by ``index``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from master_sdk.config.settings import ModelEntry, ModelsSettings, Price
from master_sdk.errors import ModelCallError
from master_sdk.models.providers.openai import OpenAIProvider
from master_sdk.models.router import Router
from master_sdk.models.types import EmbedRequest
from tests.support.openai_server import FakeOpenAIServer, Reply, embedding_of


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as srv:
        yield srv


@pytest.fixture
def provider(server: FakeOpenAIServer) -> Iterator[OpenAIProvider]:
    server.reset()
    made = OpenAIProvider(base_url=server.base_url, api_key="sk-test-embeddings-0123456789")
    yield made
    made.close()
    assert server.pending == 0


def test_vectors_come_back_in_text_order_with_reported_usage(
    server: FakeOpenAIServer, provider: OpenAIProvider
) -> None:
    """The server lists embeddings in reverse; the provider orders them by index."""
    texts = ("first text", "second", "third one")
    reply = provider.embed(EmbedRequest(model="text-embedding-3-small", texts=texts, dimensions=6))
    expected = np.asarray([embedding_of(t, 6) for t in texts], dtype=np.float32)
    assert np.array_equal(reply.vectors, expected)
    assert reply.vectors.dtype == np.float32
    assert reply.usage.reported and reply.usage.tokens_in > 0
    (sent,) = server.embeddings
    assert sent.body == {
        "model": "text-embedding-3-small",
        "input": list(texts),
        "encoding_format": "float",
        "dimensions": 6,
    }


def test_a_reply_without_usage_is_counted_high_and_flagged(
    server: FakeOpenAIServer, provider: OpenAIProvider
) -> None:
    """No usage in the reply: an upper-bound estimate, marked as not reported."""
    server.script(Reply(usage=False))
    reply = provider.embed(EmbedRequest(model="m", texts=("hello world",)))
    assert not reply.usage.reported and reply.usage.tokens_in >= 4


def test_rate_limits_are_retryable_errors_with_their_wait(
    server: FakeOpenAIServer, provider: OpenAIProvider
) -> None:
    """A 429 maps to the same ModelCallError kinds as chat calls."""
    server.script(Reply.error(429, "slow down", headers={"retry-after": "2"}))
    with pytest.raises(ModelCallError) as caught:
        provider.embed(EmbedRequest(model="m", texts=("x",)))
    assert caught.value.kind == "rate_limit" and caught.value.retryable
    assert caught.value.retry_after_s == 2


def test_a_reply_with_too_few_vectors_is_an_invalid_response(
    server: FakeOpenAIServer, provider: OpenAIProvider
) -> None:
    """Fewer vectors than texts is refused, naming the counts."""
    body = b'{"object":"list","data":[{"index":0,"embedding":[0.1]}],"model":"m"}'
    server.script(Reply.raw(body))
    with pytest.raises(ModelCallError, match="1 embeddings for 2 texts") as caught:
        provider.embed(EmbedRequest(model="m", texts=("a", "b")))
    assert caught.value.kind == "invalid_response"


def test_the_router_batches_openai_requests_and_prices_them(
    server: FakeOpenAIServer, tmp_path: Path
) -> None:
    """Five texts with batch_size 2 make three requests; cost follows the price table."""
    server.reset()
    entry = ModelEntry(
        provider="openai",
        kind="embedding",
        model="text-embedding-3-small",
        base_url=server.base_url,
        dimensions=4,
        batch_size=2,
    )
    settings = ModelsSettings(
        models={"emb": entry},
        prices={"text-embedding-3-small": Price(input=0.02, output=0.0)},
    )
    router = Router(settings, root=tmp_path)
    try:
        out = router.embed("emb", [f"text {i}" for i in range(5)], aliases=None, scope=None)
    finally:
        router.close()
    assert [len(r.body["input"]) for r in server.embeddings] == [2, 2, 1]
    assert out.vectors.shape == (5, 4)
    assert out.cost_usd == pytest.approx(out.tokens * 0.02 / 1e6)
