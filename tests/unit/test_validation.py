"""User-input validation: every failing field, values never echoed, cheap to import."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from master_sdk.orchestrator.validation import SchemaValidator

SCHEMA = {
    "type": "object",
    "properties": {
        "email": {"type": "string", "format": "email"},
        "when": {"type": "string", "format": "date"},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "tags": {"type": "array", "items": {"enum": ["a", "b"]}},
        "address": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
    "required": ["when", "age"],
    "additionalProperties": False,
}


def test_every_failing_field_is_listed_with_its_path() -> None:
    """Nested, array, missing and extra fields each get their own dotted path."""
    errors = SchemaValidator(SCHEMA).errors(
        {"when": "2026-13-40", "age": 200, "tags": ["a", "z"], "address": {}, "extra": 1}
    )
    assert [(e.path, e.message) for e in errors] == [
        ("address.city", "is required"),
        ("age", "must be <= 150"),
        ("extra", "is not an allowed field"),
        ("tags.1", "must be one of: a, b"),
        ("when", "must be a valid date"),
    ]


def test_missing_required_fields_are_reported_at_their_own_path() -> None:
    """A missing property is reported as that property, not as its parent."""
    errors = SchemaValidator(SCHEMA).errors({})
    assert [e.path for e in errors] == ["age", "when"]


def test_messages_never_echo_the_submitted_value() -> None:
    """A value that may hold personal data never appears in the error text."""
    errors = SchemaValidator(SCHEMA).errors({"when": "ana@example.com", "age": "ana@example.com"})
    assert errors
    assert all("ana@example.com" not in e.message for e in errors)


def test_validating_does_not_import_the_iri_grammar() -> None:
    """The first validation skips rfc3987_syntax (seconds to import) yet leaves it importable."""
    code = (
        "import sys\n"
        "from master_sdk.orchestrator.validation import SchemaValidator\n"
        "print(SchemaValidator({'type': 'object'}).errors({}))\n"
        "print('rfc3987_syntax' in sys.modules, sys.modules.get('rfc3987_syntax', 'absent'))\n"
        "import importlib.util\n"
        "print(importlib.util.find_spec('rfc3987_syntax') is not None)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    lines = out.stdout.strip().splitlines()
    assert lines[0] == "[]"
    assert lines[1] == "False absent"
    assert lines[2] == "True"


_FLAT_SCHEMAS: list[dict[str, Any]] = [
    {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
    {
        "type": "object",
        "title": "order",
        "properties": {
            "n": {"type": "integer", "description": "how many"},
            "price": {"type": "number"},
            "ok": {"type": "boolean"},
            "name": {"type": "string"},
        },
        "required": ["n", "ok"],
        "additionalProperties": False,
    },
    {"type": "object"},
    {"type": "object", "required": ["x"]},
    # hello_world's input form, and the fields an input form usually has
    {
        "type": "object",
        "properties": {
            "audience": {"type": "string", "maxLength": 200, "pattern": "\\S", "title": "A"}
        },
        "required": ["audience"],
    },
    {
        "type": "object",
        "properties": {
            "tone": {"type": "string", "enum": ["plain", "friendly"], "default": "plain"}
        },
        "required": ["tone"],
    },
    {
        "type": "object",
        "properties": {
            "age": {"type": "integer", "minimum": 0, "maximum": 150},
            "score": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1.5},
        },
    },
    {"type": "object", "properties": {"s": {"type": "string", "minLength": 2}}},
    {
        "type": "object",
        "properties": {
            "code": {"type": "string", "pattern": "^[A-Z]{2}\\d+$", "minLength": 3, "maxLength": 6}
        },
        "additionalProperties": False,
    },
]
_DATA: list[Any] = [
    {},
    {"text": "hi"},
    {"text": 3},
    {"text": None},
    {"text": "a", "more": [1, 2]},
    {"n": 1, "ok": True},
    {"n": True, "ok": True},
    {"n": 1.0, "ok": False},
    {"n": 1.5, "ok": False, "price": 2},
    {"n": 2, "ok": 1},
    {"n": 2, "ok": False, "price": 2.5, "name": "x"},
    {"n": 2, "ok": False, "extra": 1},
    {"x": None},
    [],
    "text",
    None,
    {"audience": ""},
    {"audience": " \n\t"},
    {"audience": "board"},
    {"audience": "x" * 200},
    {"audience": "x" * 201},
    {"audience": ["board"]},
    {"tone": "plain"},
    {"tone": "loud"},
    {"tone": "Plain"},
    {"tone": 1},
    {"age": -1},
    {"age": 0},
    {"age": 150},
    {"age": 151},
    {"age": True},
    {"age": 1.0},
    {"age": "3"},
    {"score": 0},
    {"score": 1.5},
    {"score": 1.4999},
    {"score": -0.0},
    {"score": float("nan")},
    {"score": float("inf")},
    {"s": "é"},
    {"s": "éé"},
    {"s": "👍👍"},
    {"s": "e\u0301"},
    {"code": "AB12"},
    {"code": "ab12"},
    {"code": "AB1234567"},
    {"code": "AB"},
    {"code": "AB1\n"},
    {"code": "ÀB12"},
]


@pytest.mark.parametrize("schema", _FLAT_SCHEMAS)
def test_the_compiled_check_of_a_flat_schema_agrees_with_jsonschema(schema: dict[str, Any]) -> None:
    """A flat object schema is checked without jsonschema when the data is valid; every
    answer is the one jsonschema gives (the errors come from jsonschema itself)."""
    from jsonschema import Draft202012Validator

    compiled = SchemaValidator(schema)
    assert compiled._flat is not None
    reference = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    for data in _DATA:
        assert (compiled.errors(data) == []) == reference.is_valid(data), (schema, data)
        if compiled._flat(data):
            assert reference.is_valid(data), (schema, data)
        elif reference.is_valid(data):
            # the one case left to jsonschema on purpose: a float that is an integer
            assert isinstance(data, dict) and any(
                type(v) is float and v.is_integer() for v in data.values()
            ), (schema, data)


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "properties": {"d": {"type": "string", "format": "date"}}},
        {"type": "object", "properties": {"s": {"type": "string", "minLength": 2.0}}},
        {"type": "object", "properties": {"s": {"type": "string", "pattern": "("}}},
        {"type": "object", "properties": {"s": {"type": "string", "enum": ["a", 1]}}},
        {"type": "object", "properties": {"n": {"type": "integer", "minimum": True}}},
        {"type": "object", "properties": {"n": {"type": "integer", "minLength": 1}}},
        {"type": "object", "properties": {"n": {"type": "number", "multipleOf": 2}}},
        {"type": "object", "properties": {"s": {"type": ["string", "null"]}}},
        {"type": "object", "properties": {"o": {"type": "object"}}},
        {"type": "object", "patternProperties": {"^x": {"type": "string"}}},
        {"type": "object", "additionalProperties": {"type": "string"}},
        {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object"},
        {"properties": {"s": {"type": "string"}}},
    ],
)
def test_any_other_schema_is_left_to_jsonschema(schema: dict[str, Any]) -> None:
    """Formats, other constraints, keywords of another type, malformed values, unions,
    nested objects and dialects are not compiled."""
    assert SchemaValidator(schema)._flat is None
