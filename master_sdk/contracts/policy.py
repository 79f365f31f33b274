"""Policy and budget contracts: what a run may spend and call.

The platform policy (``configs/policy.yaml``) is the ceiling; a product's
``config/product.yaml`` and a flow's ``policy:`` block may only tighten it
(see :mod:`master_sdk.governance.policy`).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

BUDGET_NAMES: tuple[str, ...] = (
    "steps",
    "tool_calls",
    "model_calls",
    "total_tokens",
    "cost_usd",
)
"""Budget names in display order; policy field ``max_<name>`` limits each one."""


class RetryPolicy(BaseModel):
    """How often a failed call may be tried again (each try is traced)."""

    model_config = ConfigDict(extra="forbid")

    max_attempts: int = Field(default=3, ge=1, le=20)
    backoff_s: float = Field(default=0.5, ge=0, le=60)
    max_backoff_s: float = Field(default=8.0, ge=0, le=600)


class RedactionPolicy(BaseModel):
    """Which redaction applies before anything is stored, logged, shown or exported."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    extra_patterns: dict[str, str] = Field(
        default_factory=dict,
        description="Extra regular expressions, name -> pattern; matches become <NAME>.",
    )


class Policy(BaseModel):
    """The effective governance policy of a run.

    ``None`` for a limit means unlimited; ``None`` for an allow-list means every
    registered tool / configured model. Anything not registered is always denied.
    """

    model_config = ConfigDict(extra="forbid")

    max_steps: int | None = Field(default=200, ge=0)
    max_tool_calls: int | None = Field(default=100, ge=0)
    max_model_calls: int | None = Field(default=100, ge=0)
    max_total_tokens: int | None = Field(default=1_000_000, ge=0)
    max_cost_usd: float | None = Field(default=None, ge=0)
    allowed_tools: list[str] | None = None
    allowed_models: list[str] | None = None
    max_input_bytes: int = Field(default=65_536, ge=1)
    model_retries: RetryPolicy = Field(default_factory=RetryPolicy)
    auto_retry_idempotent: bool = True
    max_recoveries: int = Field(default=3, ge=0)
    redaction: RedactionPolicy = Field(default_factory=RedactionPolicy)


class PolicyOverride(BaseModel):
    """A product's or flow's policy block: only the fields it sets, each only tightening."""

    model_config = ConfigDict(extra="forbid")

    max_steps: int | None = Field(default=None, ge=0)
    max_tool_calls: int | None = Field(default=None, ge=0)
    max_model_calls: int | None = Field(default=None, ge=0)
    max_total_tokens: int | None = Field(default=None, ge=0)
    max_cost_usd: float | None = Field(default=None, ge=0)
    allowed_tools: list[str] | None = None
    allowed_models: list[str] | None = None
    max_input_bytes: int | None = Field(default=None, ge=1)
    model_retries: RetryPolicy | None = None
    auto_retry_idempotent: bool | None = None
    max_recoveries: int | None = Field(default=None, ge=0)
