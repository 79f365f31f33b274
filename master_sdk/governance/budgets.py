"""Per-run budgets and allow-lists, checked before the thing they guard.

Usage counters live on the run record (so they are committed with every step and a
resumed run continues from what the store says was used); limits come from the run's
effective policy. Every check raises :class:`PolicyViolation` naming the rule, the limit
and the value that would have been reached; being exactly at a limit is allowed, one over
is not.

Allow-lists are compared exactly against canonical names (see
:mod:`master_sdk.governance.names`) through sets built once per compiled flow
(:class:`AllowLists`), so a check costs one set lookup.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from master_sdk.errors import PolicyViolation
from master_sdk.governance.names import name_problem, suggest
from master_sdk.models.tokens import estimate_tokens

if TYPE_CHECKING:
    from collections.abc import Collection

    from master_sdk.contracts.policy import Policy
    from master_sdk.memory.records import RunRow
    from master_sdk.models.types import Usage

BUDGET_ROWS: tuple[tuple[str, str], ...] = (
    ("steps", "max_steps"),
    ("tool_calls", "max_tool_calls"),
    ("model_calls", "max_model_calls"),
    ("total_tokens", "max_total_tokens"),
    ("cost_usd", "max_cost_usd"),
)
# Costs are sums of float products: a run that lands exactly on its limit must not be
# refused for a rounding error in the last bit.
COST_TOLERANCE_USD = 1e-9


def conservative_usage(usage: Usage, *, prompt_tokens: int, reply: str) -> Usage:
    """The usage a budget counts for one call: what the provider reported, or a high
    estimate wherever it reported nothing.

    A provider that reports no usage (``reported=False``), or zero prompt tokens, or zero
    reply tokens for a non-empty reply, has failed to count: that part is replaced by an
    upper bound (``prompt_tokens``, the router's bound on the prompt) or by
    :func:`estimate_tokens` of the reply, and the result is marked ``reported=False`` so the
    trace says ``usage_estimated``. Usage is never counted as zero for a call that happened.

    Example:
        >>> conservative_usage(Usage(0, 0, reported=False), prompt_tokens=40, reply="hello")
        Usage(tokens_in=40, tokens_out=2, cached_tokens=0, reported=False)
    """
    from master_sdk.models.types import Usage  # the model boundary's types: when a call is made

    tokens_in = max(0, usage.tokens_in)
    tokens_out = max(0, usage.tokens_out)
    estimated = not usage.reported
    if estimated or tokens_in == 0:
        tokens_in = max(tokens_in, prompt_tokens)
        estimated = True
    if estimated or (tokens_out == 0 and reply):
        tokens_out = max(tokens_out, estimate_tokens(reply) if reply else 0)
        estimated = True
    if not estimated and tokens_in == usage.tokens_in and tokens_out == usage.tokens_out:
        return usage
    cached = min(max(0, usage.cached_tokens), tokens_in)
    return Usage(tokens_in, tokens_out, cached, reported=not estimated)


@dataclass(frozen=True, slots=True)
class AllowLists:
    """A policy's tool and model allow-lists as sets (``None``: every registered name).

    Build it once per compiled flow with :meth:`of`; checks are then one set lookup.
    """

    tools: frozenset[str] | None
    models: frozenset[str] | None

    @classmethod
    def of(cls, policy: Policy) -> AllowLists:
        """The allow-lists of ``policy`` (entries are canonical: the policy model checks)."""
        tools = policy.allowed_tools
        models = policy.allowed_models
        return cls(
            frozenset(tools) if tools is not None else None,
            frozenset(models) if models is not None else None,
        )

    def tool_refusal(self, name: str) -> str | None:
        """Why tool ``name`` may not be called, or None when it may."""
        allowed = self.tools
        if allowed is not None and name in allowed:
            return None
        return refusal("tool", name, allowed)

    def model_refusal(self, name: str) -> str | None:
        """Why model ``name`` may not be called, or None when it may."""
        allowed = self.models
        if allowed is not None and name in allowed:
            return None
        return refusal("model", name, allowed)


def refusal(kind: str, name: str, allowed: Collection[str] | None) -> str | None:
    """Why ``name`` fails an allow-list (``None`` allows every canonical name), or None.

    Example:
        >>> refusal("tool", "functions.echo", None)
        "tool 'functions.echo' is refused: it carries the wrapper prefix 'functions.'; write 'echo'"
    """
    problem = name_problem(name)
    if problem is None and (allowed is None or name in allowed):
        return None
    meant = suggest(name, allowed) if allowed is not None else None
    hint = f"; did you mean '{meant}'? names match exactly" if meant else ""
    if problem is not None:
        return f"{kind} {name!r} is refused: it {problem}{hint}"
    return f"{kind} '{name}' is not in allowed_{kind}s{hint}"


class RunBudget:
    """Checks and records one run's usage against its policy.

    Args:
        run: the run record whose counters are checked (and that callers increment).
        policy: the run's effective policy.
        allow: the policy's allow-lists, prepared once per flow (built here if omitted).
    """

    __slots__ = ("allow", "policy", "run")

    def __init__(self, run: RunRow, policy: Policy, allow: AllowLists | None = None) -> None:
        self.run = run
        self.policy = policy
        self.allow = allow if allow is not None else AllowLists.of(policy)

    def used(self, budget: str) -> float:
        """Current usage of a budget by name (see :data:`BUDGET_ROWS`)."""
        run = self.run
        if budget == "steps":
            return run.steps_used
        if budget == "tool_calls":
            return run.tool_calls
        if budget == "model_calls":
            return run.model_calls
        if budget == "total_tokens":
            return run.tokens_in + run.tokens_out
        return run.cost_usd

    def remaining_tokens(self) -> int | None:
        """Tokens left under ``max_total_tokens`` (None when unlimited)."""
        limit = self.policy.max_total_tokens
        if limit is None:
            return None
        return max(0, limit - self.run.tokens_in - self.run.tokens_out)

    def check_step(self, step_id: str) -> None:
        """Before a step runs: would it exceed ``max_steps``?"""
        limit = self.policy.max_steps
        if limit is not None and self.run.steps_used + 1 > limit:
            raise PolicyViolation(
                "max_steps",
                limit=limit,
                value=self.run.steps_used + 1,
                step=step_id,
                message=f"step {self.run.steps_used + 1} would exceed max_steps {limit}",
            )

    def check_tool(self, step_id: str, tool: str) -> None:
        """Before a tool call: allow-list and ``max_tool_calls``."""
        allowed = self.allow.tools
        if allowed is not None and tool not in allowed:
            raise PolicyViolation(
                "allowed_tools",
                limit=self.policy.allowed_tools,
                value=tool,
                step=step_id,
                message=refusal("tool", tool, allowed),
            )
        limit = self.policy.max_tool_calls
        if limit is not None and self.run.tool_calls + 1 > limit:
            raise PolicyViolation(
                "max_tool_calls",
                limit=limit,
                value=self.run.tool_calls + 1,
                step=step_id,
                message=f"tool call {self.run.tool_calls + 1} would exceed max_tool_calls {limit}",
            )

    def check_model_name(self, step_id: str, model: str, known: Collection[str]) -> None:
        """Before a model is even resolved: the requested name is canonical and known.

        ``known`` holds every name the router can resolve (logical names and aliases);
        anything else is refused rather than looked up.
        """
        message = refusal("model", model, None)
        if message is None and model not in known:
            meant = suggest(model, known)
            message = f"model '{model}' is not a configured model" + (
                f"; did you mean '{meant}'?" if meant else ""
            )
        if message is not None:
            raise PolicyViolation(
                "allowed_models",
                limit=self.policy.allowed_models,
                value=model,
                step=step_id,
                message=message,
            )

    def check_model(
        self,
        step_id: str,
        model: str,
        *,
        worst_tokens: int,
        worst_cost: float | None,
    ) -> None:
        """Before a model call: allow-list, call count, worst-case tokens and cost.

        ``worst_cost`` is None when the model has no price: refused if a cost budget is set.
        """
        policy = self.policy
        run = self.run
        allowed = self.allow.models
        if allowed is not None and model not in allowed:
            raise PolicyViolation(
                "allowed_models",
                limit=policy.allowed_models,
                value=model,
                step=step_id,
                message=refusal("model", model, allowed),
            )
        if policy.max_model_calls is not None and run.model_calls + 1 > policy.max_model_calls:
            raise PolicyViolation(
                "max_model_calls",
                limit=policy.max_model_calls,
                value=run.model_calls + 1,
                step=step_id,
                message=f"model call {run.model_calls + 1} would exceed max_model_calls "
                f"{policy.max_model_calls}",
            )
        if policy.max_total_tokens is not None:
            total = run.tokens_in + run.tokens_out + worst_tokens
            if total > policy.max_total_tokens:
                raise PolicyViolation(
                    "max_total_tokens",
                    limit=policy.max_total_tokens,
                    value=total,
                    step=step_id,
                    message=f"this call could bring tokens to {total} (prompt plus the "
                    f"largest reply allowed), above max_total_tokens {policy.max_total_tokens}",
                )
        if policy.max_cost_usd is not None:
            if worst_cost is None:
                raise PolicyViolation(
                    "max_cost_usd",
                    limit=policy.max_cost_usd,
                    value=None,
                    step=step_id,
                    message=f"model '{model}' has no price in configs/models.yaml and a cost "
                    "budget is set, so its cost could not be counted; add its price",
                )
            total_cost = run.cost_usd + worst_cost
            if total_cost > policy.max_cost_usd + COST_TOLERANCE_USD:
                raise PolicyViolation(
                    "max_cost_usd",
                    limit=policy.max_cost_usd,
                    value=round(total_cost, 9),
                    step=step_id,
                    message=f"this call could bring cost to ${total_cost:.6f}, above "
                    f"max_cost_usd ${policy.max_cost_usd}",
                )

    def check_after_model(self, step_id: str) -> None:
        """After a call is recorded: did what the provider reported exceed a limit?"""
        policy = self.policy
        total = self.run.tokens_in + self.run.tokens_out
        if policy.max_total_tokens is not None and total > policy.max_total_tokens:
            raise PolicyViolation(
                "max_total_tokens",
                limit=policy.max_total_tokens,
                value=total,
                step=step_id,
                message=f"the provider reported {total} tokens in total, above "
                f"max_total_tokens {policy.max_total_tokens}",
            )
        limit = policy.max_cost_usd
        if limit is not None and self.run.cost_usd > limit + COST_TOLERANCE_USD:
            raise PolicyViolation(
                "max_cost_usd",
                limit=limit,
                value=round(self.run.cost_usd, 9),
                step=step_id,
                message=f"cost ${self.run.cost_usd:.6f} is above max_cost_usd ${limit}",
            )

    def rows(self) -> list[tuple[str, float, float | None]]:
        """``(budget, used, limit)`` for every budget, in display order.

        A run blocked by a rule that is not a budget (an allow-list) gets one more row named
        after the rule, with NaN usage and no limit, so ``run.budget()`` shows it too.
        """
        rows: list[tuple[str, float, float | None]] = [
            (name, self.used(name), getattr(self.policy, field)) for name, field in BUDGET_ROWS
        ]
        violation = self.run.state.get("violation")
        rule = violation.get("rule") if isinstance(violation, dict) else None
        if isinstance(rule, str) and rule not in {field for _, field in BUDGET_ROWS}:
            rows.append((rule, math.nan, None))
        return rows
