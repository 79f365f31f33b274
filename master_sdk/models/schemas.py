"""Structured output: a pydantic model as a strict JSON Schema."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

_SCHEMA_MAPS = ("properties", "$defs", "definitions", "patternProperties")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SCHEMA_ONE = ("items", "additionalProperties", "not", "contains")


def strict_json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON Schema in the strict form structured-output APIs require.

    Every object lists all its properties as required and forbids additional ones;
    titles and defaults are dropped (strict mode rejects or ignores them).
    """
    schema = model.model_json_schema()
    _tighten(schema)
    return schema


def _tighten(node: dict[str, Any]) -> None:
    node.pop("title", None)
    node.pop("default", None)
    if node.get("type") == "object" or "properties" in node:
        node["required"] = list(node.get("properties", {}))
        node["additionalProperties"] = False
    for key in _SCHEMA_MAPS:
        mapping = node.get(key)
        if isinstance(mapping, dict):
            for sub in mapping.values():
                if isinstance(sub, dict):
                    _tighten(sub)
    for key in _SCHEMA_LISTS:
        options = node.get(key)
        if isinstance(options, list):
            for sub in options:
                if isinstance(sub, dict):
                    _tighten(sub)
    for key in _SCHEMA_ONE:
        sub = node.get(key)
        if isinstance(sub, dict):
            _tighten(sub)
