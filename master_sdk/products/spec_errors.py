"""Pydantic errors on a spec file (flow, manifest, product config) as one readable FlowError.

Every problem is listed — never "and 1 more problem(s)" — each with the step and field it is
about. An unknown key names the closest valid key of the place it sits in (``promt`` ->
``prompt``), and the "required field is missing" that the same typo causes is folded into
that line, so one slip reads as one problem.
"""

from __future__ import annotations

import difflib
import types
import typing
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from master_sdk.errors import FlowError

_STEP_TAGS = ("tool", "agent", "hitl", "user_input")


@dataclass(frozen=True, slots=True)
class SpecProblem:
    """One problem found in a spec file."""

    step: str | None
    field: str | None
    message: str

    def text(self) -> str:
        where = ", ".join(
            p
            for p in (
                f"step '{self.step}'" if self.step else None,
                f"field '{self.field}'" if self.field else None,
            )
            if p
        )
        return f"{where}: {self.message}" if where else self.message


def spec_error(
    exc: ValidationError,
    raw: Any,
    *,
    file: str,
    flow: str | None,
    model: type[BaseModel] | None = None,
) -> FlowError:
    """Turn a pydantic error on a spec file into a FlowError listing every problem.

    Args:
        exc: the validation error.
        raw: the parsed file (to name steps by id).
        file: the file, for the message.
        flow: the flow id, if the file is a flow.
        model: the spec's model, to suggest valid keys (default: the flow spec).
    """
    if model is None:
        from master_sdk.contracts.flow import FlowSpec

        model = FlowSpec
    problems = _problems(exc, raw, model)
    first = problems[0]
    if len(problems) == 1:
        error = FlowError(first.message, file=file, flow=flow, step=first.step, field=first.field)
    else:
        listed = "".join(f"\n  - {p.text()}" for p in problems)
        error = FlowError(f"{len(problems)} problems:{listed}", file=file, flow=flow)
    return error


def _problems(exc: ValidationError, raw: Any, model: type[BaseModel]) -> list[SpecProblem]:
    found: list[SpecProblem] = []
    suggested: set[tuple[str | None, str]] = set()  # (step, path prefix + missing key)
    missing: list[tuple[str | None, str, list[Any]]] = []
    for item in exc.errors():
        step, loc, owner = _locate(list(item["loc"]), raw, model)
        field_name = ".".join(str(p) for p in loc) or None
        kind = item["type"]
        if kind == "missing":
            missing.append((step, field_name or "", loc))
            continue
        message = item["msg"]
        if kind == "extra_forbidden":
            message = "unknown field"
            valid = _keys(owner)
            key = str(loc[-1]) if loc else ""
            meant = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
            if meant:
                message = f"unknown field; did you mean '{meant[0]}'?"
                prefix = ".".join(str(p) for p in loc[:-1])
                suggested.add((step, f"{prefix}.{meant[0]}" if prefix else meant[0]))
            elif valid:
                message = f"unknown field (valid here: {', '.join(valid)})"
        elif kind == "union_tag_invalid":
            message = "unknown step type; use one of tool, agent, hitl, user_input"
            field_name = "type"
        elif kind == "union_tag_not_found":
            message = "step has no 'type'; use one of tool, agent, hitl, user_input"
            field_name = "type"
        found.append(SpecProblem(step, field_name, message))
    for step, field_name, _loc in missing:
        if (step, field_name) in suggested:
            continue  # the unknown key that names it already says what to do
        found.append(SpecProblem(step, field_name or None, "required field is missing"))
    return found or [SpecProblem(None, None, str(exc))]


def _locate(
    loc: list[Any], raw: Any, model: type[BaseModel]
) -> tuple[str | None, list[Any], type[BaseModel] | None]:
    """``(step id, loc within the step or file, model owning the last key)``."""
    step: str | None = None
    owner: type[BaseModel] | None = model
    if len(loc) >= 2 and loc[0] == "steps" and isinstance(loc[1], int):
        steps = raw.get("steps") if isinstance(raw, dict) else None
        if isinstance(steps, list) and loc[1] < len(steps) and isinstance(steps[loc[1]], dict):
            step = str(steps[loc[1]].get("id", f"#{loc[1] + 1}"))
        else:
            step = f"#{loc[1] + 1}"
        loc = loc[2:]
        owner = None
        if loc and loc[0] in _STEP_TAGS:  # the discriminator tag pydantic puts in the path
            owner = _step_model(str(loc[0]))
            loc = loc[1:]
    for part in loc[:-1]:
        owner = _child_model(owner, part)
    return step, loc, owner


def _step_model(tag: str) -> type[BaseModel]:
    from master_sdk.contracts import flow as contracts

    models: dict[str, type[BaseModel]] = {
        "tool": contracts.ToolStep,
        "agent": contracts.AgentStep,
        "hitl": contracts.HitlStep,
        "user_input": contracts.UserInputStep,
    }
    return models[tag]


def _keys(model: type[BaseModel] | None) -> list[str]:
    if model is None:
        return []
    return [info.alias or name for name, info in model.model_fields.items()]


def _child_model(model: type[BaseModel] | None, key: Any) -> type[BaseModel] | None:
    if model is None or not isinstance(key, str):
        return None
    for name, info in model.model_fields.items():
        if key in (name, info.alias):
            return _model_in(info.annotation)
    return None


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, typing.Annotated):
        for arg in typing.get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None
