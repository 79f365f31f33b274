"""Per-run budgets and allow-lists, checked before the thing they guard.

Usage counters live on the run record (so they are committed with every step and a
resumed run continues from what the store says was used); limits come from the run's
effective policy.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

from master_sdk.contracts.policy import Policy
from master_sdk.errors import PolicyViolation
from master_sdk.memory.records import RunRow

BUDGET_ROWS: tuple[tuple[str, str], ...] = (
    ("steps", "max_steps"),
    ("tool_calls", "max_tool_calls"),
    ("model_calls", "max_model_calls"),
    ("total_tokens", "max_total_tokens"),
    ("cost_usd", "max_cost_usd"),
)


def canonical_name(name: str) -> str:
    """The form allow-lists compare: NFKC-normalised and stripped; case is kept.

    Names that still differ from their canonical form after this (look-alike characters,
    ``functions.`` prefixes) never match an allow-list entry, because entries are compared
    exactly against registered names.
    """
    return unicodedata.normalize("NFKC", name).strip()


def allowed(name: str, allow_list: Iterable[str] | None) -> bool:
    """True when ``name`` is exactly one of ``allow_list`` (``None`` allows every name)."""
    if allow_list is None:
        return True
    return name == canonical_name(name) and name in set(allow_list)


class RunBudget:
    """Checks and records one run's usage against its policy."""

    __slots__ = ("policy", "run")

    def __init__(self, run: RunRow, policy: Policy) -> None:
        self.run = run
        self.policy = policy

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
        if not allowed(tool, self.policy.allowed_tools):
            raise PolicyViolation(
                "allowed_tools",
                limit=self.policy.allowed_tools,
                value=tool,
                step=step_id,
                message=f"tool '{tool}' is not in allowed_tools",
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
        if not allowed(model, policy.allowed_models):
            raise PolicyViolation(
                "allowed_models",
                limit=policy.allowed_models,
                value=model,
                step=step_id,
                message=f"model '{model}' is not in allowed_models",
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
                    message=f"this call could bring tokens to {total}, above max_total_tokens "
                    f"{policy.max_total_tokens}",
                )
        if policy.max_cost_usd is not None:
            if worst_cost is None:
                raise PolicyViolation(
                    "max_cost_usd",
                    limit=policy.max_cost_usd,
                    value=None,
                    step=step_id,
                    message=f"model '{model}' has no price in configs/models.yaml and a cost "
                    "budget is set; add its price",
                )
            total_cost = run.cost_usd + worst_cost
            if total_cost > policy.max_cost_usd:
                raise PolicyViolation(
                    "max_cost_usd",
                    limit=policy.max_cost_usd,
                    value=round(total_cost, 6),
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
        if policy.max_cost_usd is not None and self.run.cost_usd > policy.max_cost_usd:
            raise PolicyViolation(
                "max_cost_usd",
                limit=policy.max_cost_usd,
                value=round(self.run.cost_usd, 6),
                step=step_id,
                message=f"cost ${self.run.cost_usd:.6f} is above max_cost_usd "
                f"${policy.max_cost_usd}",
            )

    def rows(self) -> list[tuple[str, float, float | None]]:
        """``(budget, used, limit)`` for every budget, in display order."""
        return [(name, self.used(name), getattr(self.policy, field)) for name, field in BUDGET_ROWS]
