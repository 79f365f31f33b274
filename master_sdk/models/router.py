"""The ONLY door to models (law 3).

Resolves logical names (``default``, product aliases) to a configured provider, checks
governance before each call (allow-list, call count, worst-case tokens and cost), retries
only as policy allows with each try traced, and records usage and cost to the run's
budget and trace.

Failures are never silent: every failed attempt is a ``model_retry`` event, the last one
a ``model_called`` event with status ``error``; both carry the error's kind, HTTP status
and the raw reply (the store redacts it) for inspection. A reply that fails the output
model's validation is a ``model_called`` error event too — with the tokens it cost.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from pydantic import BaseModel, ValidationError

from master_sdk.authoring import Reply
from master_sdk.config.settings import ModelEntry, ModelsSettings, Price
from master_sdk.errors import ConfigError, ModelCallError
from master_sdk.governance.budgets import conservative_usage
from master_sdk.models.gates import CONGESTION_KINDS, CallGate, current_gate
from master_sdk.models.tokens import estimate_prompt_tokens
from master_sdk.models.types import (
    Embedder,
    EmbedRequest,
    EmbedResponse,
    Message,
    ModelRequest,
    ModelResponse,
    Provider,
    Usage,
)

if TYPE_CHECKING:
    import numpy as np

    from master_sdk.authoring import Embeddings
    from master_sdk.contracts.policy import Policy, RetryPolicy
    from master_sdk.governance.budgets import RunBudget
    from master_sdk.tracing.events import TraceBuffer

R = TypeVar("R")
FREE = Price(input=0.0, cached_input=0.0, output=0.0)
# A reply cap derived from the remaining budget is sent only up to this size. A larger one
# protects nothing in practice, and servers refuse caps above what their model can produce
# (OpenAI answers 400 for max_tokens beyond a model's output limit); 4096 is within every
# current chat model's limit. Configure max_tokens to always send a cap.
BUDGET_CAP_CEILING = 4096
# How much of a raw reply a trace event keeps for inspection.
RAW_TRACE_CHARS = 2000
# What a replay entry may set; everything else belongs on the model it wraps.
_REPLAY_FIELDS = frozenset(
    {"provider", "mode", "cassette", "wraps", "model", "max_tokens", "temperature", "kind"}
)


class ModelScope(Protocol):
    """What a model call needs from the run it belongs to."""

    step_id: str
    step_type: str
    budget: RunBudget
    trace: TraceBuffer
    policy: Policy

    def durable(self) -> None:
        """Make the run's counters durable before a request is sent: they already count
        the request at its worst case (see :data:`RESERVED`)."""
        ...


RESERVED = "reserved"
"""Key of the run state marking the model request in flight: ``{step, model, tokens_in,
tokens_out, cost_usd}``, its worst case. The call itself is already in ``model_calls``.
It is made durable before the request is sent and removed once the answer is seen; a run
found interrupted with it still there is charged that worst case (the engine traces it
as ``model_call_unconfirmed``, ``usage_estimated``)."""


@dataclass(frozen=True, slots=True)
class ResolvedModel:
    """A logical model name resolved through aliases and ``configs/models.yaml``."""

    name: str
    entry: ModelEntry
    provider_model: str
    price: Price | None
    wrapped: ResolvedModel | None = None


def cost_usd(price: Price, tokens_in: int, tokens_out: int, cached: int = 0) -> float:
    """USD for one call under a per-million-token price."""
    cached = min(cached, tokens_in)
    cached_rate = price.cached_input if price.cached_input is not None else price.input
    return (
        (tokens_in - cached) * price.input + cached * cached_rate + tokens_out * price.output
    ) / 1e6


# error kinds after which the provider's answer was never seen (it may have billed)
_UNANSWERED = frozenset({"timeout", "connection"})


@dataclass(frozen=True, slots=True)
class Reservation:
    """The worst case of one model request: counted before it is sent (see
    :data:`RESERVED`)."""

    step: str
    model: str
    tokens_in: int
    tokens_out: int
    price: Price | None

    @property
    def cost(self) -> float:
        """Its worst-case cost (0 for an unpriced model, which a cost budget refuses)."""
        return cost_usd(self.price, self.tokens_in, self.tokens_out) if self.price else 0.0

    def reserve(self, run: Any) -> None:
        """Mark the request in flight on the run (made durable before it is sent)."""
        run.state[RESERVED] = {
            "step": self.step,
            "model": self.model,
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "cost_usd": self.cost,
        }

    def settle(self, run: Any, *, answered: bool) -> None:
        """The request's answer is known, or never will be: take the mark off; an answer
        never seen is charged at the worst case (the caller counts a seen one)."""
        run.state.pop(RESERVED, None)
        if not answered:
            charge_reserved(run, self.tokens_in, self.tokens_out, self.cost)


def charge_reserved(run: Any, tokens_in: int, tokens_out: int, cost: float) -> None:
    """Count a request whose answer was never seen at its worst case."""
    run.tokens_in += tokens_in
    run.tokens_out += tokens_out
    run.cost_usd += cost


class Router:
    """Maps logical model names to providers and makes every model call.

    Args:
        settings: the ``models.yaml`` settings (entries and prices).
        root: the project folder (cassette paths are relative to it).
        providers: providers to use instead of configured ones, by logical name — the
            seam tests use to plug in a scripted model (see :mod:`master_sdk.testing`).
        sleep: how to wait between retries.
        scrub: redaction applied to what a recording writes to its cassette.

    Raises:
        ConfigError: a ``replay`` entry wraps an unknown or another replay model, records
            without ``wraps``, or sets what belongs on the model it wraps.
    """

    def __init__(
        self,
        settings: ModelsSettings,
        *,
        root: Path,
        providers: Mapping[str, Provider] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        scrub: Callable[[Any], Any] | None = None,
    ) -> None:
        self.settings = settings
        self.root = root
        self._overrides = dict(providers or {})
        self._providers: dict[str, Provider] = {}
        self._resolved: dict[str, ResolvedModel] = {}
        self._sleep = sleep
        self._scrub = scrub
        # resolving and creating providers happens once per name, whichever thread asks
        # first (a provider holds a connection pool: two would leak one)
        self._lock = threading.RLock()
        for name, entry in settings.models.items():
            if entry.provider == "replay":
                self._check_replay(name, entry)

    @property
    def given_providers(self) -> dict[str, Provider]:
        """The providers given in place of configured ones (``providers=``), by name: what
        another process needs to build the same router (the Ray backend ships them)."""
        return dict(self._overrides)

    @property
    def names(self) -> set[str]:
        """Every logical model name that can be resolved."""
        return set(self.settings.models) | set(self._overrides)

    def resolve(self, name: str, aliases: Mapping[str, str] | None = None) -> ResolvedModel:
        """Resolve a logical name (through product ``aliases`` first).

        A ``replay`` entry resolves to the model it wraps — its provider model name, price
        and call settings — so that a recording and its replays send the same requests.
        """
        logical = (aliases or {}).get(name, name)
        known = self._resolved.get(logical)
        if known is not None:
            return known
        with self._lock:
            known = self._resolved.get(logical)
            if known is None:
                known = self._resolve(logical)
                self._resolved[logical] = known
        return known

    def _resolve(self, logical: str) -> ResolvedModel:
        entry = self.settings.models.get(logical)
        if entry is None:
            if logical not in self._overrides:
                raise ConfigError(
                    f"unknown model '{logical}'; models: {', '.join(sorted(self.names))}",
                    file="configs/models.yaml",
                    key=f"models.{logical}",
                )
            entry = ModelEntry(provider="fake", model=logical)
        if entry.provider == "replay" and logical not in self._overrides:
            return self._resolve_replay(logical, entry)
        provider_model = entry.model or logical
        price = self._price(provider_model, logical)
        # a stand-in for a configured model costs what that model costs (a replay entry: the
        # model it wraps); only the fake is free, so an unpriced model stays refused under a
        # cost budget even when overridden
        if price is None and entry.provider == "replay" and entry.wraps:
            price = self.resolve(entry.wraps).price
        if price is None and entry.provider == "fake":
            price = FREE
        return ResolvedModel(name=logical, entry=entry, provider_model=provider_model, price=price)

    def _price(self, provider_model: str, logical: str) -> Price | None:
        prices = self.settings.prices
        return prices.get(provider_model) or prices.get(logical)

    def _resolve_replay(self, logical: str, entry: ModelEntry) -> ResolvedModel:
        inner = self.resolve(entry.wraps) if entry.wraps else None
        if inner is None:
            provider_model = entry.model or logical
            return ResolvedModel(
                name=logical,
                entry=entry,
                provider_model=provider_model,
                price=self._price(provider_model, logical),
            )
        own = {f: getattr(entry, f) for f in ("model", "max_tokens", "temperature")}
        effective = inner.entry.model_copy(
            update={
                **{f: v for f, v in own.items() if f in entry.model_fields_set},
                "provider": "replay",
                "mode": entry.mode,
                "cassette": entry.cassette,
                "wraps": entry.wraps,
            }
        )
        provider_model = entry.model or inner.provider_model
        return ResolvedModel(
            name=logical,
            entry=effective,
            provider_model=provider_model,
            price=self._price(provider_model, logical) or inner.price,
            wrapped=inner,
        )

    def _check_replay(self, name: str, entry: ModelEntry) -> None:
        where = f"models.{name}"
        foreign = sorted(entry.model_fields_set - _REPLAY_FIELDS - {"api_key"})
        if foreign:
            raise ConfigError(
                f"a replay model does not take {', '.join(foreign)}: set it on the model it "
                f"wraps ({entry.wraps or 'wraps'})",
                file="configs/models.yaml",
                key=f"{where}.{foreign[0]}",
            )
        if entry.wraps is None:
            if entry.mode == "record":
                raise ConfigError(
                    "mode 'record' needs 'wraps': the logical model whose replies to record",
                    file="configs/models.yaml",
                    key=f"{where}.wraps",
                )
            return
        inner = self.settings.models.get(entry.wraps)
        if inner is None and entry.wraps not in self._overrides:
            raise ConfigError(
                f"wraps '{entry.wraps}', which is not a model; models: "
                f"{', '.join(sorted(self.names))}",
                file="configs/models.yaml",
                key=f"{where}.wraps",
            )
        if inner is not None and inner.provider == "replay":
            raise ConfigError(
                f"wraps '{entry.wraps}', another replay model; wrap the real model instead",
                file="configs/models.yaml",
                key=f"{where}.wraps",
            )

    def provider(self, model: ResolvedModel) -> Provider:
        """The provider instance for a resolved model (created once)."""
        if model.name in self._overrides:
            return self._overrides[model.name]
        existing = self._providers.get(model.name)
        if existing is not None:
            return existing
        with self._lock:
            existing = self._providers.get(model.name)
            if existing is None:
                existing = self._create(model)
                self._providers[model.name] = existing
        return existing

    def _create(self, model: ResolvedModel) -> Provider:
        entry = model.entry
        if entry.provider == "fake":
            from master_sdk.models.providers.fake import FakeProvider

            return FakeProvider(
                responses=entry.responses, model=model.provider_model, dimensions=entry.dimensions
            )
        if entry.provider == "openai":
            from master_sdk.models.providers.openai import OpenAIProvider

            return OpenAIProvider(
                model=model.provider_model,
                base_url=entry.base_url,
                api_key=entry.api_key.get_secret_value() if entry.api_key else None,
                organization=entry.organization,
                timeout_s=entry.timeout_s,
                default_params=entry.params,
            )
        if entry.provider == "replay":
            from master_sdk.models.providers.replay import ReplayProvider

            mode = entry.mode or "replay"
            configured = entry.cassette or f"cassettes/{model.name}.jsonl"
            path = Path(configured)
            wrapped = None
            if mode == "record" and model.wrapped is not None:
                wrapped = self.provider(model.wrapped)
            return ReplayProvider(
                cassette=path if path.is_absolute() else self.root / path,
                mode=mode,
                wrapped=wrapped,
                scrub=self._scrub,
                params=entry.params,
                label=configured,
            )
        raise ConfigError(
            f"provider '{entry.provider}' is not available in this build",
            file="configs/models.yaml",
            key=f"models.{model.name}.provider",
        )

    def close(self) -> None:
        """Close the providers this router created (their HTTP connection pools)."""
        with self._lock:
            providers = list(self._providers.values())
        for provider in providers:
            close = getattr(provider, "close", None)
            if callable(close):
                close()

    def complete(
        self,
        name: str,
        *,
        prompt: str,
        system: str | None,
        output: type[BaseModel] | None,
        max_tokens: int | None,
        temperature: float | None,
        aliases: Mapping[str, str] | None,
        scope: ModelScope,
    ) -> Reply:
        """One governed model call (with policy-allowed retries) for an agent.

        Raises:
            PolicyViolation: a budget or allow-list refuses the call (before any request),
                or the usage the provider reported exceeds a budget.
            ModelCallError: the call failed after the retries policy allows, or the reply
                does not match ``output``; the trace holds every attempt.
        """
        gate = current_gate()
        if gate is not None:
            # an experiment's override; the allow-list check below sees the model it names
            name = gate.models.get(name, name)
        model = self.resolve(name, aliases)
        entry = model.entry
        if entry.kind == "embedding":
            raise ModelCallError(
                f"model '{model.name}' is an embedding model (kind: embedding in "
                "configs/models.yaml); ask a chat model, or use ctx.embed()",
                kind="bad_request",
            )
        messages = (
            (Message("system", system), Message("user", prompt))
            if system
            else (Message("user", prompt),)
        )
        schema: dict[str, Any] | None = None
        if output is not None:
            from master_sdk.models.schemas import strict_json_schema

            schema = strict_json_schema(output)
        budget = scope.budget
        # the schema travels with the request and is billed as prompt tokens
        prompt_bound = estimate_prompt_tokens(messages, schema)
        cap = entry.max_tokens
        if max_tokens is not None:
            cap = min(cap, max_tokens) if cap is not None else max_tokens
        worst_out = cap
        if cap is None:
            # no configured cap: never let the reply outgrow what the budgets have left
            worst_out = _fitting_cap(budget, model.price, prompt_bound)
            if worst_out is not None and worst_out <= BUDGET_CAP_CEILING:
                cap = worst_out
        worst_tokens = prompt_bound + (worst_out or 0)
        worst_cost = (
            cost_usd(model.price, prompt_bound, worst_out or 0) if model.price is not None else None
        )
        request = ModelRequest(
            model=model.provider_model,
            messages=messages,
            max_tokens=cap,
            temperature=temperature if temperature is not None else entry.temperature,
            output_schema=schema,
            output_name=output.__name__ if output is not None else None,
        )
        # a retried step's call that an earlier attempt already had answered: the kept
        # reply, not a second request (orchestrator/replies.py)
        journal = getattr(scope, "replies", None)
        key: str | None = None
        if journal is not None:
            keeping = gate is not None and getattr(gate, "keep_replies", False)
            # the request's key (a hash of it) is needed only to reuse a reply or keep one
            if keeping or journal.pending:
                key = _request_key(model.name, request)
                kept = journal.reuse(key)
                if kept is not None:
                    return _reused(kept, model, output, scope)
            if not keeping:
                journal = None
        budget.check_model(
            scope.step_id, model.name, worst_tokens=worst_tokens, worst_cost=worst_cost
        )
        worst = Reservation(
            step=scope.step_id,
            model=model.name,
            tokens_in=prompt_bound,
            # the reply cap sent; without one, at most what a cap derived from the budget
            # would have been (BUDGET_CAP_CEILING): an estimate, flagged as one
            tokens_out=cap
            if cap is not None
            else min(worst_out or BUDGET_CAP_CEILING, BUDGET_CAP_CEILING),
            price=model.price,
        )
        reserved = (
            gate.admit(step_id=scope.step_id, model=model.name, worst_cost=worst_cost)
            if gate is not None
            else 0.0
        )
        cost: float | None = None
        try:
            response, duration_ms, attempts, provider = self._call(
                model, lambda p: p.complete(request), scope, worst, gate
            )
            # a provider that reports no usage (or zeros) is counted high, never as free
            usage = conservative_usage(
                response.usage, prompt_tokens=prompt_bound, reply=response.text
            )
            cost = (
                cost_usd(model.price, usage.tokens_in, usage.tokens_out, usage.cached_tokens)
                if model.price is not None
                else None
            )
        finally:
            if gate is not None:
                gate.settle(reserved, cost)
        run = budget.run
        run.tokens_in += usage.tokens_in
        run.tokens_out += usage.tokens_out
        run.cost_usd += cost or 0.0
        parsed: Any = None
        problem: ModelCallError | None = None
        if output is not None:
            try:
                parsed = _parse(output, response)
            except ModelCallError as exc:
                problem = exc
        attrs: dict[str, Any] = {"model": model.provider_model, "provider": provider.name}
        if response.model and response.model != model.provider_model:
            attrs["response_model"] = response.model
        if attempts > 1:
            attrs["attempts"] = attempts
        if not usage.reported:
            attrs["usage_estimated"] = True
        if usage.cached_tokens:
            attrs["cached_tokens"] = usage.cached_tokens
        if model.price is None:
            attrs["price_unknown"] = True
        if response.finish_reason not in (None, "stop"):
            attrs["finish_reason"] = response.finish_reason
        if problem is not None:
            attrs.update(kind=problem.kind, error=str(problem), raw=_clip(problem.raw))
        scope.trace.emit(
            "model_called",
            step_id=scope.step_id,
            step_type=scope.step_type,
            name=model.name,
            status="ok" if problem is None else "error",
            duration_ms=duration_ms,
            tokens_in=usage.tokens_in,
            tokens_out=usage.tokens_out,
            cost_usd=cost,
            attrs=attrs,
        )
        if journal is not None:
            # committed (with the counters charging it) before the agent sees it
            journal.keep(
                {
                    "key": key,
                    "text": response.text,
                    "model": model.name,
                    "tokens_in": usage.tokens_in,
                    "tokens_out": usage.tokens_out,
                    "cost_usd": cost,
                }
            )
        budget.check_after_model(scope.step_id)
        if problem is not None:
            raise problem
        return Reply(
            text=response.text,
            output=parsed,
            tokens_in=usage.tokens_in,
            tokens_out=usage.tokens_out,
            cost_usd=cost,
            model=model.name,
        )

    def embed(
        self,
        name: str,
        texts: Sequence[str],
        *,
        aliases: Mapping[str, str] | None,
        scope: ModelScope | None,
        policy: Policy | None = None,
    ) -> Embeddings:
        """Embed ``texts`` with an embedding model, in batches within its limits.

        Each request holds at most ``batch_size`` texts and ``batch_tokens`` estimated
        tokens. Inside a run (``scope``) every request is governed like a chat call:
        checked before it is sent (allow-list, call count, worst-case tokens and cost),
        retried only as policy allows, counted in the run's budget and traced as a
        ``model_called`` event with ``attrs.operation == "embeddings"``. Outside a run (a
        notebook), ``policy``'s allow-list applies and retries follow it; nothing is traced.

        Raises:
            ModelCallError: the model is not ``kind: embedding``, a call failed after the
                retries policy allows, or the vectors are not the configured size.
            PolicyViolation: a budget or allow-list refuses a request (before it is sent).
        """
        import numpy as np

        from master_sdk.authoring import Embeddings

        model = self.resolve(name, aliases)
        entry = model.entry
        if entry.kind != "embedding":
            raise ModelCallError(
                f"model '{model.name}' is a chat model; embeddings need a model of kind "
                "embedding in configs/models.yaml (e.g. default_embedding)",
                kind="bad_request",
            )
        if scope is None and policy is not None and policy.allowed_models is not None:
            from master_sdk.governance.budgets import refusal

            if model.name not in policy.allowed_models:
                from master_sdk.errors import PolicyViolation

                raise PolicyViolation(
                    "allowed_models",
                    limit=policy.allowed_models,
                    value=model.name,
                    message=refusal("model", model.name, policy.allowed_models),
                )
        chunks: list[np.ndarray] = []
        tokens = 0
        cost: float | None = 0.0 if model.price is not None else None
        for batch in _batches(texts, entry.batch_size, entry.batch_tokens):
            request = EmbedRequest(
                model=model.provider_model,
                texts=batch,
                dimensions=entry.dimensions,
                params=entry.params,
            )
            vectors, used, spent = self._embed_batch(model, request, scope, policy)
            chunks.append(vectors)
            tokens += used
            if cost is not None and spent is not None:
                cost += spent
        width = entry.dimensions or (chunks[0].shape[1] if chunks else 0)
        matrix = np.vstack(chunks) if chunks else np.zeros((0, width), dtype=np.float32)
        return Embeddings(vectors=matrix, model=model.name, tokens=tokens, cost_usd=cost)

    def _embed_batch(
        self,
        model: ResolvedModel,
        request: EmbedRequest,
        scope: ModelScope | None,
        policy: Policy | None,
    ) -> tuple[np.ndarray, int, float | None]:
        import numpy as np

        bound = sum(_embed_tokens_bound(text) for text in request.texts)
        price = model.price
        if scope is not None:
            scope.budget.check_model(
                scope.step_id,
                model.name,
                worst_tokens=bound,
                worst_cost=cost_usd(price, bound, 0) if price is not None else None,
            )
        started = time.perf_counter()
        provider: Provider | None = None

        def send(target: Provider) -> EmbedResponse:
            if not isinstance(target, Embedder):
                raise ModelCallError(
                    f"model '{model.name}': provider '{target.name}' makes no embeddings",
                    kind="bad_request",
                )
            return target.embed(request)

        if scope is not None:
            worst = Reservation(
                step=scope.step_id, model=model.name, tokens_in=bound, tokens_out=0, price=price
            )
            # inside an experiment: its window, back-off and cost cap, as for chat calls
            gate = current_gate()
            reserved = (
                gate.admit(step_id=scope.step_id, model=model.name, worst_cost=worst.cost)
                if gate is not None
                else 0.0
            )
            spent_seen: float | None = None
            try:
                response, duration_ms, attempts, provider = self._call(
                    model, send, scope, worst, gate
                )
                spent_seen = (
                    cost_usd(price, _reported_tokens(response, bound), 0)
                    if price is not None
                    else None
                )
            finally:
                if gate is not None:
                    gate.settle(reserved, spent_seen)
        else:
            response, attempts = self._call_detached(model, send, policy)
            duration_ms = (time.perf_counter() - started) * 1000
        vectors = np.asarray(response.vectors, dtype=np.float32)
        problem = None
        wanted = model.entry.dimensions
        if vectors.ndim != 2 or vectors.shape[0] != len(request.texts):
            problem = (
                f"{vectors.shape[0] if vectors.ndim else 0} vectors for {len(request.texts)} texts"
            )
        elif wanted is not None and vectors.shape[1] != wanted:
            problem = f"vectors of {vectors.shape[1]} dimensions, configured {wanted}"
        usage = response.usage
        tokens = _reported_tokens(response, bound)
        spent = cost_usd(price, tokens, 0) if price is not None else None
        if scope is not None:
            run = scope.budget.run
            run.tokens_in += tokens
            run.cost_usd += spent or 0.0
            attrs: dict[str, Any] = {
                "operation": "embeddings",
                "model": model.provider_model,
                "provider": provider.name if provider is not None else model.entry.provider,
                "texts": len(request.texts),
                "dimensions": int(vectors.shape[1]) if vectors.ndim == 2 else None,
            }
            if attempts > 1:
                attrs["attempts"] = attempts
            if tokens != usage.tokens_in or not usage.reported:
                attrs["usage_estimated"] = True
            if price is None:
                attrs["price_unknown"] = True
            if problem is not None:
                attrs.update(kind="invalid_response", error=problem)
            scope.trace.emit(
                "model_called",
                step_id=scope.step_id,
                step_type=scope.step_type,
                name=model.name,
                status="ok" if problem is None else "error",
                duration_ms=duration_ms,
                tokens_in=tokens,
                tokens_out=0,
                cost_usd=spent,
                attrs=attrs,
            )
            scope.budget.check_after_model(scope.step_id)
        if problem is not None:
            raise ModelCallError(
                f"embedding model '{model.name}' answered with {problem}",
                kind="invalid_response",
            )
        return vectors, tokens, spent

    def _call_detached(
        self, model: ResolvedModel, send: Callable[[Provider], R], policy: Policy | None
    ) -> tuple[R, int]:
        """One call outside a run: retried as ``policy`` allows, untraced."""
        from master_sdk.contracts.policy import RetryPolicy

        retries = policy.model_retries if policy is not None else RetryPolicy()
        provider = self.provider(model)
        attempt = 0
        while True:
            attempt += 1
            try:
                return send(provider), attempt
            except ModelCallError as exc:
                wait, final = _next_try(exc, attempt, retries, model.name, "(notebook)")
                if final is not None:
                    raise final from None
                self._sleep(wait)

    def _call(
        self,
        model: ResolvedModel,
        send: Callable[[Provider], R],
        scope: ModelScope,
        worst: Reservation,
        gate: CallGate | None = None,
    ) -> tuple[R, float, int, Provider]:
        """Send the request (``send(provider)``), retrying as policy allows. Every attempt
        is counted (a call, and its worst-case tokens and cost) and made durable before it
        is sent; an attempt the provider answered is then counted as what it reported
        (nothing for an error answer), one whose answer never came (a timeout, a dropped
        connection) stays at its worst case, flagged ``usage_estimated``."""
        provider = self.provider(model)
        retries = scope.policy.model_retries
        run = scope.budget.run
        attempt = 0
        while True:
            attempt += 1
            if attempt > 1:
                scope.budget.check_model(scope.step_id, model.name, worst_tokens=0, worst_cost=0.0)
            run.model_calls += 1
            worst.reserve(run)
            try:
                scope.durable()
            except BaseException:
                # not durable, so not sent: the run must not count it
                run.model_calls -= 1
                worst.settle(run, answered=True)
                raise
            started = time.perf_counter()
            try:
                response = _attempt(provider, send, gate)
            except ModelCallError as exc:
                elapsed = (time.perf_counter() - started) * 1000
                answered = exc.status is not None or exc.kind not in _UNANSWERED
                worst.settle(run, answered=answered)
                # in a batch, load errors are the batch's to pace: its window shrinks for
                # every case, and the call gets the batch's number of tries
                attempts = (
                    max(retries.max_attempts, gate.congestion_attempts)
                    if gate is not None and exc.kind in CONGESTION_KINDS
                    else None
                )
                wait, final = _next_try(
                    exc, attempt, retries, model.name, scope.step_id, max_attempts=attempts
                )
                attrs: dict[str, Any] = {
                    "kind": exc.kind,
                    "status": exc.status,
                    "attempt": attempt,
                    "error": str(final or exc),
                }
                if not answered:
                    attrs["usage_estimated"] = True
                if exc.retry_after_s is not None:
                    attrs["retry_after_s"] = exc.retry_after_s
                if exc.raw:
                    attrs["raw"] = _clip(exc.raw)
                if final is not None:
                    self._emit_error(model, scope, elapsed, attrs)
                    raise final from None
                attrs["wait_s"] = wait
                scope.trace.emit(
                    "model_retry",
                    step_id=scope.step_id,
                    step_type=scope.step_type,
                    name=model.name,
                    status="error",
                    duration_ms=elapsed,
                    attrs=attrs,
                )
                self._sleep(wait)
                continue
            except BaseException as exc:
                # not a provider failure but a bug, a test guard or a kernel interrupt:
                # traced, never retried; whether the request left is unknown, so it stays
                # counted at its worst case
                worst.settle(run, answered=False)
                elapsed = (time.perf_counter() - started) * 1000
                self._emit_error(
                    model,
                    scope,
                    elapsed,
                    {
                        "kind": "exception",
                        "attempt": attempt,
                        "error": f"{type(exc).__name__}: {exc}",
                    },
                )
                raise
            worst.settle(run, answered=True)  # the caller counts what the provider reported
            return response, (time.perf_counter() - started) * 1000, attempt, provider

    @staticmethod
    def _emit_error(
        model: ResolvedModel, scope: ModelScope, elapsed: float, attrs: dict[str, Any]
    ) -> None:
        scope.trace.emit(
            "model_called",
            step_id=scope.step_id,
            step_type=scope.step_type,
            name=model.name,
            status="error",
            duration_ms=elapsed,
            attrs=attrs,
        )


def _request_key(model: str, request: ModelRequest) -> str:
    """What identifies a request for reuse: the logical model, the messages, the
    temperature and the output schema (not the reply cap, which follows the budget left)."""
    body = json.dumps(
        [
            model,
            request.model,
            [[m.role, m.content] for m in request.messages],
            request.temperature,
            request.output_schema,
        ],
        sort_keys=True,
        default=str,
    )
    return hashlib.blake2b(body.encode("utf-8"), digest_size=16).hexdigest()


def _reused(
    kept: Mapping[str, Any], model: ResolvedModel, output: type[BaseModel] | None, scope: ModelScope
) -> Reply:
    """A reply an earlier attempt of the step kept: parsed again, traced as
    ``model_call_reused``, not counted or charged a second time."""
    text = str(kept.get("text") or "")
    tokens_in = int(kept.get("tokens_in") or 0)
    tokens_out = int(kept.get("tokens_out") or 0)
    cost = kept.get("cost_usd")
    parsed: Any = None
    problem: ModelCallError | None = None
    if output is not None:
        try:
            reply = ModelResponse(text, Usage(tokens_in, tokens_out), model.provider_model)
            parsed = _parse(output, reply)
        except ModelCallError as exc:
            problem = exc
    scope.trace.emit(
        "model_call_reused",
        step_id=scope.step_id,
        step_type=scope.step_type,
        name=model.name,
        status="ok" if problem is None else "error",
        attrs={
            "model": model.provider_model,
            "kept_tokens_in": tokens_in,
            "kept_tokens_out": tokens_out,
            "kept_cost_usd": cost,
        },
    )
    if problem is not None:
        raise problem
    return Reply(
        text=text,
        output=parsed,
        tokens_in=tokens_in,
        tokens_out=tokens_out,
        cost_usd=float(cost) if isinstance(cost, int | float) else None,
        model=model.name,
    )


def _reported_tokens(response: EmbedResponse, bound: int) -> int:
    """What an embeddings call counts: the reported tokens, or the bound when none came."""
    usage = response.usage
    return usage.tokens_in if usage.reported and usage.tokens_in > 0 else bound


def _embed_tokens_bound(text: str) -> int:
    # one token per three UTF-8 bytes errs high for every script (see prompt_tokens_upper_bound)
    return len(text.encode("utf-8")) // 3 + 1


def _batches(texts: Sequence[str], size: int, max_tokens: int) -> Iterator[tuple[str, ...]]:
    """Consecutive batches of at most ``size`` texts and ``max_tokens`` estimated tokens
    (a single text over the token limit goes alone; the server decides about it)."""
    batch: list[str] = []
    used = 0
    for text in texts:
        cost = _embed_tokens_bound(text)
        if batch and (len(batch) >= size or used + cost > max_tokens):
            yield tuple(batch)
            batch, used = [], 0
        batch.append(text)
        used += cost
    if batch:
        yield tuple(batch)


def _attempt(provider: Provider, send: Callable[[Provider], R], gate: CallGate | None) -> R:
    """One provider call, inside a slot of the batch's window when there is a gate (the
    slot is given back before any retry waits, so a backing-off call holds none)."""
    if gate is None:
        return send(provider)
    gate.acquire()
    outcome = "error"
    try:
        response = send(provider)
        outcome = "ok"
        return response
    except ModelCallError as exc:
        outcome = exc.kind
        raise
    finally:
        gate.release(outcome)


def _next_try(
    exc: ModelCallError,
    attempt: int,
    retries: RetryPolicy,
    model: str,
    step: str,
    *,
    max_attempts: int | None = None,
) -> tuple[float, ModelCallError | None]:
    """How long to wait before the next try, or the error that ends the call."""
    reason: str | None = None
    limit = max_attempts if max_attempts is not None else retries.max_attempts
    wait = min(retries.max_backoff_s, retries.backoff_s * 2 ** (attempt - 1))
    if not exc.retryable:
        if exc.kind == "replay_miss":
            return 0.0, _with_message(exc, f"model '{model}' in step '{step}': {exc}")
        return 0.0, exc
    if attempt >= limit:
        tries = "1 attempt" if attempt == 1 else f"{attempt} attempts"
        source = (
            "the experiment's tries for rate limits and timeouts"
            if max_attempts is not None
            else "policy model_retries.max_attempts"
        )
        reason = f"gave up after {tries} ({source} is {limit})"
    elif exc.retry_after_s is not None:
        if exc.retry_after_s > retries.max_backoff_s:
            # retrying sooner than the server asked would only be refused again
            reason = (
                f"not retried: the server asked to wait {exc.retry_after_s:g}s, longer than "
                f"policy model_retries.max_backoff_s ({retries.max_backoff_s:g}s)"
            )
        else:
            wait = max(wait, exc.retry_after_s)
    if reason is None:
        return wait, None
    return 0.0, _with_message(exc, f"{exc} — {reason}")


def _with_message(exc: ModelCallError, message: str) -> ModelCallError:
    return ModelCallError(
        message,
        kind=exc.kind,
        retryable=exc.retryable,
        retry_after_s=exc.retry_after_s,
        status=exc.status,
        raw=exc.raw,
    )


def _clip(raw: str | None) -> str | None:
    if raw is None or len(raw) <= RAW_TRACE_CHARS:
        return raw
    return f"{raw[:RAW_TRACE_CHARS]}… ({len(raw) - RAW_TRACE_CHARS} more characters)"


def _fitting_cap(budget: RunBudget, price: Price | None, prompt_bound: int) -> int | None:
    caps: list[int] = []
    remaining = budget.remaining_tokens()
    if remaining is not None:
        caps.append(remaining - prompt_bound)
    limit = budget.policy.max_cost_usd
    if limit is not None and price is not None and price.output > 0:
        left = limit - budget.run.cost_usd - cost_usd(price, prompt_bound, 0)
        caps.append(int(left * 1e6 / price.output))
    if not caps:
        return None
    return max(1, min(caps))


def _parse(output: type[BaseModel], response: ModelResponse) -> BaseModel:
    hint = ""
    if response.finish_reason == "length":
        hint = " (the reply was cut at max_tokens: raise max_tokens for this model)"
    excerpt = response.text if len(response.text) <= 200 else f"{response.text[:200]}…"
    shown = f"; the reply began {excerpt!r} (the whole reply is in the trace)"
    try:
        data = json.loads(response.text)
    except json.JSONDecodeError as exc:
        raise ModelCallError(
            f"the model's structured output is not JSON ({exc.msg}); expected "
            f"{output.__name__}{hint}{shown}",
            kind="invalid_response",
            raw=response.text,
        ) from None
    try:
        return output.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors()
        )
        raise ModelCallError(
            f"the model's structured output does not match {output.__name__}: "
            f"{problems}{hint}{shown}",
            kind="invalid_response",
            raw=response.text,
        ) from None
