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
    from master_sdk.contracts.policy import Policy, RetryPolicy
    from master_sdk.governance.budgets import RunBudget
    from master_sdk.tracing.events import TraceBuffer

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
    {"provider", "mode", "cassette", "wraps", "model", "max_tokens", "temperature"}
)


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
    wrapped: ResolvedModel | None = None


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
        for name, entry in settings.models.items():
            if entry.provider == "replay":
                self._check_replay(name, entry)

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
        resolved = self._resolve(logical)
        self._resolved[logical] = resolved
        return resolved

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
        for provider in self._providers.values():
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
        model = self.resolve(name, aliases)
        entry = model.entry
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
        prompt_bound = prompt_tokens_upper_bound(messages)
        if schema is not None:
            # the schema travels with the request and is billed as prompt tokens
            prompt_bound += len(json.dumps(schema).encode("utf-8")) // 3 + 8
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
        budget.check_model(
            scope.step_id, model.name, worst_tokens=worst_tokens, worst_cost=worst_cost
        )
        request = ModelRequest(
            model=model.provider_model,
            messages=messages,
            max_tokens=cap,
            temperature=temperature if temperature is not None else entry.temperature,
            output_schema=schema,
            output_name=output.__name__ if output is not None else None,
        )
        response, duration_ms, attempts, provider = self._call(model, request, scope)
        # a provider that reports no usage (or zeros) is counted high, never as free
        usage = conservative_usage(response.usage, prompt_tokens=prompt_bound, reply=response.text)
        cost = (
            cost_usd(model.price, usage.tokens_in, usage.tokens_out, usage.cached_tokens)
            if model.price is not None
            else None
        )
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

    def _call(
        self, model: ResolvedModel, request: ModelRequest, scope: ModelScope
    ) -> tuple[ModelResponse, float, int, Provider]:
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
                wait, final = _next_try(exc, attempt, retries, model.name, scope.step_id)
                attrs: dict[str, Any] = {
                    "kind": exc.kind,
                    "status": exc.status,
                    "attempt": attempt,
                    "error": str(final or exc),
                }
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
            except Exception as exc:
                # not a provider failure but a bug or a test guard: traced, never retried
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


def _next_try(
    exc: ModelCallError, attempt: int, retries: RetryPolicy, model: str, step: str
) -> tuple[float, ModelCallError | None]:
    """How long to wait before the next try, or the error that ends the call."""
    reason: str | None = None
    wait = min(retries.max_backoff_s, retries.backoff_s * 2 ** (attempt - 1))
    if not exc.retryable:
        if exc.kind == "replay_miss":
            return 0.0, _with_message(exc, f"model '{model}' in step '{step}': {exc}")
        return 0.0, exc
    if attempt >= retries.max_attempts:
        tries = "1 attempt" if attempt == 1 else f"{attempt} attempts"
        limit = retries.max_attempts
        reason = f"gave up after {tries} (policy model_retries.max_attempts is {limit})"
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
