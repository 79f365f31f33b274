"""Who did something: ``by=`` values are audit data, so they must be identifiers.

The approval audit, the trace and the run list store ``by`` as given, for as long as the
store lives, and show it in every frame. So an identity is checked before anything acts on it:

* a string of 1 to :data:`MAX_IDENTITY_LENGTH` (128) characters;
* letters and digits (any script), and ``. _ @ + -`` and single spaces inside; no leading or
  trailing space, no control or invisible characters, and already in NFKC form (no
  full-width look-alikes of another name);
* **never a value of the secrets file, nor anything redaction would change** (an e-mail
  address, a phone number, a key): an identity is stored and shown verbatim, so one that
  would have to be redacted could not identify anyone in the audit. Use a user name
  (``ana``, ``ana.lopez``, ``reviewer-2``) instead.

A refused identity raises :class:`~master_sdk.errors.InputInvalid` naming the field ``by``
and the rule; the message never repeats the value.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from typing import Any

from master_sdk.errors import FieldError, InputInvalid

__all__ = ["MAX_IDENTITY_LENGTH", "check_identity"]

#: The longest identity accepted.
MAX_IDENTITY_LENGTH = 128

_ALLOWED = re.compile(r"[^\W_](?:[\w.@+\-]| (?! ))*", re.UNICODE)


def _problem(by: Any, redact: Callable[[Any], Any]) -> str | None:
    if not isinstance(by, str):
        return f"must be a string (a user name), not {type(by).__name__}"
    if not by:
        return "must not be empty"
    if len(by) > MAX_IDENTITY_LENGTH:
        return f"is {len(by)} characters long; the limit is {MAX_IDENTITY_LENGTH}"
    if unicodedata.normalize("NFKC", by) != by or not by.isprintable():
        return (
            "holds invisible, control or compatibility (e.g. full-width) characters; "
            "use plain letters and digits"
        )
    if _ALLOWED.fullmatch(by) is None or by.endswith(" "):
        return (
            "may hold only letters, digits, '.', '_', '@', '+', '-' and single spaces, "
            "starting with a letter or digit"
        )
    if redact(by) != by:
        return (
            "would be redacted (it is, or holds, a secrets-file value or personal data such "
            "as an e-mail address); identities are stored as given, so use a user name"
        )
    return None


def check_identity(
    by: Any,
    *,
    redact: Callable[[Any], Any],
    run_id: str | None = None,
    step: str | None = None,
) -> str:
    """Return ``by`` when it is a valid identity.

    Args:
        by: who acts (``by=`` of an action, or the workbench's default user).
        redact: the workbench's redaction (secrets file and detectors).

    Raises:
        InputInvalid: ``by`` is not an identity; the field is ``by``, the value is not shown.

    Example:
        >>> check_identity("ana.lopez", redact=lambda v: v)
        'ana.lopez'
    """
    problem = _problem(by, redact)
    if problem is not None:
        raise InputInvalid(
            [FieldError("by", problem)], what="identity (by=)", run_id=run_id, step=step
        )
    return str(by)
