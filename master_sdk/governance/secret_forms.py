"""Every value of the secrets file, in every form it is commonly written in.

A secret leaks as much in base64 or hex as in clear, so each value is matched as:

* written, and folded as detectors see text (:mod:`master_sdk.governance.normalise`);
* in any letter case (matching is case-insensitive: ``HUNTER2-PW``, ``Hunter2-Pw``);
* JSON-escaped and URL-encoded (``quote``, ``quote_plus``), in either hex case;
* **base64**, standard and URL-safe alphabets, with or without padding, at each of the three
  byte alignments it can have inside a longer encoded text (the characters that depend only
  on the secret's own bytes are matched, so ``base64("user:" + secret)`` is found too);
* **hex** of its UTF-8 bytes, either case, also with the bytes separated by spaces or colons.

HTML entities (named, decimal, hex), JSON ``\\u`` escapes and percent-encoding of every
character are decoded by the redactor before matching (see :mod:`.redaction`), and
invisible characters inserted into a value are removed by normalisation, so those forms
need no entry here.

All forms sit in one Aho-Corasick automaton (``pyahocorasick``, in C), so a text is read once
whatever the number of secrets and forms: clean text costs one pass.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Iterator
from urllib.parse import quote, quote_plus

import ahocorasick

from master_sdk.governance.detectors import Hit
from master_sdk.governance.normalise import fold

__all__ = ["MIN_ENCODED_LENGTH", "SecretMatcher", "secret_forms"]

#: Encoded forms (base64 cores, hex) shorter than this are not matched: a few base64
#: characters occur by chance in any long encoded text.
MIN_ENCODED_LENGTH = 8

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_URLSAFE = str.maketrans("+/", "-_")
_ENCODED_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=_-")


def lower(text: str) -> str:
    """``text`` in lower case with positions kept (some non-ASCII letters lower to two)."""
    low = text.lower()
    return low if len(low) == len(text) else text.translate(_ASCII_LOWER)


def base64_cores(data: bytes) -> Iterator[str]:
    """The base64 characters that depend on ``data`` alone, at each byte alignment.

    At alignment ``k`` the value starts ``k`` bytes into a 3-byte group; the characters that
    also cover bytes before or after it (and any ``=`` padding) are left out.
    """
    size = len(data)
    for k in range(3):
        encoded = base64.b64encode(b"\0" * k + data + b"\0\0").decode("ascii")
        core = encoded[-(-8 * k // 6) : (8 * (k + size)) // 6]
        yield core
        yield core.translate(_URLSAFE)


def _plain_forms(secret: str) -> Iterator[str]:
    for value in dict.fromkeys((secret, secret.strip(), fold(secret))):
        yield value
        yield json.dumps(value)[1:-1]
        yield json.dumps(value, ensure_ascii=False)[1:-1]
        yield quote(value, safe="")
        yield quote(value)
        yield quote_plus(value, safe="")


def encoded_forms(secret: str) -> Iterator[str]:
    """The base64 cores and hex of one secret value (long enough to be told from chance)."""
    for value in dict.fromkeys((secret, fold(secret))):
        data = value.encode("utf-8")
        for form in (*base64_cores(data), data.hex(), data.hex(" "), data.hex(":")):
            if len(form) >= MIN_ENCODED_LENGTH:
                yield form


def secret_forms(secret: str) -> Iterator[str]:
    """Yield the forms of one secret value that are matched literally (before lowering)."""
    yield from _plain_forms(secret)
    yield from encoded_forms(secret)


class SecretMatcher:
    """Finds every form of every secret in a text, case-insensitively, in one pass.

    Args:
        secrets: the values (e.g. every leaf of the secrets file).
        min_length: values shorter than this (after stripping) are ignored, so a value such
            as ``"1"`` or ``"on"`` does not redact every occurrence of itself.
    """

    __slots__ = ("_automaton", "count", "shortest")

    def __init__(self, secrets: Iterable[str], *, min_length: int = 4) -> None:
        forms: set[str] = set()
        encoded: set[str] = set()
        for secret in secrets:
            for variant in (secret, secret.strip()):
                if len(variant) < min_length:
                    continue
                forms.update(
                    lower(form) for form in secret_forms(variant) if len(form) >= min_length
                )
                encoded.update(lower(form) for form in encoded_forms(variant))
        encoded -= {lower(form) for s in secrets for form in _plain_forms(s)}
        self.count = len(forms)
        self.shortest = min(map(len, forms), default=0)
        self._automaton: ahocorasick.Automaton | None = None
        if forms:
            automaton = ahocorasick.Automaton()
            for form in forms:
                automaton.add_word(form, (len(form), form in encoded))
            automaton.make_automaton()
            self._automaton = automaton

    def find(self, text: str, hits: list[Hit], low: str | None = None) -> None:
        """Append a ``("secret", start, end)`` hit for every form found in ``text``.

        Args:
            low: ``lower(text)`` if the caller has it already.
        """
        automaton = self._automaton
        if automaton is None or len(text) < self.shortest:
            return
        for end, (size, encoded) in automaton.iter(lower(text) if low is None else low):
            start, stop = end - size + 1, end + 1
            if encoded:
                # the whole encoded token goes: the characters next to the core carry bits
                # of the secret too (and the padding says how many)
                while start > 0 and text[start - 1] in _ENCODED_CHARS:
                    start -= 1
                while stop < len(text) and text[stop] in _ENCODED_CHARS:
                    stop += 1
            hits.append(("secret", start, stop))
