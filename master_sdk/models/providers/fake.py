"""The deterministic fake provider: no network, scriptable, token counts from text.

By default the reply is derived from the prompt, so outputs visibly reflect inputs
(``"[fake] Summarise for the board: hi"``). With ``responses`` it replies with each
scripted text in turn, then falls back to the default. For structured output it builds
a value that satisfies the requested JSON Schema from the prompt.

For load tests it can also sleep like a remote model (``latency_s``) and answer a share of
calls with a rate-limit error (``rate_limit_rate``, drawn from a seeded generator, so a
run of a benchmark is repeatable); ``calls`` and ``rate_limited`` count what it answered.

Embeddings (:meth:`FakeProvider.embed`, :func:`hashed_ngrams`) are hashed features of the
text — its words and the character trigrams of each word — so texts sharing words or word
parts get similar vectors: retrieval in tests and notebooks finds what a reader expects,
offline and identically on every machine.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
import zlib
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from master_sdk.errors import ModelCallError
from master_sdk.models.tokens import estimate_prompt_tokens, estimate_tokens
from master_sdk.models.types import EmbedRequest, EmbedResponse, ModelRequest, ModelResponse, Usage

if TYPE_CHECKING:
    import numpy as np

DEFAULT_DIMENSIONS = 384
_WORDS = re.compile(r"\w+", re.UNICODE)


class FakeProvider:
    """A scriptable, deterministic model (see module docstring)."""

    name = "fake"

    def __init__(
        self,
        *,
        responses: Iterable[str] | None = None,
        model: str = "fake",
        dimensions: int | None = None,
        latency_s: float = 0.0,
        rate_limit_rate: float = 0.0,
        seed: int = 0,
    ) -> None:
        self.model = model
        self.dimensions = dimensions or DEFAULT_DIMENSIONS
        self._script: deque[str] = deque(responses or ())
        self.latency_s = latency_s
        self.rate_limit_rate = rate_limit_rate
        self._random = random.Random(seed)  # noqa: S311  # load simulation, not secrets
        self._lock = threading.Lock()
        self.calls = 0
        self.rate_limited = 0

    def __getstate__(self) -> dict[str, Any]:
        """Pickled without its lock (it travels to other processes: Ray workers)."""
        state = dict(self.__dict__)
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def embed(self, request: EmbedRequest) -> EmbedResponse:
        """Deterministic vectors from hashed word and trigram features (unit length)."""
        dims = request.dimensions or self.dimensions
        vectors = hashed_ngrams(request.texts, dims)
        tokens = sum(estimate_tokens(text) for text in request.texts)
        return EmbedResponse(
            vectors=vectors, usage=Usage(tokens_in=tokens, tokens_out=0), model=request.model
        )

    def complete(self, request: ModelRequest) -> ModelResponse:
        """Answer from the script, or derive a reply from the last user message."""
        if self.rate_limit_rate:
            with self._lock:
                limited = self._random.random() < self.rate_limit_rate
                if limited:
                    self.rate_limited += 1
            if limited:
                raise ModelCallError(
                    "fake rate limit (429)", kind="rate_limit", retryable=True, status=429
                )
        if self.latency_s:
            time.sleep(self.latency_s)
        with self._lock:
            self.calls += 1
        prompt = next((m.content for m in reversed(request.messages) if m.role == "user"), "")
        if self._script:
            text = self._script.popleft()
        elif request.output_schema is not None:
            text = json.dumps(_example(request.output_schema, prompt, request.output_schema))
        else:
            text = f"[fake] {prompt}"
        if request.max_tokens is not None and estimate_tokens(text) > request.max_tokens:
            # cut at the cap, counted the one way tokens are estimated (three bytes each)
            text = text.encode("utf-8")[: request.max_tokens * 3].decode("utf-8", "ignore")
        tokens_in = estimate_prompt_tokens(request.messages, request.output_schema)
        return ModelResponse(
            text=text,
            usage=Usage(tokens_in=tokens_in, tokens_out=estimate_tokens(text)),
            model=request.model,
            finish_reason="stop",
        )


def _example(schema: Mapping[str, Any], prompt: str, root: Mapping[str, Any]) -> Any:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return _example(root.get("$defs", {})[ref.split("/")[-1]], prompt, root)
    for key in ("anyOf", "oneOf", "allOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            usable = [o for o in options if o.get("type") != "null"] or options
            return _example(usable[0], prompt, root)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        return {name: _example(sub, prompt, root) for name, sub in props.items()}
    if kind == "array":
        return []
    if kind == "integer":
        return len(prompt.split())
    if kind == "number":
        return float(len(prompt.split()))
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return f"[fake] {prompt}"


def _feature_slot(feature: str, dims: int) -> tuple[int, float]:
    code = zlib.crc32(feature.encode("utf-8"))
    # the sign comes from other bits than the slot, so colliding features tend to cancel
    return code % dims, 1.0 if (code >> 31) & 1 else -1.0


def hashed_ngrams(texts: Sequence[str], dims: int = DEFAULT_DIMENSIONS) -> np.ndarray:
    """Unit-length ``float32`` vectors of ``texts`` (shape ``(len(texts), dims)``).

    Features: each lower-cased word (weight 1) and each character trigram of the word
    padded with spaces (weight 0.5), hashed into ``dims`` signed slots. The same text gives
    the same vector everywhere; texts sharing words or word stems score high together.

    Example:
        >>> v = hashed_ngrams(["refund my order", "refund for my order", "reset password"])
        >>> bool(v[0] @ v[1] > v[0] @ v[2])
        True
    """
    import numpy as np

    out = np.zeros((len(texts), dims), dtype=np.float32)
    for row, text in enumerate(texts):
        slots: dict[int, float] = {}
        for word in _WORDS.findall(text.lower()):
            slot, sign = _feature_slot(word, dims)
            slots[slot] = slots.get(slot, 0.0) + sign
            padded = f" {word} "
            for start in range(len(padded) - 2):
                slot, sign = _feature_slot(padded[start : start + 3], dims)
                slots[slot] = slots.get(slot, 0.0) + 0.5 * sign
        if slots:
            out[row, list(slots)] = list(slots.values())
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    np.divide(out, norms, out=out, where=norms > 0)
    return out
