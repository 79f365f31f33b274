"""JSON Schema validation of flow inputs and user input, with field-level errors.

Uses ``jsonschema`` (imported on first use: it is slow to import) with format checking,
so ``format: date`` is enforced. Messages never echo the submitted value back, since
it may hold personal data; they say what the field must be.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from master_sdk.errors import FieldError

if TYPE_CHECKING:
    from jsonschema.exceptions import ValidationError as SchemaValidationError
    from jsonschema.protocols import Validator


def _import_jsonschema() -> None:
    """Import jsonschema without its optional IRI grammar when we are the first to import it.

    jsonschema checks the ``iri`` / ``iri-reference`` formats with ``rfc3987_syntax`` when
    that package is installed (JupyterLab's dependencies bring it), and that package builds
    a parser at import time: seconds in every fresh kernel and CLI process. Flow schemas
    rarely use those two formats, so the package is hidden for the duration of this one
    import; the entry is removed afterwards and the package stays importable by anyone.
    """
    if "jsonschema" in sys.modules or "rfc3987_syntax" in sys.modules:
        return
    sys.modules["rfc3987_syntax"] = None  # type: ignore[assignment]  # None marks it absent
    try:
        import jsonschema  # noqa: F401  # imported for its side effect: the module cache
    finally:
        del sys.modules["rfc3987_syntax"]


def _validator_class(schema: Mapping[str, Any]) -> type[Validator]:
    _import_jsonschema()
    from jsonschema import Draft202012Validator
    from jsonschema.validators import validator_for

    cls: type[Validator] = validator_for(schema, default=Draft202012Validator)
    return cls


def schema_problem(schema: Mapping[str, Any]) -> str | None:
    """Why ``schema`` is not a valid JSON Schema, or None when it is."""
    _import_jsonschema()
    from jsonschema.exceptions import SchemaError

    try:
        _validator_class(schema).check_schema(dict(schema))
    except SchemaError as exc:
        where = ".".join(str(p) for p in exc.absolute_path)
        return f"invalid JSON Schema{f' at {where}' if where else ''}: {exc.message}"
    return None


class SchemaValidator:
    """Validates data against one schema; built once per step, compiled on first use.

    A flat object schema (fields of a plain type, with the length, pattern, choice and
    bound keywords of their type, ``required``, ``additionalProperties`` and annotations
    only: the usual flow inputs and input forms) is also compiled into a direct check that
    accepts valid data without jsonschema, which is slow to import in a fresh process;
    anything it does not accept is checked by jsonschema, which says what is wrong.
    """

    __slots__ = ("_flat", "_validator", "schema")

    def __init__(self, schema: Mapping[str, Any]) -> None:
        self.schema = schema
        self._validator: Validator | None = None
        self._flat = _flat_check(schema)

    def errors(self, data: Any) -> list[FieldError]:
        """Every failing field, sorted by path; empty when ``data`` is valid."""
        flat = self._flat
        if flat is not None and flat(data):
            return []
        if self._validator is None:
            cls = _validator_class(self.schema)
            self._validator = cls(self.schema, format_checker=cls.FORMAT_CHECKER)
        found: list[FieldError] = []
        for error in self._validator.iter_errors(data):
            found.extend(_field_errors(error))
        # jsonschema reports each missing required property as its own error carrying the
        # whole `required` list, so the same field error can arise more than once
        return sorted(set(found), key=lambda e: (e.path, e.message))


# keywords that never make an instance invalid
_ANNOTATIONS = frozenset(
    {
        "title",
        "description",
        "default",
        "examples",
        "$comment",
        "deprecated",
        "readOnly",
        "writeOnly",
    }
)
# a property's plain type -> whether a value has it, exactly as jsonschema's type checker
# says for JSON data (bool is not an integer; 1.0 is one, but is left to jsonschema)
_PLAIN_TYPES: dict[str, Any] = {
    "string": lambda v: type(v) is str,
    "integer": lambda v: type(v) is int,
    "number": lambda v: type(v) is int or type(v) is float,
    "boolean": lambda v: type(v) is bool,
}
# the keywords a field of each plain type may carry in a flat schema; each is checked as
# jsonschema's own keyword function does (jsonschema/_keywords.py)
_FIELD_KEYWORDS: dict[str, frozenset[str]] = {
    "string": frozenset({"minLength", "maxLength", "pattern", "enum"}),
    "integer": frozenset({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}),
    "number": frozenset({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}),
    "boolean": frozenset(),
}


def _count(value: Any) -> bool:
    return type(value) is int and value >= 0


def _bound(value: Any) -> bool:
    return type(value) is int or (type(value) is float and value == value)  # not NaN


def _field_check(field: Mapping[str, Any]) -> Any:
    """A function telling whether a value is valid for one flat field (True only when
    jsonschema would find no error), or None when the field is not a flat one."""
    kind = field.get("type")
    if not isinstance(kind, str) or kind not in _PLAIN_TYPES:
        return None
    if not set(field) <= {"type"} | _FIELD_KEYWORDS[kind] | _ANNOTATIONS:
        return None
    is_type = _PLAIN_TYPES[kind]
    tests: list[Any] = []
    if "minLength" in field or "maxLength" in field:
        shortest, longest = field.get("minLength", 0), field.get("maxLength")
        if not _count(shortest) or not (longest is None or _count(longest)):
            return None
        tests.append(lambda v: shortest <= len(v) and (longest is None or len(v) <= longest))
    if "pattern" in field:
        if not isinstance(field["pattern"], str):
            return None
        try:
            search = re.compile(field["pattern"]).search
        except re.error:
            return None
        tests.append(lambda v: search(v) is not None)
    if "enum" in field:
        choices = field["enum"]
        if not isinstance(choices, list) or not all(type(c) is str for c in choices):
            return None
        allowed = frozenset(choices)
        tests.append(lambda v: v in allowed)
    for keyword, holds in (
        ("minimum", lambda v, b: not v < b),
        ("maximum", lambda v, b: not v > b),
        ("exclusiveMinimum", lambda v, b: not v <= b),
        ("exclusiveMaximum", lambda v, b: not v >= b),
    ):
        if keyword in field:
            bound = field[keyword]
            if not _bound(bound):
                return None
            tests.append(lambda v, holds=holds, bound=bound: holds(v, bound))
    if not tests:
        return is_type
    return lambda v: is_type(v) and all(test(v) for test in tests)


def _flat_check(schema: Mapping[str, Any]) -> Any:
    """A function telling whether data is valid for a flat object schema (True only when
    jsonschema would find no error), or None when ``schema`` is not one."""
    if not isinstance(schema, Mapping) or schema.get("type") != "object":
        return None
    if not set(schema) <= {"type", "properties", "required", "additionalProperties"} | _ANNOTATIONS:
        return None
    properties = schema.get("properties", {})
    required = schema.get("required", [])
    extra = schema.get("additionalProperties", True)
    if not isinstance(properties, Mapping) or not isinstance(required, list):
        return None
    if not isinstance(extra, bool) or not all(isinstance(name, str) for name in required):
        return None
    checks: dict[str, Any] = {}
    for name, field in properties.items():
        check = _field_check(field) if isinstance(field, Mapping) else None
        if check is None:
            return None
        checks[name] = check
    needed = tuple(required)
    closed = not extra

    def valid(data: Any) -> bool:
        if type(data) is not dict:
            return False
        for name in needed:
            if name not in data:
                return False
        for name, value in data.items():
            check = checks.get(name)
            if check is None:
                if closed:
                    return False
            elif not check(value):
                return False
        return True

    return valid


def _join(parts: Any) -> str:
    return ".".join(str(p) for p in parts)


def _field_errors(error: SchemaValidationError) -> list[FieldError]:
    path = _join(error.absolute_path)
    kind = error.validator
    value: Any = error.validator_value
    instance = error.instance
    schema: Any = error.schema
    if kind == "required" and isinstance(instance, Mapping):
        return [
            FieldError(f"{path}.{name}" if path else str(name), "is required")
            for name in value
            if name not in instance
        ]
    if kind == "additionalProperties" and isinstance(instance, Mapping):
        known = set(schema.get("properties", {}) if isinstance(schema, Mapping) else ())
        return [
            FieldError(f"{path}.{name}" if path else str(name), "is not an allowed field")
            for name in instance
            if name not in known
        ]
    return [FieldError(path, _message(kind, value, error))]


# patterns that only ask for a non-space character: said in words
_NOT_BLANK = frozenset({r"\S", r".*\S.*", r"^.*\S.*$", r"[^\s]", r"^\s*\S"})


def _message(kind: Any, value: Any, error: SchemaValidationError) -> str:
    plural = "" if value == 1 else "s"
    match kind:
        case "type":
            kinds = value if isinstance(value, str) else " or ".join(map(str, value))
            return f"must be of type {kinds}"
        case "minLength":
            return f"must have at least {value} character{plural}"
        case "maxLength":
            return f"must have at most {value} character{plural}"
        case "minimum":
            return f"must be >= {value}"
        case "maximum":
            return f"must be <= {value}"
        case "exclusiveMinimum":
            return f"must be > {value}"
        case "exclusiveMaximum":
            return f"must be < {value}"
        case "multipleOf":
            return f"must be a multiple of {value}"
        case "enum":
            return "must be one of: " + ", ".join(map(str, value))
        case "const":
            return f"must be {value!r}"
        case "pattern":
            if value in _NOT_BLANK:
                return "must not be blank"
            return f"must match the pattern {value}"
        case "format":
            return f"must be a valid {value}"
        case "minItems":
            return f"must have at least {value} item{plural}"
        case "maxItems":
            return f"must have at most {value} item{plural}"
        case "uniqueItems":
            return "must not repeat items"
        case "minProperties":
            return f"must have at least {value} field{plural}"
        case "maxProperties":
            return f"must have at most {value} field{plural}"
    return f"fails '{kind}'"
