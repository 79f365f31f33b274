"""User-input validation: every failing field, values never echoed, cheap to import."""

from __future__ import annotations

import subprocess
import sys

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
