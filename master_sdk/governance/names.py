"""Canonical tool and model names: what allow-lists compare, and why a name is refused.

Allow-lists match names exactly. Nothing is normalised into a match: a name that is not
already canonical is refused with the reason, because normalising (``" Echo "`` to
``"echo"``, a Cyrillic ``\\u0435`` to a Latin ``e``) could turn a name nobody allowed into one
somebody did. A canonical name:

* is 1 to 128 ASCII characters: a letter or ``_``, then letters, digits, ``_``, ``-``, and
  ``.`` between parts (``echo``, ``gpt-4.1-mini``). ASCII only, so no look-alike letter
  (Cyrillic, Greek, fullwidth, mathematical alphabets) can pass for a Latin one;
* has no surrounding or inner spaces and no invisible characters (zero-width spaces,
  joiners, bidi controls);
* carries no wrapper prefix a model API adds (``functions.echo``, ``tools.echo``) and no
  provider prefix (``openai/gpt-4o``, ``openai:gpt-4o``): allow-lists name the tool as
  registered and the model by its logical name in ``configs/models.yaml``.

Case is significant and never folded: ``Echo`` is not ``echo``. Refusals suggest the name
that was probably meant (see :func:`suggest`).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from types import MappingProxyType

__all__ = ["MAX_NAME_LENGTH", "fold", "name_problem", "skeleton", "suggest"]

MAX_NAME_LENGTH = 128
_CANONICAL = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*(?:\.[A-Za-z0-9_\-]+)*")
_WRAPPER_PREFIXES = ("functions.", "function.", "tools.", "tool.")
# Unicode categories that render as nothing or move text around.
_INVISIBLE = frozenset({"Cc", "Cf", "Co", "Cn", "Zl", "Zp"})
# Letters that look like Latin ones, for suggestions only (never for matching).
_CONFUSABLES = MappingProxyType(
    str.maketrans(
        "аеорсухіјѕԁһԛԝАВЕКМНОРСТХІЈЅαβεικνοτυχΑΒΕΗΙΚΜΝΟΡΤΥΧ",
        "aeopcyxijsdhqwABEKMHOPCTXIJSabeiknotuxABEHIKMNOPTYX",
    )
)


def name_problem(name: object) -> str | None:
    """Why ``name`` is not a canonical tool or model name, or None when it is.

    Example:
        >>> name_problem("echo") is None
        True
        >>> name_problem("functions.echo")
        "carries the wrapper prefix 'functions.'; write 'echo'"
    """
    if not isinstance(name, str):
        return f"must be a string, not {type(name).__name__}"
    if not name:
        return "is empty"
    if len(name) > MAX_NAME_LENGTH:
        return f"is longer than {MAX_NAME_LENGTH} characters"
    for char in name:
        if unicodedata.category(char) in _INVISIBLE:
            return f"contains the invisible character {_describe(char)}"
    if name != name.strip():
        return f"has surrounding spaces; write {name.strip()!r}"
    if not name.isascii():
        compatible = unicodedata.normalize("NFKC", name)
        if compatible != name and compatible.isascii():
            return f"contains compatibility characters (NFKC form {compatible!r}); names are ASCII"
        char = next(c for c in name if not c.isascii())
        return (
            f"contains the non-ASCII character {_describe(char)}; names are ASCII so that "
            "look-alike letters cannot pass for others"
        )
    lowered = name.lower()
    for prefix in _WRAPPER_PREFIXES:
        if lowered.startswith(prefix) and len(name) > len(prefix):
            rest = name[len(prefix) :]
            return f"carries the wrapper prefix {name[: len(prefix)]!r}; write {rest!r}"
    if "/" in name or ":" in name:
        return (
            "carries a provider prefix; write the tool's registered name or the model's "
            "logical name from configs/models.yaml"
        )
    if _CANONICAL.fullmatch(name) is None:
        return (
            "must start with a letter or '_' and hold only letters, digits, '_', '-', and "
            "'.' between parts"
        )
    return None


def skeleton(name: str) -> str:
    """``name`` as it looks: compatibility-normalised, invisible characters dropped,
    look-alike letters mapped to Latin ones, case-folded (the example has fullwidth
    letters, a zero-width space and Cyrillic letters).

    Example:
        >>> skeleton("\\uff27\\uff2f\\u200b\\u0422\\u041e")
        'goto'
    """
    text = unicodedata.normalize("NFKC", name)
    text = "".join(c for c in text if unicodedata.category(c) not in _INVISIBLE)
    return text.translate(_CONFUSABLES).casefold()


def fold(name: str) -> str:
    """A loose key for suggestions: the :func:`skeleton`, without spaces, wrapper or
    provider prefixes.

    Never used to match an allow-list, only to say which name was probably meant.
    """
    text = skeleton(name).strip()
    for separator in ("/", ":"):
        text = text.rpartition(separator)[2]
    for prefix in _WRAPPER_PREFIXES:
        if text.startswith(prefix):
            text = text[len(prefix) :]
            break
    return "".join(text.split())


def suggest(name: str, candidates: Iterable[str]) -> str | None:
    """The candidate ``name`` most likely meant (same :func:`fold`), if exactly one.

    Example:
        >>> suggest(" Echo", ["echo", "count"])
        'echo'
    """
    key = fold(name)
    found = [c for c in candidates if c != name and fold(c) == key]
    return found[0] if len(found) == 1 else None


def _describe(char: str) -> str:
    return f"{char!r} (U+{ord(char):04X} {unicodedata.name(char, 'unnamed')})"
