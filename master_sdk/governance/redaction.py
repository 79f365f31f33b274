"""The redaction engine: the one place that scrubs personal data and secrets.

Everything master_sdk traces, logs, stores, displays or exports goes through a :class:`Redactor`
first. Each detection is replaced by the placeholder of its kind (:data:`PLACEHOLDERS`):

- ``<EMAIL>`` e-mail addresses.
- ``<PHONE>`` international numbers (``+44 20 7946 0958``, ``+49 30 123456``, 8-15 digits),
  North American ones (``(555) 123-4567``, ``555-123-4567``, ``1-800-555-0199``) and national
  ones with a trunk 0 (``020 7946 0958``, ``(030) 1234567``). Bare digit runs are not phones.
- ``<CARD>`` 13-19 digit card numbers, bare or grouped by spaces or dashes, Luhn-valid, with a
  first digit of 2-6 (every card network; epoch timestamps and most ids start with 1).
- ``<IBAN>`` IBANs of the country's length with a valid mod-97 check, unbroken or in groups of
  four, any letter case.
- ``<SSN>`` US social security numbers ``ddd-dd-dddd`` outside the never-issued ranges.
- ``<IP>`` IPv4 addresses (octets 0-255, no leading zeros) and IPv6 addresses (full,
  ``::``-compressed, IPv4-suffixed).
- ``<API_KEY>`` OpenAI and Anthropic (``sk-``, ``sk-proj-``, ``sk-ant-``), AWS key ids
  (``AKIA``/``ASIA``...), AWS secret keys (40 characters after "aws" or "secret" on the same
  line), GitHub (``ghp_``, ``gho_``, ``ghu_``, ``ghs_``, ``ghr_``, ``github_pat_``), GitLab
  (``glpat-``), Slack (``xoxb-``...), Stripe (``sk_live_``...) and Google (``AIza``) keys.
- ``<JWT>`` three base64url segments starting ``eyJ``.
- ``<BEARER>`` the token after ``Bearer``; ``<AUTHORIZATION>`` the credential of any other
  ``Authorization:`` header. The header name and scheme word stay.
- ``<PRIVATE_KEY>`` PEM private key blocks, BEGIN line to END line.
- ``<URL_CREDENTIALS>`` the ``user:password`` of ``scheme://user:password@host``; the scheme,
  host and path stay.
- ``<WEBHOOK>`` Slack incoming-webhook URLs.
- ``<CREDENTIAL>`` the value in ``password=...``, ``"api_key": "..."``, ``client_secret: '...'``,
  ``?access_token=...``, ``X-Api-Key: ...``.
- ``<SECRET>`` every value of the secrets file, raw, JSON-escaped or URL-encoded.

Decisions worth knowing:

* Escaped text is searched as it reads: a string holding ``\\"``, ``\\u0040``, ``\\n`` or
  ``%40``-style escapes is also decoded (up to three levels, for JSON inside JSON) and what is
  found there replaces the matching escaped span, so ``{\\"to\\": \\"a\\u0040b.io\\"}``
  becomes ``{\\"to\\": \\"<EMAIL>\\"}`` and stays valid JSON.
* A four-part version that is a valid IPv4 address (``1.2.3.4``) is redacted as ``<IP>``: the
  two cannot be told apart. One written with a prefix (``v1.2.3.4``) or with an out-of-range
  part (``10.0.0.256``) is not. ``::``, ``::1`` and ``1::3`` are not IPv6 addresses here
  (slices and scopes in code look the same).
* UUIDs, git SHAs, dates, times, plain numbers, card-shaped numbers that fail Luhn and IBANs
  with a wrong checksum (digit groups inside them included) are left alone.
* :meth:`Redactor.value` redacts dictionary keys as well as values (an e-mail address used as a
  key is still an e-mail address); two keys that redact to the same text are kept apart as
  ``"<EMAIL>"`` and ``"<EMAIL>#2"``. Integers that are valid card numbers become ``"<CARD>"``.
  Other objects (floats, bytes, models) pass through: dump models to plain data first.
* Redaction is idempotent: placeholders are never matched again, and :meth:`Redactor.text`
  repeats until its output is stable.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from html.entities import html5 as html5_entities
from itertools import islice
from types import MappingProxyType
from typing import Any, NamedTuple, cast

from master_sdk.governance.detectors import KIND_PRIORITY, Hit, scan
from master_sdk.governance.normalise import normalise
from master_sdk.governance.redaction_validators import luhn_ok, ssn_ok
from master_sdk.governance.secret_forms import SecretMatcher

__all__ = ["MAX_DEPTH", "PLACEHOLDERS", "TOO_DEEP", "Finding", "Redactor"]

#: Placeholder that replaces each kind of detection.
PLACEHOLDERS: Mapping[str, str] = MappingProxyType(
    {
        "email": "<EMAIL>",
        "phone": "<PHONE>",
        "card": "<CARD>",
        "iban": "<IBAN>",
        "ssn": "<SSN>",
        "ip": "<IP>",
        "api_key": "<API_KEY>",
        "jwt": "<JWT>",
        "bearer": "<BEARER>",
        "authorization": "<AUTHORIZATION>",
        "private_key": "<PRIVATE_KEY>",
        "url_credentials": "<URL_CREDENTIALS>",
        "webhook": "<WEBHOOK>",
        "credential": "<CREDENTIAL>",
        "secret": "<SECRET>",
    }
)

#: Containers nested deeper than this (reference cycles included) are replaced by TOO_DEEP
#: rather than passed through unscanned.
MAX_DEPTH = 100
TOO_DEEP = "<TOO_DEEP>"
# isinstance() takes these as tuples: an `a | b` written in a call builds a union on every call
_CONTAINER_TYPES = (dict, list, tuple, set, frozenset)
_SETS = (set, frozenset)

# Strings up to this length that were found clean are remembered, up to this many.
_CLEAN_CACHE_MAX_LEN = 512
_CLEAN_CACHE_SIZE = 4096
# text() re-runs until its output is stable; one extra pass is the norm, the bound is a guard.
_MAX_PASSES = 4
# JSON in a JSON string in a JSON string is the deepest nesting seen in practice.
_MAX_DECODE_LEVELS = 3
# Overlap clusters larger than this are only produced by adversarial input; they are redacted
# as one span instead of being settled pairwise (which is quadratic).
_MAX_CLUSTER = 64

_ESCAPE_RE = re.compile(
    r"\\(?:u[0-9A-Fa-f]{4}|x[0-9A-Fa-f]{2}|[\"\\/bfnrt])|%[0-7][0-9A-Fa-f]"
    # HTML character references: decimal, hex and named (``&#64;``, ``&#x40;``, ``&commat;``)
    # (numeric ones also without the semicolon, as browsers read them)
    r"|&(?:#[0-9]{1,7};?|#[xX][0-9A-Fa-f]{1,6};?|[A-Za-z][A-Za-z0-9]{1,31};)"
)
_SIMPLE_ESCAPES = MappingProxyType({
    '"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"
})  # fmt: skip
_PROTECTED_RE = re.compile("|".join(re.escape(p) for p in (*PLACEHOLDERS.values(), TOO_DEEP)))


class Finding(NamedTuple):
    """One detection: its kind (a key of :data:`PLACEHOLDERS`) and its span in the input."""

    kind: str
    start: int
    end: int


class _Decoded(NamedTuple):
    """A string with one level of escapes decoded, and how to map positions back."""

    text: str
    at: list[int]  # decoded position of each escape, ascending
    shift: list[int]  # shift[i]: extra source characters used by the escapes before escape i

    def source_pos(self, pos: int) -> int:
        """Map a start or (exclusive) end position in the decoded text to the source text."""
        return pos + self.shift[bisect_left(self.at, pos)]


def _decode(text: str) -> _Decoded | None:
    """Decode JSON (``\\"``, ``\\n``, ``\\u0040``), ``\\x40`` and ASCII ``%40`` escapes once."""
    pieces: list[str] = []
    at: list[int] = []
    shift = [0]
    last = 0
    size = 0
    for m in _ESCAPE_RE.finditer(text):
        token = m.group()
        char = _unescape(token)
        if char is None:
            continue
        literal = text[last : m.start()]
        pieces.append(literal)
        size += len(literal)
        pieces.append(char)
        at.append(size)
        size += 1
        shift.append(shift[-1] + len(token) - 1)
        last = m.end()
    if not at:
        return None
    pieces.append(text[last:])
    return _Decoded("".join(pieces), at, shift)


def _unescape(token: str) -> str | None:
    """The one character an escape stands for, or None (an unknown entity, a non-character)."""
    if token[0] == "%":
        return chr(int(token[1:], 16))
    if token[0] == "\\":
        return chr(int(token[2:], 16)) if token[1] in "ux" else _SIMPLE_ESCAPES[token[1]]
    if token[1] == "#":
        digits = token[3:] if token[2] in "xX" else token[2:]
        digits = digits.rstrip(";")
        code = int(digits, 16) if token[2] in "xX" else int(digits)
        return chr(code) if 0 < code < 0x110000 and not 0xD800 <= code < 0xE000 else None
    named = html5_entities.get(token[1:])
    # only entities of one character keep the position map simple; the others are never
    # part of an address, a number or a key
    return named if named is not None and len(named) == 1 else None


def _settle(cluster: list[Hit]) -> list[Hit]:
    """Choose among overlapping detections.

    A detection that strictly contains others replaces them (an API key that contains a secrets
    value is still all redacted); detections of one kind that overlap are merged; otherwise the
    higher priority wins, then the longer span.
    """
    if len(cluster) > _MAX_CLUSTER:
        kind = max(cluster, key=lambda h: KIND_PRIORITY[h[0]])[0]
        return [(kind, min(h[1] for h in cluster), max(h[2] for h in cluster))]
    order = sorted(cluster, key=lambda h: (-KIND_PRIORITY[h[0]], h[1] - h[2], h[1]))
    chosen: list[Hit] = []
    for kind, start, end in order:
        over = [c for c in chosen if c[1] < end and start < c[2]]
        if not over:
            chosen.append((kind, start, end))
        elif all(
            c[0] == kind or (start <= c[1] and c[2] <= end and end - start > c[2] - c[1])
            for c in over
        ):
            for c in over:
                chosen.remove(c)
            chosen.append(
                (kind, min(start, *(c[1] for c in over)), max(end, *(c[2] for c in over)))
            )
    chosen.sort(key=lambda h: h[1])
    return chosen


def _resolve(hits: list[Hit]) -> list[Finding]:
    """Turn raw detections into disjoint findings sorted by position."""
    if not hits:
        return []
    hits.sort(key=lambda h: (h[1], -h[2]))
    out: list[Finding] = []
    cluster = [hits[0]]
    cluster_end = hits[0][2]
    for hit in islice(hits, 1, None):
        if hit[1] < cluster_end:
            cluster.append(hit)
            cluster_end = max(cluster_end, hit[2])
            continue
        out.extend(Finding(*h) for h in (_settle(cluster) if len(cluster) > 1 else cluster))
        cluster = [hit]
        cluster_end = hit[2]
    out.extend(Finding(*h) for h in (_settle(cluster) if len(cluster) > 1 else cluster))
    return out


def _without_overlaps(base: list[Finding], extra: list[Finding]) -> list[Finding]:
    """Return the findings of ``extra`` that overlap none of ``base`` (both sorted, disjoint)."""
    if not base:
        return extra
    starts = [f.start for f in base]
    keep: list[Finding] = []
    for f in extra:
        i = bisect_left(starts, f.end)
        # base is disjoint and sorted, so base[i-1] has the largest end of those starting
        # before f ends.
        if i and base[i - 1].end > f.start:
            continue
        keep.append(f)
    return keep


class Redactor:
    """Replace personal data and secrets with typed placeholders.

    Build one per secrets file and reuse it: construction prepares the secrets, and the
    methods are deterministic and safe to share between threads (the only state they touch is
    a bounded set of short strings already found clean).

    Args:
        secrets: Values to redact wherever they appear, e.g. every leaf of the secrets file
            (``Settings.secret_values``). Matching is exact and case-sensitive; their
            JSON-escaped and URL-encoded forms are matched too.
        min_secret_length: Secrets shorter than this are ignored, so a value such as ``"1"``
            or ``"on"`` does not redact every occurrence of itself.

    Example:
        >>> r = Redactor(["hunter2-pw"])
        >>> r.text("mail bob@example.com, pw hunter2-pw, from 10.0.0.7")
        'mail <EMAIL>, pw <SECRET>, from <IP>'
        >>> clean = {"step": "echo", "n": 3}
        >>> r.value(clean) is clean
        True
    """

    def __init__(self, secrets: Iterable[str] = (), *, min_secret_length: int = 4) -> None:
        self._secrets = SecretMatcher(secrets, min_length=min_secret_length)
        # Short strings found clean before (dict keys, step names, enum values) repeat on every
        # event; remembering them skips the scan. Only clean strings are kept, so the cache
        # never holds anything the redactor would hide.
        self._clean: set[str] = set()

    def __repr__(self) -> str:
        # Never show the secrets themselves.
        return f"Redactor(<{self._secrets.count} secret forms>)"

    def text(self, s: str) -> str:
        """Redact one string.

        Returns ``s`` itself (the same object) when there is nothing to redact.

        Example:
            >>> Redactor().text("call +44 20 7946 0958 or visit 2001:db8::1")
            'call <PHONE> or visit <IP>'
        """
        if s in self._clean:
            return s
        found = self.findings(s)
        if not found:
            if len(s) <= _CLEAN_CACHE_MAX_LEN:
                if len(self._clean) >= _CLEAN_CACHE_SIZE:
                    self._clean.clear()
                self._clean.add(s)
            return s
        out = _replace(s, found)
        for _ in range(_MAX_PASSES - 1):
            found = self.findings(out)
            if not found:
                break
            out = _replace(out, found)
        return out

    def findings(self, s: str) -> list[Finding]:
        """Return what one pass of :meth:`text` would replace, sorted and non-overlapping.

        Example:
            >>> Redactor().findings("ssn 123-45-6789")
            [Finding(kind='ssn', start=4, end=15)]
        """
        escaped = "\\" in s or "%" in s or "&" in s
        found = self._scan_folded(s)
        if escaped:
            found = self._scan_decoded(s, found)
        if found and "<" in s:
            protected = [Finding("", *m.span()) for m in _PROTECTED_RE.finditer(s)]
            found = _without_overlaps(protected, found)
        return found

    def _scan_folded(self, s: str) -> list[Finding]:
        """Scan ``s`` as it reads (NFKC, invisible characters removed); spans refer to ``s``."""
        folded = normalise(s)
        if folded is None:
            return self._scan(s)
        text, source = folded
        return [
            Finding(f.kind, source[f.start], source[f.end - 1] + 1)
            for f in self._scan(text)
            if f.end > f.start
        ]

    def value(self, obj: Any) -> Any:
        """Redact every string in nested dicts, lists, tuples and sets, keys included.

        Returns ``obj`` itself when nothing inside needed redaction, so clean data costs no
        allocation; otherwise a copy with only the changed containers rebuilt.

        Example:
            >>> Redactor().value({"to": ["a@b.io", "c"], "n": 1})
            {'to': ['<EMAIL>', 'c'], 'n': 1}
        """
        return self._value(obj, 0)

    def _scan(self, s: str) -> list[Finding]:
        hits = scan(s)
        self._secrets.find(s, hits)
        return _resolve(hits) if hits else []

    def _scan_decoded(self, s: str, found: list[Finding]) -> list[Finding]:
        """Add what decoding JSON and URL escapes in ``s`` reveals to ``found``."""
        view = s
        source_maps: list[_Decoded] = []
        for _ in range(_MAX_DECODE_LEVELS):
            decoded = _decode(view)
            if decoded is None:
                break
            source_maps.append(decoded)
            view = decoded.text
            deeper = self._scan_folded(view)
            if not deeper:
                continue
            for level in reversed(source_maps):
                deeper = [
                    Finding(f.kind, level.source_pos(f.start), level.source_pos(f.end))
                    for f in deeper
                ]
            # What is found in decoded text wins: its span covers whole escapes, whereas the raw
            # view may cut one in half (the "n" of "\nbob@x.io").
            found = sorted([*deeper, *_without_overlaps(deeper, found)], key=_start)
        return found

    def _value(self, obj: Any, depth: int) -> Any:
        kind = type(obj)
        if kind is str:
            return obj if obj in self._clean else self.text(obj)
        if kind is float or kind is bool or obj is None:
            return obj
        if kind is int:
            return "<CARD>" if _is_card_number(obj) else obj
        # plain dicts and lists, the common containers, skip the subclass checks
        if kind is dict:
            return TOO_DEEP if depth >= MAX_DEPTH else self._dict(obj, depth + 1)
        if kind is not list:
            if isinstance(obj, str):
                return self.text(obj)
            if isinstance(obj, bool):
                return obj
            if isinstance(obj, int):
                return "<CARD>" if _is_card_number(obj) else obj
            if not isinstance(obj, _CONTAINER_TYPES):
                return obj
            if depth >= MAX_DEPTH:
                return TOO_DEEP
            if isinstance(obj, dict):
                return self._dict(obj, depth + 1)
        elif depth >= MAX_DEPTH:
            return TOO_DEEP
        items: list[Any] | None = None
        clean = self._clean
        for i, item in enumerate(obj):
            # Strings are the common case: the cache test is inlined to skip a call per item.
            new = item if type(item) is str and item in clean else self._value(item, depth + 1)
            if items is None:
                if new is item:
                    continue
                items = list(islice(obj, i))
            items.append(new)
        if items is None:
            return obj
        if isinstance(obj, tuple):
            # A NamedTuple keeps its type (its constructor takes fields, hence _make).
            return cast(Any, type(obj))._make(items) if hasattr(obj, "_fields") else tuple(items)
        if isinstance(obj, _SETS):
            return frozenset(items) if isinstance(obj, frozenset) else set(items)
        return items

    def _dict(self, obj: dict[Any, Any], depth: int) -> Any:
        pairs: list[tuple[Any, Any]] | None = None
        clean = self._clean
        for i, (key, val) in enumerate(obj.items()):
            # Keys repeat on every event and sit in the clean cache; test it before any call.
            new_key = key if type(key) is not str or key in clean else self.text(key)
            kind = type(val)
            if kind is str:
                new_val = val if val in clean else self.text(val)
                if len(val) == 9 and val.isdigit() and _names_ssn(key) and ssn_ok(val):
                    new_val = "<SSN>"
            elif kind is float or kind is bool or val is None:
                new_val = val
            elif kind is int:
                # counters, sizes, timestamps: too short for a card number (checked inline)
                new_val = val if -(10**12) < val < 10**12 or not _is_card_number(val) else "<CARD>"
                if 10**8 <= val < 10**9 and _names_ssn(key) and ssn_ok(str(val)):
                    new_val = "<SSN>"
            else:
                new_val = self._value(val, depth)
            if pairs is None:
                if new_key is key and new_val is val:
                    continue
                pairs = list(islice(obj.items(), i))
            pairs.append((new_key, new_val))
        if pairs is None:
            return obj
        out: dict[Any, Any] = {}
        for key, val in pairs:
            if key in out:
                n = 2
                while f"{key}#{n}" in out:
                    n += 1
                key = f"{key}#{n}"
            out[key] = val
        return out


def _names_ssn(key: Any) -> bool:
    """Whether a dictionary key says its value is a social security number."""
    if type(key) is not str:
        return False
    low = key.lower()
    return "ssn" in low or "social" in low


def _start(f: Finding) -> int:
    return f.start


def _replace(s: str, found: list[Finding]) -> str:
    parts: list[str] = []
    last = 0
    for f in found:
        parts.append(s[last : f.start])
        parts.append(PLACEHOLDERS[f.kind])
        last = f.end
    parts.append(s[last:])
    return "".join(parts)


def _is_card_number(n: int) -> bool:
    if -(10**12) < n < 10**12 or not -(10**19) < n < 10**19:
        return False
    digits = str(abs(n))
    return 13 <= len(digits) <= 19 and digits[0] in "23456" and luhn_ok(digits)
