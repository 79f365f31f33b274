"""The ONLY door to models (law 3).

Resolves logical names (``default``, product aliases) to a configured provider, checks
governance before each call (allow-list, call count, worst-case tokens and cost), retries
only as policy allows with each try traced, and records usage and cost to the run's
budget and trace.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, ValidationError

from master_sdk.authoring import Reply
from master_sdk.config.settings import ModelEntry, ModelsSettings, Price
from master_sdk.errors import ConfigError, ModelCallError
from master_sdk.governance.budgets import conservative_usage
from master_sdk.models.types import Message, ModelRequest, ModelResponse, Provider

if TYPE_CHECKING:
    from master_sdk.contracts.policy import Policy
    from master_sdk.governance.budgets import RunBudget
    from master_sdk.tracing.events import TraceBuffer

FREE = Price(input=0.0, cached_input=0.0, output=0.0)


class ModelScope(Protocol):
    """What a model call needs from the run it belongs to."""

    step_id: str
    step_type: str
    budget: RunBudget
    trace: TraceBuffer
    policy: Policy


@dataclass(frozen=True, slots=True)
class ResolvedModel:
    """A logical model name resolved through aliases and ``configs/models.yaml``."""

    name: str
    entry: ModelEntry
    provider_model: str
    price: Price | None


def prompt_tokens_upper_bound(messages: tuple[Message, ...]) -> int:
    """A deliberately high estimate of prompt tokens, for worst-case budget checks.

    Real tokenisers average about four characters per token in English but approach one
    token per character for some scripts; three UTF-8 bytes per token plus per-message
    overhead errs on the high side for both.
    """
    return sum(len(m.content.encode("utf-8")) // 3 + 8 for m in messages) + 4


def cost_usd(price: Price, tokens_in: int, tokens_out: int, cached: int = 0) -> float:
    """USD for one call under a per-million-token price."""
    cached = min(cached, tokens_in)
    cached_rate = price.cached_input if price.cached_input is not None else price.input
    return (
        (tokens_in - cached) * price.input + cached * cached_rate + tokens_out * price.output
    ) / 1e6


class Router:
    """Maps logical model names to providers and makes every model call.

    Args:
        settings: the ``models.yaml`` settings (entries and prices).
        root: the project folder (cassette paths are relative to it).
        providers: providers to use instead of configured ones, by logical name — the
            seam tests use to plug in a scripted model.
        sleep: how to wait between retries.
    """

    def __init__(
        self,
        settings: ModelsSettings,
        *,
        root: Path,
        providers: Mapping[str, Provider] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.root = root
        self._overrides = dict(providers or {})
        self._providers: dict[str, Provider] = {}
        self._sleep = sleep

    @property
    def names(self) -> set[str]:
        """Every logical model name that can be resolved."""
        return set(self.settings.models) | set(self._overrides)

    def resolve(self, name: str, aliases: Mapping[str, str] | None = None) -> ResolvedModel:
        """Resolve a logical name (through product ``aliases`` first)."""
        logical = (aliases or {}).get(name, name)
        entry = self.settings.models.get(logical)
        if entry is None:
            if logical in self._overrides:
                entry = ModelEntry(provider="fake", model=logical)
            else:
                raise ConfigError(
                    f"unknown model '{logical}'; models: {', '.join(sorted(self.names))}",
                    file="configs/models.yaml",
                    key=f"models.{logical}",
                )
        provider_model = entry.model or logical
        price = self.settings.prices.get(provider_model) or self.settings.prices.get(logical)
        if price is None and entry.provider == "fake" and logical not in self._overrides:
            price = FREE
        if price is None and logical in self._overrides:
            price = FREE
        return ResolvedModel(name=logical, entry=entry, provider_model=provider_model, price=price)

    def provider(self, model: ResolvedModel) -> Provider:
        """The provider instance for a resolved model (created once)."""
        if model.name in self._overrides:
            return self._overrides[model.name]
        existing = self._providers.get(model.name)
        if existing is not None:
            return existing
        created = self._create(model)
        self._providers[model.name] = created
        return created

    def _create(self, model: ResolvedModel) -> Provider:
        entry = model.entry
        if entry.provider == "fake":
            from master_sdk.models.providers.fake import FakeProvider

            return FakeProvider(responses=entry.responses, model=model.provider_model)
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
        raise ConfigError(
            f"provider '{entry.provider}' is not available in this build",
            file="configs/models.yaml",
            key=f"models.{model.name}.provider",
        )

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
        """One governed model call (with policy-allowed retries) for an agent."""
        model = self.resolve(name, aliases)
        entry = model.entry
        messages = (
            (Message("system", system), Message("user", prompt))
            if system
            else (Message("user", prompt),)
        )
        cap = entry.max_tokens
        if max_tokens is not None:
            cap = min(cap, max_tokens) if cap is not None else max_tokens
        budget = scope.budget
        prompt_bound = prompt_tokens_upper_bound(messages)
        if cap is None:
            # no configured cap: never let the reply outgrow what the budgets have left
            cap = _fitting_cap(budget, model.price, prompt_bound)
        worst_tokens = prompt_bound + (cap or 0)
        worst_cost = (
            cost_usd(model.price, prompt_bound, cap or 0) if model.price is not None else None
        )
        budget.check_model(
            scope.step_id, model.name, worst_tokens=worst_tokens, worst_cost=worst_cost
        )
        schema: dict[str, Any] | None = None
        if output is not None:
            from master_sdk.models.schemas import strict_json_schema

            schema = strict_json_schema(output)
        request = ModelRequest(
            model=model.provider_model,
            messages=messages,
            max_tokens=cap,
            temperature=temperature if temperature is not None else entry.temperature,
            output_schema=schema,
            output_name=output.__name__ if output is not None else None,
        )
        response, duration_ms, attempts = self._call(model, request, scope)
        # a provider that reports no usage (or zeros) is counted high, never as free
        usage = conservative_usage(response.usage, prompt_tokens=prompt_bound, reply=response.text)
        cost = cost_usd(model.price or FREE, usage.tokens_in, usage.tokens_out, usage.cached_tokens)
        run = budget.run
        run.tokens_in += usage.tokens_in
        run.tokens_out += usage.tokens_out
        run.cost_usd += cost
        attrs: dict[str, Any] = {"model": model.provider_model, "provider": entry.provider}
        if attempts > 1:
            attrs["attempts"] = attempts
        if not usage.reported:
            attrs["usage_estimated"] = True
        if usage.cached_tokens:
            attrs["cached_tokens"] = usage.cached_tokens
        if model.price is None:
            attrs["price_unknown"] = True
        scope.trace.emit(
            "model_called",
            step_id=scope.step_id,
            step_type=scope.step_type,
            name=model.name,
            status="ok",
            duration_ms=duration_ms,
            tokens_in=usage.tokens_in,
            tokens_out=usage.tokens_out,
            cost_usd=cost,
            attrs=attrs,
        )
        budget.check_after_model(scope.step_id)
        parsed: Any = None
        if output is not None:
            parsed = _parse(output, response)
        return Reply(
            text=response.text,
            output=parsed,
            tokens_in=usage.tokens_in,
            tokens_out=usage.tokens_out,
            cost_usd=cost if model.price is not None else None,
            model=model.name,
        )

    def _call(
        self, model: ResolvedModel, request: ModelRequest, scope: ModelScope
    ) -> tuple[ModelResponse, float, int]:
        provider = self.provider(model)
        retries = scope.policy.model_retries
        run = scope.budget.run
        attempt = 0
        while True:
            attempt += 1
            if attempt > 1:
                scope.budget.check_model(scope.step_id, model.name, worst_tokens=0, worst_cost=0.0)
            run.model_calls += 1
            started = time.perf_counter()
            try:
                response = provider.complete(request)
            except ModelCallError as exc:
                elapsed = (time.perf_counter() - started) * 1000
                if not exc.retryable or attempt >= retries.max_attempts:
                    scope.trace.emit(
                        "model_called",
                        step_id=scope.step_id,
                        step_type=scope.step_type,
                        name=model.name,
                        status="error",
                        duration_ms=elapsed,
                        attrs={
                            "kind": exc.kind,
                            "status": exc.status,
                            "attempt": attempt,
                            "error": str(exc),
                        },
                    )
                    raise
                wait = min(retries.max_backoff_s, retries.backoff_s * 2 ** (attempt - 1))
                if exc.retry_after_s is not None:
                    wait = min(max(wait, exc.retry_after_s), retries.max_backoff_s)
                scope.trace.emit(
                    "model_retry",
                    step_id=scope.step_id,
                    step_type=scope.step_type,
                    name=model.name,
                    status="error",
                    duration_ms=elapsed,
                    attrs={
                        "kind": exc.kind,
                        "status": exc.status,
                        "attempt": attempt,
                        "wait_s": wait,
                        "error": str(exc),
                    },
                )
                self._sleep(wait)
                continue
            return response, (time.perf_counter() - started) * 1000, attempt


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
    try:
        data = json.loads(response.text)
    except json.JSONDecodeError as exc:
        raise ModelCallError(
            f"the model's structured output is not JSON ({exc.msg}); expected {output.__name__}",
            kind="invalid_response",
            raw=response.text[:2000],
        ) from None
    try:
        return output.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors()
        )
        raise ModelCallError(
            f"the model's structured output does not match {output.__name__}: {problems}",
            kind="invalid_response",
            raw=response.text[:2000],
        ) from None
