"""Structured output: a pydantic model as a strict JSON Schema, provider-neutral."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import BaseModel


def strict_json_schema(model_cls: type[BaseModel]) -> dict[str, Any]:
    """The JSON Schema of a pydantic model in the strict form structured output requires.

    Every object gets ``additionalProperties: false`` and lists all its properties as
    required (optional fields stay nullable through their ``anyOf`` with ``null``);
    ``default`` keywords are dropped, ``oneOf`` becomes ``anyOf``, single-entry ``allOf``
    and ``$ref`` with sibling keywords are inlined.

    Args:
        model_cls: a pydantic ``BaseModel`` subclass (an ``AgentOutput``).

    Returns:
        A new JSON Schema dict, safe to send as ``json_schema.schema``.

    Raises:
        ValueError: the model has an open mapping (a ``dict[str, ...]`` field), which strict
            structured output cannot express.

    Example:
        >>> from pydantic import BaseModel
        >>> class Summary(BaseModel):
        ...     summary: str
        >>> strict_json_schema(Summary)["additionalProperties"]
        False
    """
    schema = model_cls.model_json_schema()
    return _strictify(schema, path="#", root=schema)


def _strictify(node: Any, *, path: str, root: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(node, dict):
        raise ValueError(f"{path}: expected a JSON Schema object, got {type(node).__name__}")
    for defs_key in ("$defs", "definitions"):
        defs = node.get(defs_key)
        if isinstance(defs, dict):
            for name, sub in defs.items():
                defs[name] = _strictify(sub, path=f"{path}/{defs_key}/{name}", root=root)
    extra = node.get("additionalProperties")
    if extra not in (None, False):
        raise ValueError(
            f"{path}: strict structured output cannot express an open mapping "
            "(a dict field); use a model with named fields or a list of key/value items"
        )
    properties = node.get("properties")
    if node.get("type") == "object" or isinstance(properties, dict):
        node["additionalProperties"] = False
    if isinstance(properties, dict):
        node["properties"] = {
            key: _strictify(sub, path=f"{path}/properties/{key}", root=root)
            for key, sub in properties.items()
        }
        node["required"] = list(properties)
    items = node.get("items")
    if isinstance(items, dict):
        node["items"] = _strictify(items, path=f"{path}/items", root=root)
    prefix = node.get("prefixItems")
    if isinstance(prefix, list):
        node["prefixItems"] = [
            _strictify(sub, path=f"{path}/prefixItems/{i}", root=root)
            for i, sub in enumerate(prefix)
        ]
    if isinstance(node.get("oneOf"), list):
        # Strict mode supports anyOf only; pydantic emits oneOf for discriminated unions,
        # whose branches are disjoint, so anyOf accepts exactly the same values.
        node["anyOf"] = node.pop("oneOf")
        node.pop("discriminator", None)
    any_of = node.get("anyOf")
    if isinstance(any_of, list):
        node["anyOf"] = [
            _strictify(sub, path=f"{path}/anyOf/{i}", root=root) for i, sub in enumerate(any_of)
        ]
    all_of = node.get("allOf")
    if isinstance(all_of, list):
        if len(all_of) == 1:
            node.pop("allOf")
            node.update(_strictify(all_of[0], path=f"{path}/allOf/0", root=root))
        else:
            node["allOf"] = [
                _strictify(sub, path=f"{path}/allOf/{i}", root=root) for i, sub in enumerate(all_of)
            ]
    # Strict mode rejects "default"; the pydantic model still applies its own defaults.
    node.pop("default", None)
    ref = node.get("$ref")
    if isinstance(ref, str) and len(node) > 1:
        # A $ref may not carry sibling keywords (a field description): inline the target.
        target = _resolve_ref(root, ref)
        merged = {**target, **node}
        merged.pop("$ref")
        return _strictify(merged, path=path, root=root)
    return node


def _resolve_ref(root: Mapping[str, Any], ref: str) -> dict[str, Any]:
    if not ref.startswith("#/"):
        raise ValueError(f"unsupported $ref {ref!r}: only local '#/...' references are allowed")
    node: Any = root
    for part in ref[2:].split("/"):
        if not isinstance(node, Mapping) or part not in node:
            raise ValueError(f"$ref {ref!r} does not resolve")
        node = node[part]
    if not isinstance(node, dict):
        raise ValueError(f"$ref {ref!r} does not point at a schema object")
    return dict(node)
