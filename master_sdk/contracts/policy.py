"""Policy and budget contracts: what a run may spend and call.

The platform policy (``configs/policy.yaml``) is the ceiling; a product's
``config/product.yaml`` and a flow's ``policy:`` block may only tighten it
(see :mod:`master_sdk.governance.policy`).
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from master_sdk.contracts.limits import MAX_RENDER_MS as MAX_RENDER_MS
from master_sdk.contracts.limits import MAX_RENDERED_CHARS as MAX_RENDERED_CHARS
from master_sdk.governance.names import name_problem

BUDGET_NAMES: tuple[str, ...] = (
    "steps",
    "tool_calls",
    "model_calls",
    "total_tokens",
    "cost_usd",
)
"""Budget names in display order; policy field ``max_<name>`` limits each one."""


_PLACEHOLDER_NAME = re.compile(r"[A-Z][A-Z0-9_]*")


def _canonical(name: str) -> str:
    problem = name_problem(name)
    if problem is not None:
        raise ValueError(f"{name!r} {problem}")
    return name


CanonicalName = Annotated[str, AfterValidator(_canonical)]
"""A tool or model name as allow-lists hold it (see :mod:`master_sdk.governance.names`)."""


class RetryPolicy(BaseModel):
    """How often a failed call may be tried again (each try is traced)."""

    model_config = ConfigDict(extra="forbid")

    max_attempts: int = Field(default=3, ge=1, le=20)
    backoff_s: float = Field(default=0.5, ge=0, le=60)
    max_backoff_s: float = Field(default=8.0, ge=0, le=600)


class RedactionPolicy(BaseModel):
    """Which redaction applies before anything is stored, logged, shown or exported."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(
        default=True,
        description="False turns the personal-data and token detectors off; values of the "
        "secrets file and extra_patterns are redacted regardless.",
    )
    extra_patterns: dict[str, str] = Field(
        default_factory=dict,
        description="Extra regular expressions, NAME -> pattern; matches become <NAME>.",
    )

    @field_validator("extra_patterns")
    @classmethod
    def _patterns_compile(cls, patterns: dict[str, str]) -> dict[str, str]:
        for name, pattern in patterns.items():
            if not _PLACEHOLDER_NAME.fullmatch(name):
                raise ValueError(f"pattern name {name!r} must be upper case, like EMPLOYEE_ID")
            try:
                compiled = re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"pattern {name} does not compile: {exc}") from None
            if compiled.fullmatch(""):
                raise ValueError(f"pattern {name} matches the empty string")
        return patterns


def _approvers(value: object) -> object:
    # a plain list means every human step: one shape ({step or '*': [names]}) downstream
    return {"*": value} if isinstance(value, list) else value


Approvers = Annotated[dict[str, list[str]], BeforeValidator(_approvers)]
"""Who may decide, by step id (``'*'``: every step not named)."""


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
    max_cost_usd: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    allowed_tools: list[CanonicalName] | None = None
    allowed_models: list[CanonicalName] | None = None
    allowed_collections: list[CanonicalName] | None = None
    redact_before_embedding: bool = Field(
        default=True,
        description="Redact texts before they are sent to an embedding model (stored text is "
        "always redacted). False embeds the raw text: better retrieval on names and "
        "addresses, but personal data reaches the embedding provider and its vectors.",
    )
    max_input_bytes: int = Field(default=65_536, ge=1)
    max_rendered_chars: int = Field(default=MAX_RENDERED_CHARS, ge=1)
    max_render_ms: int = Field(default=MAX_RENDER_MS, ge=1)
    model_retries: RetryPolicy = Field(default_factory=RetryPolicy)
    auto_retry_idempotent: bool = True
    max_recoveries: int = Field(default=3, ge=0)
    redaction: RedactionPolicy = Field(default_factory=RedactionPolicy)
    # team rules (master_sdk.review.rules): who may decide a paused run
    approvers: Approvers | None = Field(
        default=None,
        description="Who may approve, reject or submit: a list (every human step) or a "
        "mapping step id -> list ('*' for the other steps); None lets anyone decide.",
    )
    four_eyes: bool = Field(
        default=False, description="The person who started a run may not decide its steps."
    )
    max_reservation_minutes: int = Field(
        default=60, ge=1, description="The longest a reviewer may reserve a paused run."
    )


class PolicyOverride(BaseModel):
    """A product's or flow's policy block: only the fields it sets, each only tightening."""

    model_config = ConfigDict(extra="forbid")

    max_steps: int | None = Field(default=None, ge=0)
    max_tool_calls: int | None = Field(default=None, ge=0)
    max_model_calls: int | None = Field(default=None, ge=0)
    max_total_tokens: int | None = Field(default=None, ge=0)
    max_cost_usd: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    allowed_tools: list[CanonicalName] | None = None
    allowed_models: list[CanonicalName] | None = None
    allowed_collections: list[CanonicalName] | None = None
    redact_before_embedding: bool | None = None
    max_input_bytes: int | None = Field(default=None, ge=1)
    max_rendered_chars: int | None = Field(default=None, ge=1)
    max_render_ms: int | None = Field(default=None, ge=1)
    model_retries: RetryPolicy | None = None
    auto_retry_idempotent: bool | None = None
    max_recoveries: int | None = Field(default=None, ge=0)
    approvers: Approvers | None = None
    four_eyes: bool | None = None
    max_reservation_minutes: int | None = Field(default=None, ge=1)
