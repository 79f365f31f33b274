"""Every message that leaves the library is redacted: exceptions included.

Error messages are built from user data — a flow file's step ids and constants, a secrets
file's values echoed by a validation error, a tool's exception text, an input's field names —
and an exception's text cannot know which strings are secrets. So the public API redacts what
it raises at its own boundary: :func:`redacting_errors` wraps every public method (and
property) of :class:`~master_sdk.workbench.Workbench` and :class:`~master_sdk.workbench.Run`,
and :func:`redact_exception` rewrites, in place, the arguments and message fields of the
exception and of every exception chained to it (``__cause__``/``__context__``: a notebook
traceback prints those too). The exception keeps its type, its traceback and its fields;
only the text changes. The CLI prints through the workbench's redaction as well.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from master_sdk.errors import FieldError

__all__ = ["redact_exception", "redacting_errors"]

Redact = Callable[[Any], Any]
T = TypeVar("T")
E = TypeVar("E", bound=BaseException)
F = TypeVar("F", bound=Callable[..., Any])

# Fields of master_sdk errors that hold text built from user data.
_FIELDS = (
    "file", "flow", "step", "field", "hint", "reason", "key", "raw", "value", "limit", "run_id",
)  # fmt: skip
# An exception chain longer than this is cut (a cycle, or something adversarial).
_MAX_CHAIN = 32


def redact_exception(exc: E, redact: Redact) -> E:
    """Redact ``exc`` and the exceptions chained to it in place; return ``exc``.

    Example:
        >>> from master_sdk.governance.redaction import Redactor
        >>> err = ValueError("mail bob@example.com")
        >>> str(redact_exception(err, Redactor().value))
        'mail <EMAIL>'
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(seen) < _MAX_CHAIN:
        seen.add(id(current))
        _redact_one(current, redact)
        current = current.__cause__ or current.__context__
    return exc


def _redact_one(exc: BaseException, redact: Redact) -> None:
    try:
        args = exc.args
        clean = redact(args)
        if clean is not args:
            exc.args = tuple(clean)
        fields = vars(exc)
    except Exception:  # an exotic exception type must not hide the original one
        return
    for name in _FIELDS:
        value = fields.get(name)
        if value is not None:
            clean = redact(value)
            if clean is not value:
                fields[name] = clean
    errors = fields.get("errors")
    if isinstance(errors, list) and all(isinstance(e, FieldError) for e in errors):
        fields["errors"] = [FieldError(redact(e.path), redact(e.message)) for e in errors]
    notes = fields.get("__notes__")
    if isinstance(notes, list):
        fields["__notes__"] = [redact(n) for n in notes]


def _wrap(fn: F, redactor_of: Callable[[Any], Redact]) -> F:
    @functools.wraps(fn)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(self, *args, **kwargs)
        except Exception as exc:
            redact_exception(exc, redactor_of(self))
            raise

    return wrapper  # type: ignore[return-value]  # same signature, by functools.wraps


def redacting_errors(redactor_of: Callable[[Any], Redact]) -> Callable[[type[T]], type[T]]:
    """Class decorator: every public method and property getter of the class redacts the
    exceptions it raises with ``redactor_of(instance)``.

    Example:
        >>> @redacting_errors(lambda self: self.redact)
        ... class Api:
        ...     def __init__(self, redact): self.redact = redact
        ...     def fail(self): raise ValueError("key sk-abc")
    """

    def decorate(cls: type[T]) -> type[T]:
        for name, member in list(vars(cls).items()):
            if name.startswith("_") or isinstance(member, staticmethod | classmethod):
                continue
            if isinstance(member, property) and member.fget is not None:
                wrapped = property(
                    _wrap(member.fget, redactor_of), member.fset, member.fdel, member.__doc__
                )
                setattr(cls, name, wrapped)
            elif callable(member):
                setattr(cls, name, _wrap(member, redactor_of))
        return cls

    return decorate
