"""The one door for user input: flow inputs and the data a paused run is given.

Input is measured before anything else looks at it (serialized size and nesting depth),
then validated against its JSON Schema, then redacted; only the redacted value is stored
or seen by later steps. A refusal raises :class:`InputInvalid` and changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol

from master_sdk.errors import FieldError, InputInvalid

#: Deeper input is refused: it is never what a form produces, and it would otherwise be
#: cut by redaction (which replaces containers nested deeper than 100 levels).
MAX_INPUT_DEPTH = 64

# json.dumps's own layout (", " and ": "): the size users see in traces and errors
_encode = json.JSONEncoder(ensure_ascii=False, allow_nan=False).encode


class Validator(Protocol):
    """What :func:`admit_input` needs from a schema validator."""

    def errors(self, data: Any) -> list[FieldError]:
        """Every failing field; empty when valid."""
        ...


def input_size(data: Any) -> int:
    """The serialized size of ``data`` in UTF-8 bytes (``json.dumps`` without escaping).

    Raises:
        ValueError: ``data`` is not JSON data (sets, objects, NaN) or nests deeper than
            :data:`MAX_INPUT_DEPTH`.
    """
    depth = _depth(data, 0)
    if depth > MAX_INPUT_DEPTH:
        raise ValueError(f"nests deeper than {MAX_INPUT_DEPTH} levels")
    try:
        return len(_encode(data).encode("utf-8"))
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValueError(f"must be JSON data ({exc})") from None


def admit_input(
    data: Any,
    *,
    limit: int,
    validator: Validator | None,
    scrub: Callable[[Any], Any],
    what: str,
    run_id: str | None = None,
    step: str | None = None,
) -> tuple[Any, int]:
    """Check user input and return ``(redacted data, serialized size in bytes)``.

    Args:
        data: what the user gave.
        limit: the policy's ``max_input_bytes``.
        validator: the input's JSON Schema validator (None: any JSON data).
        scrub: the redaction applied before the value is stored.
        what: how error messages name the input (``"user input"``, ``"inputs for p/f"``).

    Raises:
        InputInvalid: too large, too deep, not JSON data, or failing the schema; ``errors``
            lists every failing field, and messages never echo the submitted value.
    """
    try:
        size = input_size(data)
    except ValueError as exc:
        raise InputInvalid(
            [FieldError("", str(exc))], what=what, run_id=run_id, step=step
        ) from None
    if size > limit:
        raise InputInvalid(
            [FieldError("", f"is {size} bytes; the limit is {limit} bytes (max_input_bytes)")],
            what=what,
            run_id=run_id,
            step=step,
        )
    if validator is not None:
        errors = validator.errors(data)
        if errors:
            # a field path can be a key the user typed: it is shown, so it is redacted
            errors = [FieldError(scrub(e.path), e.message) for e in errors]
            raise InputInvalid(errors, what=what, run_id=run_id, step=step)
    return scrub(data), size


def _depth(value: Any, level: int) -> int:
    """Nesting depth of lists and dicts, stopping early once past the cap."""
    if level > MAX_INPUT_DEPTH:
        return level
    if isinstance(value, dict):
        return max((_depth(v, level + 1) for v in value.values()), default=level + 1)
    if isinstance(value, list | tuple):
        return max((_depth(v, level + 1) for v in value), default=level + 1)
    return level
