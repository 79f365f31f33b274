"""Embeddings through the router: the fake embedder, batching, replay cassettes, kinds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from master_sdk.config.settings import ModelEntry, ModelsSettings
from master_sdk.contracts.policy import Policy
from master_sdk.errors import ConfigError, ModelCallError, PolicyViolation
from master_sdk.models.providers.fake import FakeProvider, estimate_tokens, hashed_ngrams
from master_sdk.models.providers.replay import ReplayProvider
from master_sdk.models.router import Router, _batches
from master_sdk.models.types import EmbedRequest, EmbedResponse, Usage


def router(tmp_path: Path, **entries: ModelEntry) -> Router:
    models = {"default": ModelEntry(provider="fake"), **entries}
    return Router(ModelsSettings(models=models), root=tmp_path)


def test_fake_vectors_are_deterministic_unit_length_and_of_the_asked_size() -> None:
    """The same texts give the same vectors in every process; each has length 1."""
    first = hashed_ngrams(["refund my order", "reset my password"], 64)
    again = hashed_ngrams(["refund my order", "reset my password"], 64)
    assert first.dtype == np.float32 and first.shape == (2, 64)
    assert np.array_equal(first, again)
    assert np.allclose(np.linalg.norm(first, axis=1), 1.0)


def test_fake_vectors_of_similar_texts_are_closer_than_of_unrelated_ones() -> None:
    """Shared words and word parts raise the cosine similarity: retrieval means something."""
    v = hashed_ngrams(
        ["my parcel arrived damaged", "the parcel came damaged", "cannot reset password"]
    )
    assert v[0] @ v[1] > 0.5
    assert v[0] @ v[1] > v[0] @ v[2] + 0.3


def test_an_empty_text_embeds_as_a_zero_vector() -> None:
    """No features, nothing to normalise: the vector stays zero instead of becoming NaN."""
    assert not np.isnan(hashed_ngrams([""], 16)).any()
    assert not hashed_ngrams([""], 16).any()


def test_batches_respect_the_text_count_and_token_limits() -> None:
    """Texts are sent in order, at most ``size`` per request and within the token bound."""
    texts = [f"text {i}" for i in range(10)]
    assert [len(b) for b in _batches(texts, 4, 10_000)] == [4, 4, 2]
    long = ["x" * 300] * 5  # about 101 tokens each by the bound
    assert [len(b) for b in _batches(long, 100, 250)] == [2, 2, 1]
    assert [t for b in _batches(texts, 3, 10_000) for t in b] == texts


def test_router_embeds_in_batches_and_sums_usage(tmp_path: Path) -> None:
    """Seven texts with batch_size 3 make three provider calls; vectors keep text order."""
    calls: list[int] = []

    class Counting(FakeProvider):
        def embed(self, request: EmbedRequest) -> EmbedResponse:
            calls.append(len(request.texts))
            return super().embed(request)

    entry = ModelEntry(provider="fake", kind="embedding", dimensions=32, batch_size=3)
    r = Router(
        ModelsSettings(models={"emb": entry}),
        root=tmp_path,
        providers={"emb": Counting(dimensions=32)},
    )
    texts = [f"ticket number {i}" for i in range(7)]
    out = r.embed("emb", texts, aliases=None, scope=None)
    assert calls == [3, 3, 1]
    assert out.vectors.shape == (7, 32)
    assert np.array_equal(out.vectors, hashed_ngrams(texts, 32))
    assert out.tokens == sum(estimate_tokens(t) for t in texts)
    assert out.cost_usd == 0.0


def test_a_chat_model_refuses_to_embed_and_an_embedding_model_refuses_to_chat(
    tmp_path: Path,
) -> None:
    """The kind in models.yaml decides what a logical model is for; the error says which."""
    r = router(tmp_path, emb=ModelEntry(provider="fake", kind="embedding", dimensions=8))
    with pytest.raises(ModelCallError, match="'default' is a chat model"):
        r.embed("default", ["x"], aliases=None, scope=None)


def test_outside_a_run_the_policy_allow_list_still_applies(tmp_path: Path) -> None:
    """A notebook embedding (no run) is refused for a model outside allowed_models."""
    r = router(tmp_path, emb=ModelEntry(provider="fake", kind="embedding", dimensions=8))
    with pytest.raises(PolicyViolation, match="allowed_models"):
        r.embed("emb", ["x"], aliases=None, scope=None, policy=Policy(allowed_models=["default"]))
    assert r.embed("emb", ["x"], aliases=None, scope=None, policy=Policy()).vectors.shape == (1, 8)


def test_vectors_of_the_wrong_size_are_an_invalid_response(tmp_path: Path) -> None:
    """A server that ignores ``dimensions`` and answers another size fails loudly."""

    class Stubborn(FakeProvider):
        def embed(self, request: EmbedRequest) -> EmbedResponse:
            return super().embed(EmbedRequest(model=request.model, texts=request.texts))

    r = Router(
        ModelsSettings(
            models={"emb": ModelEntry(provider="fake", kind="embedding", dimensions=16)}
        ),
        root=tmp_path,
        providers={"emb": Stubborn(dimensions=8)},
    )
    with pytest.raises(ModelCallError, match="8 dimensions, configured 16"):
        r.embed("emb", ["a"], aliases=None, scope=None)


def test_replay_records_embeddings_and_answers_them_byte_for_byte(tmp_path: Path) -> None:
    """A recorded embeddings call replays the exact float32 vectors, offline."""
    cassette = tmp_path / "emb.jsonl"
    request = EmbedRequest(model="text-embedding-3-small", texts=("hello", "world"), dimensions=16)
    recorder = ReplayProvider(cassette=cassette, mode="record", wrapped=FakeProvider())
    recorded = recorder.embed(request)
    line = json.loads(cassette.read_text(encoding="utf-8"))
    assert line["request"]["operation"] == "embeddings"
    assert line["request"]["input"] == ["hello", "world"]
    player = ReplayProvider(cassette=cassette, mode="replay")
    replayed = player.embed(request)
    assert replayed.vectors.tobytes() == recorded.vectors.tobytes()
    assert replayed.usage == Usage(tokens_in=recorded.usage.tokens_in, tokens_out=0)
    with pytest.raises(ModelCallError) as miss:
        player.embed(EmbedRequest(model="text-embedding-3-small", texts=("other",), dimensions=16))
    assert miss.value.kind == "replay_miss"


def test_a_cassette_with_a_malformed_embedding_entry_is_refused(tmp_path: Path) -> None:
    """An entry whose vectors do not match its inputs names the file and the line."""
    cassette = tmp_path / "emb.jsonl"
    entry = {
        "request": {"operation": "embeddings", "model": "m", "input": ["a", "b"]},
        "response": {"vectors": ["AAAA"], "usage": {"tokens_in": 1}},
    }
    cassette.write_text(json.dumps(entry) + "\n", encoding="utf-8")
    player = ReplayProvider(cassette=cassette, mode="replay")
    with pytest.raises(ConfigError, match=r"line 1.*one base64 float32 vector per input"):
        player.embed(EmbedRequest(model="m", texts=("a", "b")))
