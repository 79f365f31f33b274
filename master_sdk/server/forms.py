"""HTML form fields from a step's JSON Schema, and the posted form back to data.

The same kinds as the notebook's forms (``notebook/fields.py``): text, text area for long
strings, date, dropdown for ``enum``/``const``, checkbox, number boxes with bounds,
multi-select for arrays of enums, one-item-per-line text areas for arrays of strings or
numbers, nested objects as groups, and a JSON text area for anything else. Parsing only
turns form text into JSON values; the step's schema then validates the result exactly as
``run.submit`` does, and each error is shown at its field.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from master_sdk.errors import FieldError

PREFIX = "f:"
LONG_TEXT = 200


@dataclass(slots=True)
class FormField:
    """One input of the form: where its value goes (``path``), how it is shown."""

    path: str
    label: str
    kind: str  # text, textarea, date, select, multiselect, checkbox, integer, number, lines, json
    required: bool = False
    description: str | None = None
    options: list[Any] = field(default_factory=list)
    default: Any = None
    minimum: float | None = None
    maximum: float | None = None
    max_length: int | None = None
    children: list[FormField] = field(default_factory=list)  # kind "group"

    @property
    def name(self) -> str:
        """The form control's name."""
        return PREFIX + self.path

    def shown(self, posted: Mapping[str, list[str]] | None) -> Any:
        """What the control shows: the posted text after a refused submit, else the
        default."""
        if posted is not None and self.name in posted:
            values = posted[self.name]
            return values if self.kind == "multiselect" else (values[-1] if values else "")
        if self.default is None:
            return [] if self.kind == "multiselect" else ""
        if self.kind == "lines" and isinstance(self.default, list):
            return "\n".join(str(v) for v in self.default)
        if self.kind == "json":
            return json.dumps(self.default, indent=1)
        return self.default


def _label(name: str, spec: Mapping[str, Any]) -> str:
    title = spec.get("title")
    return str(title) if isinstance(title, str) else name.replace("_", " ").capitalize()


def _kind(spec: Mapping[str, Any]) -> str:
    if "enum" in spec or "const" in spec:
        return "select"
    kind = spec.get("type")
    if kind == "string":
        if spec.get("format") == "date":
            return "date"
        limit = spec.get("maxLength")
        if spec.get("format") == "textarea" or (isinstance(limit, int) and limit > LONG_TEXT):
            return "textarea"
        return "text"
    if kind == "boolean":
        return "checkbox"
    if kind in ("integer", "number"):
        return str(kind)
    if kind == "array" and isinstance(spec.get("items"), Mapping):
        items = spec["items"]
        if "enum" in items:
            return "multiselect"
        if items.get("type") in ("string", "integer", "number"):
            return "lines"
    if kind == "object" and isinstance(spec.get("properties"), Mapping):
        return "group"
    return "json"


def fields_of(schema: Mapping[str, Any], prefix: str = "") -> list[FormField]:
    """The form's fields for an object schema (nested objects as groups)."""
    props = schema.get("properties")
    if not isinstance(props, Mapping):
        return [FormField(prefix or "", "Data (JSON)", "json", required=True)]
    required = set(schema.get("required") or [])
    out: list[FormField] = []
    for name, spec in props.items():
        if not isinstance(spec, Mapping):
            spec = {}
        path = f"{prefix}.{name}" if prefix else str(name)
        kind = _kind(spec)
        item = FormField(
            path=path,
            label=_label(str(name), spec),
            kind=kind,
            required=name in required,
            description=spec.get("description") if isinstance(spec.get("description"), str)
            else None,
            default=spec.get("default"),
        )  # fmt: skip
        if kind == "select":
            item.options = list(spec.get("enum") or [spec.get("const")])
        elif kind == "multiselect":
            item.options = list(spec["items"]["enum"])
        elif kind in ("integer", "number"):
            item.minimum = spec.get("minimum")
            item.maximum = spec.get("maximum")
        elif kind in ("text", "textarea"):
            limit = spec.get("maxLength")
            item.max_length = limit if isinstance(limit, int) else None
        elif kind == "group":
            item.children = fields_of(spec, path)
        out.append(item)
    return out


def parse_form(
    fields: list[FormField], posted: Mapping[str, list[str]]
) -> tuple[dict[str, Any], list[FieldError]]:
    """The data a posted form stands for, and the fields whose text is not a value of
    their kind (a number box holding letters). Empty optional fields are left out."""
    data: dict[str, Any] = {}
    errors: list[FieldError] = []
    for item in fields:
        _parse_into(item, posted, data, errors)
    if len(fields) == 1 and fields[0].path == "" and "" in data:
        whole = data.pop("")
        return (whole if isinstance(whole, dict) else {"": whole}), errors
    return data, errors


def _parse_into(
    item: FormField,
    posted: Mapping[str, list[str]],
    out: dict[str, Any],
    errors: list[FieldError],
) -> None:
    key = item.path.rsplit(".", 1)[-1]
    if item.kind == "group":
        inner: dict[str, Any] = {}
        for child in item.children:
            _parse_into(child, posted, inner, errors)
        if inner or item.required:
            out[key] = inner
        return
    values = posted.get(item.name, [])
    if item.kind == "multiselect":
        chosen = [_option(item, v) for v in values]
        if chosen or item.required:
            out[key] = chosen
        return
    if item.kind == "checkbox":
        out[key] = bool(values) and values[-1] in ("true", "on", "1")
        return
    text = values[-1] if values else ""
    if text == "" and item.kind != "text" and item.kind != "textarea":
        return  # left out: the schema says whether it was required
    if text == "" and not item.required:
        return
    try:
        out[key] = _value(item, text)
    except ValueError as exc:
        errors.append(FieldError(item.path, str(exc)))


def _option(item: FormField, text: str) -> Any:
    for option in item.options:
        if _option_text(option) == text:
            return option
    return text  # not an option: the schema refuses it, naming the field


def _option_text(option: Any) -> str:
    return option if isinstance(option, str) else json.dumps(option)


def _value(item: FormField, text: str) -> Any:
    if item.kind == "select":
        return _option(item, text)
    if item.kind == "integer":
        try:
            return int(text.strip())
        except ValueError:
            raise ValueError("must be a whole number") from None
    if item.kind == "number":
        try:
            number = float(text.strip())
        except ValueError:
            raise ValueError("must be a number") from None
        if number != number or number in (float("inf"), float("-inf")):
            raise ValueError("must be a finite number")
        return int(number) if number.is_integer() and "." not in text else number
    if item.kind == "lines":
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        return [_scalar(line) for line in lines]
    if item.kind == "json":
        try:
            return json.loads(text)
        except ValueError as exc:
            raise ValueError(f"must be JSON ({exc.args[0] if exc.args else 'invalid'})") from None
    return text


def _scalar(text: str) -> Any:
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, int | float) and not isinstance(value, bool) else text


def option_text(option: Any) -> str:
    """How an option is written in the form."""
    return _option_text(option)
