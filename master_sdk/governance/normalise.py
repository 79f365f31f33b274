"""Text normalisation that every detector sees first.

Personal data and secrets are written to be read by people, and people do not see invisible
characters or the difference between a full-width at sign (U+FF20) and ``@``. So before any
detector runs, text is folded to what it reads as:

* **NFKC** compatibility forms: full-width letters, digits and punctuation (a whole
  full-width e-mail address), the small commercial at (U+FE6B), ligatures, superscript
  digits and the no-break space become their plain forms, and Unicode dashes and the minus
  sign (U+2010-U+2015, U+2212) a hyphen;
* **invisible format characters are removed**: zero-width space, non-joiner and joiner
  (U+200B-U+200D), direction marks and embeddings (U+200E/F, U+202A-U+202E), word joiner and
  the invisible operators (U+2060-U+206F), the byte-order mark / zero-width no-break space
  (U+FEFF), the soft hyphen (U+00AD), the combining grapheme joiner, variation selectors, the
  Hangul fillers and the tag characters (U+E0000-U+E0FFF).

Detection runs on the folded text and every finding is mapped back to the span of the
original text it came from, so what is replaced is what was written (invisible characters
inside it included). ASCII text, and text already in NFKC without invisible characters, is
returned as ``None`` after two C-speed checks: the fast path of clean text costs nothing more.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["INVISIBLE", "normalise"]

#: Characters removed before detection (a regex character class body).
INVISIBLE = (
    "\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
    "\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\U000e0000-\U000e0fff"
)
_INVISIBLE_RE = re.compile(f"[{INVISIBLE}]")
_NON_ASCII_RE = re.compile(r"[^\x00-\x7f]+")
# dashes and minus signs that NFKC keeps: read as "-" (an SSN written with en dashes)
_DASHES = dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63", "-")
# what NFKC leaves but folding changes
_FOLDED_RE = re.compile(f"[{INVISIBLE}{''.join(_DASHES)}]")


def normalise(text: str) -> tuple[str, list[int]] | None:
    """Fold ``text`` for detection; ``None`` when it is already folded.

    Returns:
        ``(folded, source)`` where ``source[i]`` is the index in ``text`` of the character
        that produced ``folded[i]``: a finding ``(a, b)`` in ``folded`` is
        ``(source[a], source[b - 1] + 1)`` in ``text``.

    Example:
        >>> normalise("bob\\u200b@example.com")[0]
        'bob@example.com'
        >>> normalise("plain ascii") is None
        True
    """
    if text.isascii():
        return None
    if unicodedata.is_normalized("NFKC", text) and _FOLDED_RE.search(text) is None:
        return None
    pieces: list[str] = []
    source: list[int] = []
    last = 0
    for m in _NON_ASCII_RE.finditer(text):
        start, end = m.span()
        pieces.append(text[last:start])
        source.extend(range(last, start))
        for i in range(start, end):
            ch = text[i]
            if _INVISIBLE_RE.match(ch):
                continue
            folded = _DASHES.get(ch) or unicodedata.normalize("NFKC", ch)
            if _INVISIBLE_RE.search(folded):
                folded = _INVISIBLE_RE.sub("", folded)
            pieces.append(folded)
            source.extend([i] * len(folded))
        last = end
    pieces.append(text[last:])
    source.extend(range(last, len(text)))
    return "".join(pieces), source


def fold(text: str) -> str:
    """``text`` as detectors see it (NFKC, invisible characters removed)."""
    folded = normalise(text)
    return text if folded is None else folded[0]
