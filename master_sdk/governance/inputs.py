"""The one door for user input: flow inputs and the data a paused run is given.

Input is measured before anything else looks at it (serialized size and nesting depth),
then validated against its JSON Schema, then redacted; only the redacted value is stored
or seen by later steps. A refusal raises :class:`InputInvalid` and changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
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
    if _at_least(data, limit) > limit:
        # refused from a bounded look, before a huge value is serialized
        raise InputInvalid(
            [FieldError("", f"is more than {limit} bytes (max_input_bytes)")],
            what=what,
            run_id=run_id,
            step=step,
        )
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


def _at_least(value: Any, limit: int) -> int:
    """A lower bound of the serialized size of ``value``, counted only up to just past
    ``limit`` (so a huge value costs little to refuse). Containers of other containers are
    walked without recursion; nesting is checked separately."""
    total = 0
    stack = [value]
    while stack and total <= limit:
        item = stack.pop()
        if isinstance(item, str):
            total += len(item) + 2
        elif isinstance(item, dict):
            total += 2 + len(item)
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            total += 2 + len(item)
            stack.extend(item)
        else:
            total += 1
    return total


def _depth(value: Any, level: int) -> int:
    """Nesting depth of lists and dicts, stopping early once past the cap."""
    if level > MAX_INPUT_DEPTH:
        return level
    if isinstance(value, dict):
        return max((_depth(v, level + 1) for v in value.values()), default=level + 1)
    if isinstance(value, list | tuple):
        return max((_depth(v, level + 1) for v in value), default=level + 1)
    return level


def require_mapping(data: Any, *, what: str, run_id: str | None = None) -> dict[str, Any]:
    """``data`` as a dict, or :class:`InputInvalid` when it is not a mapping with string keys
    (``None``, a list, a string: a form or ``--data`` gives an object).

    Example:
        >>> require_mapping({"a": 1}, what="user input")
        {'a': 1}
    """
    if not isinstance(data, Mapping):
        raise InputInvalid(
            [
                FieldError(
                    "", f"must be an object (a dict of field values), not {type(data).__name__}"
                )
            ],
            what=what,
            run_id=run_id,
        )
    if not all(isinstance(key, str) for key in data):
        raise InputInvalid(
            [FieldError("", "field names must be strings")], what=what, run_id=run_id
        )
    return dict(data)


def require_ref(ref: Any) -> str:
    """``ref`` when it is a string (the catalog says whether it names a flow), else
    :class:`InputInvalid`."""
    if not isinstance(ref, str):
        raise InputInvalid(
            [FieldError("ref", "must be a 'product/flow' string, e.g. 'hello_world/greet'")],
            what="flow reference",
        )
    return ref


def since_us(since: Any) -> int | None:
    """``since=`` (an aware or naive-UTC datetime, or an ISO 8601 string) in microseconds."""
    from datetime import UTC, datetime

    if since is None:
        return None
    try:
        moment = datetime.fromisoformat(since) if isinstance(since, str) else since
        if not isinstance(moment, datetime):
            raise TypeError
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return int(moment.timestamp() * 1_000_000)
    except (TypeError, ValueError, OverflowError, OSError):
        raise InputInvalid(
            [FieldError("since", "must be a datetime or an ISO 8601 string (2026-01-31T12:00Z)")],
            what="argument",
        ) from None


def require_text(text: Any, *, field: str, limit: int, run_id: str | None = None) -> str | None:
    """A free-text argument (an approval comment, an abort reason): ``None`` or a string of
    at most ``limit`` UTF-8 bytes (the policy's ``max_input_bytes``), else InputInvalid."""
    if text is None:
        return None
    if not isinstance(text, str):
        problem = f"must be text, not {type(text).__name__}"
    elif len(text) > limit or len(text.encode("utf-8", "surrogatepass")) > limit:
        problem = f"is longer than {limit} bytes (max_input_bytes)"
    else:
        return text
    raise InputInvalid([FieldError(field, problem)], what="argument", run_id=run_id)
