"""Policy merge: the platform policy is the ceiling; products and flows only tighten it.

``configs/policy.yaml`` is the platform policy; a product's ``config/product.yaml`` and a
flow's ``policy:`` block may lower a limit, shorten an allow-list, or turn automatic retries
off, never the reverse. An attempt to loosen is a :class:`FlowError` at load time naming
the file and the field, so a flow that would be talked out of its limits never runs.
Allow-list entries are canonical names (checked when the file is read, see
:mod:`master_sdk.governance.names`) and are compared exactly.
"""

from __future__ import annotations

from master_sdk.contracts.policy import Policy, PolicyOverride
from master_sdk.errors import FlowError
from master_sdk.governance.names import suggest

_LIMITS = (
    "max_steps",
    "max_tool_calls",
    "max_model_calls",
    "max_total_tokens",
    "max_cost_usd",
    "max_input_bytes",
    "max_rendered_chars",
    "max_render_ms",
    "max_recoveries",
    "max_reservation_minutes",
)


def tighten(
    base: Policy, override: PolicyOverride | None, *, file: str, flow: str | None = None
) -> Policy:
    """Apply ``override`` on ``base``, refusing anything that loosens it.

    Raises:
        FlowError: naming ``file`` and the field, when the override raises a limit, adds a
            tool or model outside the base allow-list, or re-enables automatic retries the
            base turned off.
    """
    if override is None:
        return base
    changes: dict[str, object] = {}
    for name in _LIMITS:
        wanted = getattr(override, name)
        if wanted is None:
            continue
        current = getattr(base, name)
        if current is not None and wanted > current:
            raise FlowError(
                f"policy may only tighten the platform policy: {name} {wanted} is above the "
                f"limit {current}",
                file=file,
                flow=flow,
                field=f"policy.{name}",
                hint=f"use a value <= {current}, or raise it in configs/policy.yaml",
            )
        changes[name] = wanted
    for name in ("allowed_tools", "allowed_models", "allowed_collections"):
        wanted_list = getattr(override, name)
        if wanted_list is None:
            continue
        current_list = getattr(base, name)
        if current_list is not None:
            allowed = set(current_list)
            outside = [item for item in wanted_list if item not in allowed]
            if outside:
                meant = suggest(outside[0], current_list)
                raise FlowError(
                    f"policy may only tighten the platform policy: {', '.join(outside)} not in "
                    f"the enclosing policy's {name}"
                    + (f" (did you mean '{meant}'? names match exactly)" if meant else ""),
                    file=file,
                    flow=flow,
                    field=f"policy.{name}",
                    hint=f"allowed: {', '.join(current_list) or '(none)'}",
                )
        changes[name] = list(wanted_list)
    if override.redact_before_embedding is not None:
        if not override.redact_before_embedding and base.redact_before_embedding:
            raise FlowError(
                "policy may only tighten the platform policy: redact_before_embedding is on",
                file=file,
                flow=flow,
                field="policy.redact_before_embedding",
            )
        changes["redact_before_embedding"] = override.redact_before_embedding
    if override.auto_retry_idempotent is not None:
        if override.auto_retry_idempotent and not base.auto_retry_idempotent:
            raise FlowError(
                "policy may only tighten the platform policy: auto_retry_idempotent is off",
                file=file,
                flow=flow,
                field="policy.auto_retry_idempotent",
            )
        changes["auto_retry_idempotent"] = override.auto_retry_idempotent
    if override.four_eyes is not None:
        if base.four_eyes and not override.four_eyes:
            raise FlowError(
                "policy may only tighten the platform policy: four_eyes is on",
                file=file,
                flow=flow,
                field="policy.four_eyes",
            )
        changes["four_eyes"] = override.four_eyes
    if override.approvers is not None:
        changes["approvers"] = _narrow_approvers(
            base.approvers, override.approvers, file=file, flow=flow
        )
    if override.model_retries is not None:
        retries = override.model_retries
        if (
            "max_attempts" in retries.model_fields_set
            and retries.max_attempts > base.model_retries.max_attempts
        ):
            raise FlowError(
                f"policy may only tighten the platform policy: model_retries.max_attempts "
                f"{retries.max_attempts} is above {base.model_retries.max_attempts}",
                file=file,
                flow=flow,
                field="policy.model_retries.max_attempts",
            )
        # only what the override sets: an unset backoff keeps the enclosing policy's value
        changes["model_retries"] = base.model_retries.model_copy(
            update={key: getattr(retries, key) for key in retries.model_fields_set}
        )
    return base.model_copy(update=changes)


def _narrow_approvers(
    base: dict[str, list[str]] | None,
    wanted: dict[str, list[str]],
    *,
    file: str,
    flow: str | None,
) -> dict[str, list[str]]:
    """The approvers of an override: each step's list within the enclosing one (its own
    entry, else its ``'*'``); steps the override does not name keep the enclosing lists."""
    if base is None:
        return {step: list(names) for step, names in wanted.items()}
    merged = {step: list(names) for step, names in base.items()}
    for step, names in wanted.items():
        enclosing = base.get(step, base.get("*"))
        if enclosing is not None:
            outside = [name for name in names if name not in enclosing]
            if outside:
                raise FlowError(
                    f"policy may only tighten the platform policy: {', '.join(outside)} may "
                    f"not decide step '{step}' under the enclosing policy's approvers",
                    file=file,
                    flow=flow,
                    field=f"policy.approvers.{step}",
                    hint=f"allowed: {', '.join(enclosing) or '(none)'}",
                )
        merged[step] = list(names)
    if "*" in wanted:
        # a narrower default also narrows the steps the enclosing policy named apart
        for step, names in base.items():
            if step != "*" and step not in wanted:
                merged[step] = [name for name in names if name in wanted["*"]]
    return merged
