"""A step output given by hand (``run.skip(output=...)``) is user input, checked like any.

Skipping an interrupted or failed step records ``output`` as what the step produced; later
steps read it as ``steps.<id>.output`` and trust its shape. So it is admitted through the same
door as user input (:func:`~master_sdk.governance.inputs.admit_input`: ``max_input_bytes``,
nesting depth, JSON data only, redacted before it is stored) and validated against the
step's output contract:

* a ``tool`` step: the tool's output model (a tool without one takes any JSON data);
* an ``agent`` step: the agent's :class:`~master_sdk.authoring.AgentOutput` model (control
  fields such as ``next_step`` refused, as for a model's reply);
* a ``user_input`` step: the step's JSON Schema;
* a ``hitl`` step: ``{approved: bool, by: str, comment: str | None, at: str}``.

``None`` (the default) means "no output", as for a step skipped by its ``when:`` guard; it is
refused when a later step or the flow's output reads ``steps.<id>.output``. Every failing
field is listed in one :class:`~master_sdk.errors.InputInvalid`, and nothing changes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from master_sdk.errors import FieldError, InputInvalid
from master_sdk.governance.inputs import admit_input

if TYPE_CHECKING:
    from pydantic import BaseModel

    from master_sdk.products.compiler import CompiledFlow, CompiledStep

__all__ = ["ModelValidator", "admit_skip_output"]

_HITL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "approved": {"type": "boolean"},
        "by": {"type": "string", "maxLength": 128},
        "comment": {"type": ["string", "null"]},
        "at": {"type": "string"},
    },
    "required": ["approved", "by", "at"],
    "additionalProperties": False,
}


class ModelValidator:
    """A pydantic model as a :class:`~master_sdk.governance.inputs.Validator` (strict: no
    extra fields, no type coercion of strings into numbers)."""

    def __init__(self, model: type[BaseModel]) -> None:
        self.model = model

    def errors(self, data: Any) -> list[FieldError]:
        """Every failing field; empty when ``data`` is valid."""
        from pydantic import ValidationError

        if not isinstance(data, dict):
            return [FieldError("", f"must be an object ({self.model.__name__})")]
        errors: list[FieldError] = []
        if self.model.model_config.get("extra") != "allow":
            # a hand-given output is checked as strictly as a form: unknown fields are errors
            fields = self.model.model_fields
            known = set(fields) | {f.alias for f in fields.values() if f.alias}
            errors += [
                FieldError(str(key), f"is not a field of {self.model.__name__}")
                for key in data
                if key not in known
            ]
        extra = {e.path for e in errors}
        try:
            self.model.model_validate(data, strict=True)
        except ValidationError as exc:
            for e in exc.errors():
                path = ".".join(str(p) for p in e["loc"])
                if path not in extra:
                    errors.append(FieldError(path, e["msg"]))
        except ValueError as exc:  # a model validator refusing the data as a whole
            errors.append(FieldError("", str(exc)))
        return errors


def _validator(step: CompiledStep) -> Any:
    from master_sdk.orchestrator.validation import SchemaValidator

    if step.type == "tool":
        model = step.tool.output_model if step.tool is not None else None
        return ModelValidator(model) if model is not None else None
    if step.type == "agent":
        return ModelValidator(step.agent.output_model) if step.agent is not None else None
    if step.type == "hitl":
        return SchemaValidator(_HITL_SCHEMA)
    return SchemaValidator(step.schema or {"type": "object"})


def _readers(flow: CompiledFlow, step: CompiledStep) -> Iterable[str]:
    """Names of what reads ``steps.<id>.output`` after ``step``: later steps, the output."""
    target = ("steps", step.id, "output")
    for later in flow.steps[step.index + 1 :]:
        for compiled in (later.when, later.input, later.show):
            if compiled is not None and any(r[:3] == target for r in compiled.refs):
                yield f"step '{later.id}'"
                break
    if flow.output is not None and any(r[:3] == target for r in flow.output.refs):
        yield "the flow's output"


def admit_skip_output(
    output: Any,
    *,
    flow: CompiledFlow,
    step: CompiledStep,
    scrub: Callable[[Any], Any],
    run_id: str | None = None,
) -> Any:
    """Check a hand-given step output; return it redacted, ready to store.

    Raises:
        InputInvalid: too large or deep, not JSON data, not matching the step's output
            contract, or ``None`` where a later step reads the output.
    """
    what = f"output for skipped step '{step.id}'"
    if output is None:
        readers = list(_readers(flow, step))
        if readers:
            raise InputInvalid(
                [
                    FieldError(
                        "",
                        f"is required: {', '.join(readers)} read steps.{step.id}.output; "
                        "give the output the step would have produced",
                    )
                ],
                what=what,
                run_id=run_id,
                step=step.id,
            )
        return None
    clean, _ = admit_input(
        output,
        limit=flow.policy.max_input_bytes,
        validator=_validator(step),
        scrub=scrub,
        what=what,
        run_id=run_id,
        step=step.id,
    )
    return clean
