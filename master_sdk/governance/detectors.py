"""Detectors for personal data and credentials in free text.

:func:`scan` returns every validated detection in a string. It sits on a hot path where almost
every string is clean, so it works in two steps:

1. Cheap gates run in C (``in``, ``str.count``, ``str.lower``) and decide which detectors can
   possibly match: a string without "@" never runs the e-mail detector, one with fewer than 13
   digits never runs the card detector, and a string that is exactly a UUID, an ISO date-time,
   a plain number or a hex digest runs none of the digit detectors.
2. A detector that passes its gate runs a regular expression that starts with a literal (``+``,
   ``0``, ``sk-``, ``eyJ``...) or a digit, so the regex engine skips in C to candidate positions;
   a validator (Luhn, mod-97, octet ranges, IPv6 grouping, token shape) confirms each candidate.
   Keyword-anchored detectors (``password=``, ``Bearer``, ``aws``) find the keyword with
   ``str.find`` and match only the text after it.

Every scan is linear in the length of its input: a boundary lookbehind placed after the first
character refuses to start inside a run the pattern already rejected, and long runs use
possessive quantifiers (``{m,n}+``) or atomic groups, so no failed match backtracks through them.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Callable, Mapping
from itertools import accumulate
from types import MappingProxyType

from master_sdk.governance.redaction_validators import (
    IBAN_LENGTHS,
    aws_secret_ok,
    card_ok,
    iban_ok,
    ipv4_ok,
    ipv6_ok,
    looks_like_token,
    ssn_ok,
)

#: A detection: ``(kind, start, end)`` with ``end`` exclusive.
Hit = tuple[str, int, int]

_A = re.ASCII
_DIGITS = "0123456789"
_ALNUM = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _run_regex(
    pattern: re.Pattern[str],
    kind: str,
    text: str,
    hits: list[Hit],
    check: Callable[[str], bool] | None = None,
    group: int = 0,
) -> None:
    for m in pattern.finditer(text):
        if check is None or check(m.group(group)):
            hits.append((kind, m.start(group), m.end(group)))


# ------------------------------------------------------------------------------------- email

_LOCAL_CHARS = frozenset(_ALNUM | set("._%+-"))
# Internationalised addresses (bücher@exämple.de) have letters of any script in both parts.
_EMAIL_DOMAIN_RE = re.compile(
    r"(?:[^\W_](?:[^\W_]|-){0,62}\.){1,8}(?:[^\W\d_]|xn--[a-z0-9\-]{1,59}){2,24}(?![^\W_]|-)"
)


def _local_char(ch: str) -> bool:
    return ch in _LOCAL_CHARS or (not ch.isascii() and ch.isalnum())


def _scan_email(text: str, hits: list[Hit]) -> None:
    # Anchored on "@" with str.find: a regex would have to try every position of the local part.
    at = text.find("@")
    while at >= 0:
        m = _EMAIL_DOMAIN_RE.match(text, at + 1)
        if m is not None:
            start = at
            floor = max(0, at - 65)
            while start > floor and _local_char(text[start - 1]):
                start -= 1
            if (
                0 < at - start <= 64
                and (start == 0 or not _local_char(text[start - 1]))
                # git@host:org/repo is an SSH remote, not a mailbox.
                and not (text.startswith(":", m.end()) and text[start:at] == "git")
            ):
                hits.append(("email", start, m.end()))
        at = text.find("@", at + 1)


# -------------------------------------------------------------------------- URL credentials

# scheme://user:password@host - only "user:password" is replaced so the host stays readable.
# The password may hold "@" (greedy to the last one before the path), never "/" or spaces.
_USERINFO_RE = re.compile(r"([^\s/?#@:<>\"'`]{0,128}:[^\s/?#<>\"'`]{1,256})@")
_SCHEME_CHARS = frozenset(_ALNUM | set("+.-"))


def _scan_url_credentials(text: str, hits: list[Hit]) -> None:
    i = text.find("://")
    while i >= 0:
        if i > 0 and text[i - 1] in _SCHEME_CHARS:
            m = _USERINFO_RE.match(text, i + 3)
            if m is not None:
                hits.append(("url_credentials", m.start(1), m.end(1)))
        i = text.find("://", i + 3)


SLACK_WEBHOOK_RE = re.compile(
    r"https?://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_/\-]{8,300}+"
)

# ------------------------------------------------------------------------------ private keys

PRIVATE_KEY_RE = re.compile(
    r"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----"
    r"(?:(?:[^\-]|-(?!----))*+-----END[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----"
    # No END line (a truncated log line): take the base64 body that follows.
    r"|(?:[A-Za-z0-9+/=\s]|\\[nrt]){0,8192}+)"
)

# ------------------------------------------------------------------------------ tokens, keys


def _prefixed(prefix: str, body: str) -> re.Pattern[str]:
    """Compile ``prefix`` + ``body`` for a token that must not continue a longer word.

    The boundary lookbehind comes after the literal prefix so the engine can jump between
    occurrences of the prefix instead of trying every position.
    """
    n = len(prefix)
    return re.compile(
        rf"{re.escape(prefix)}(?<![A-Za-z0-9_\-].{{{n}}}){body}(?![A-Za-z0-9_\-])", _A
    )


JWT_RE = _prefixed("eyJ", r"[A-Za-z0-9_\-]{5,}+\.[A-Za-z0-9_\-]{2,}+\.[A-Za-z0-9_\-]*+")


def _openai_ok(key: str) -> bool:
    # "sk-" also starts hyphenated prose; a key body has a digit or a capital letter.
    return any(c.isdigit() or c.isupper() for c in key[3:])


OPENAI_RE = _prefixed("sk-", r"(?:ant-|proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,300}+")
AWS_KEY_ID_RE = re.compile(
    r"A(?:KIA|SIA|BIA|CCA)(?<![A-Za-z0-9_\-].{4})[A-Z0-9]{16}(?![A-Za-z0-9_\-])"
)
GITHUB_RE = _prefixed("gh", r"[pousr]_[A-Za-z0-9]{30,255}+")
GITHUB_PAT_RE = _prefixed("github_pat_", r"[A-Za-z0-9_]{22,255}+")
GITLAB_RE = _prefixed("glpat-", r"[A-Za-z0-9_\-]{20,255}+")
SLACK_TOKEN_RE = _prefixed("xox", r"[abeoprs]-[A-Za-z0-9\-]{10,255}+")
STRIPE_RE = re.compile(
    r"[spr]k_(?<![A-Za-z0-9_\-].{3})(?:live|test)_[A-Za-z0-9]{10,255}+(?![A-Za-z0-9_\-])"
)
GOOGLE_RE = _prefixed("AIza", r"[0-9A-Za-z_\-]{35}")

# AWS secret access keys are 40 base64 characters with no prefix of their own, so they are only
# taken within 40 characters after "aws" or "secret" on the same line (aws_secret_access_key=...,
# "SecretAccessKey": "...", AWS secret: ...) and only with mixed case, which rules out 40-hex git
# SHAs.
_AWS_TAIL_RE = re.compile(r"[^\r\n]{0,40}?(?<![A-Za-z0-9/+=])([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])")

# ------------------------------------------------------------------- bearer and authorization

_TOKEN_CHARS = frozenset(_ALNUM | set("_-"))
_BEARER_TAIL_RE = re.compile(r"[ \t]+([A-Za-z0-9._~+/=\-]{8,4096}+)")

# The scheme word is atomic: once "Basic " is read it cannot be re-read as the credential,
# which keeps "Authorization: Basic <AUTHORIZATION>" stable on a second pass.
_AUTH_TAIL_RE = re.compile(
    r"[\"']?[ \t]*[:=][ \t]*[\"']?"
    r"(?>(?:([A-Za-z][A-Za-z0-9\-]{1,24})[ \t]+)?)([^\s\"'<>,;]{1,4096}+)"
)
# Schemes whose credential is a list of parameters rather than one token.
_PARAM_SCHEMES = frozenset({"digest", "aws4-hmac-sha256", "hoba", "mutual", "oauth"})


def _keyword_starts(low: str, keyword: str, text: str) -> list[int]:
    """Positions of ``keyword`` in ``low`` that do not continue a token (``xbearer``)."""
    out = []
    i = low.find(keyword)
    while i >= 0:
        if i == 0 or text[i - 1] not in _TOKEN_CHARS:
            out.append(i)
        i = low.find(keyword, i + 1)
    return out


def _scan_bearer(text: str, low: str, hits: list[Hit]) -> None:
    for i in _keyword_starts(low, "bearer", text):
        m = _BEARER_TAIL_RE.match(text, i + 6)
        if m is not None and looks_like_token(m.group(1)):
            hits.append(("bearer", m.start(1), m.end(1)))


def _scan_authorization(text: str, low: str, hits: list[Hit]) -> None:
    i = low.find("authorization")
    while i >= 0:
        before = text[i - 1] if i else " "
        if before not in _TOKEN_CHARS or low[max(0, i - 6) : i] == "proxy-":
            m = _AUTH_TAIL_RE.match(text, i + 13)
            if m is not None:
                scheme = (m.group(1) or "").lower()
                start, end = m.span(2)
                if scheme in _PARAM_SCHEMES:
                    line_end = text.find("\n", end)
                    hits.append(("authorization", start, len(text) if line_end < 0 else line_end))
                elif looks_like_token(m.group(2)):
                    kind = "bearer" if scheme == "bearer" else "authorization"
                    hits.append((kind, start, end))
        i = low.find("authorization", i + 1)


# --------------------------------------------------------------------- credential assignment

# password=..., "api_key": "...", client_secret='...', ?token=..., X-Api-Key: ... The key must
# end with the keyword (so max_tokens, password_hash and secret_santa are not keys) and be at
# most 30 characters longer than it. After "=" any value is taken; after ":" an unquoted value
# must look like a token and not be a number, which keeps JSON valid ("token": 123 stays) and
# prose ("Password: must be...") alone.
_CREDENTIAL_KEYWORDS = (
    "password", "passwd", "passphrase", "secret", "token",
    "apikey", "api_key", "api-key", "accesskey", "access_key", "access-key",
)  # fmt: skip
_CREDENTIAL_TAIL_RE = re.compile(
    r"(?![A-Za-z0-9_])[\"']?[ \t]*(?:(=)[ \t]*[\"']?|:[ \t]*([\"'])?)([^\s\"'<>&,;]{1,512}+)"
)


def _scan_credential(text: str, low: str, hits: list[Hit]) -> None:
    for keyword in _CREDENTIAL_KEYWORDS:
        i = low.find(keyword)
        while i >= 0:
            key_start = i
            while key_start > 0 and i - key_start < 31 and text[key_start - 1] in _ALNUM:
                key_start -= 1
            if i - key_start <= 30 and (key_start == 0 or text[key_start - 1] not in _ALNUM):
                m = _CREDENTIAL_TAIL_RE.match(text, i + len(keyword))
                if m is not None:
                    value = m.group(3)
                    quoted_or_assigned = m.group(1) is not None or m.group(2) is not None
                    if quoted_or_assigned or (
                        looks_like_token(value) and not value.replace(".", "").isdigit()
                    ):
                        hits.append(("credential", m.start(3), m.end(3)))
            i = low.find(keyword, i + 1)


def _scan_aws_secret(text: str, low: str, hits: list[Hit]) -> None:
    for keyword in ("aws", "secret"):
        i = low.find(keyword)
        while i >= 0:
            m = _AWS_TAIL_RE.match(text, i + len(keyword))
            if m is not None and aws_secret_ok(m.group(1)):
                hits.append(("api_key", m.start(1), m.end(1)))
            i = low.find(keyword, i + 1)


# ------------------------------------------------------------------------------------- phone

# International: "+" then 7-40 digits, each optionally after one separator; parenthesised groups
# ("+44 (0)20 ...") allowed. The digit count is checked (and trailing groups trimmed) in code.
PHONE_INTL_RE = re.compile(
    r"\+(?<![\w+]\+)[1-9](?:[ .\-]?(?:\([0-9]{1,5}\)|[0-9])){6,40}+(?!\w)", _A
)
# The same number glued to the end of one just found ("+44 20 7946 0958+44 20 7946 0958"): the
# "+" follows a digit there, which the lookbehind above refuses in order to leave base64 alone.
_PHONE_INTL_NEXT_RE = re.compile(
    r"\+[1-9](?:[ .\-]?(?:\([0-9]{1,5}\)|[0-9])){6,40}+(?!\w)", _A
)
# North American: 555-123-4567, 555.123.4567, 1-555-123-4567, 1 (555) 123-4567.
PHONE_US_RE = re.compile(
    r"[0-9](?<![\w+.\-][0-9])"
    r"(?:(?<=1)[ .\-](?:\([0-9]{3}\)[ ]?|[0-9]{3}[ .\-])|[0-9]{2}[ .\-])"
    r"[0-9]{3}[ .\-][0-9]{4}(?!\w|[.\-][0-9])",
    _A,
)
# Starting with "(": (555) 123-4567, and trunk-0 area codes such as (030) 123456.
PHONE_PAREN_RE = re.compile(
    r"\((?<![\w+.\-]\()"
    r"(?:[0-9]{3}\)[ ]?[0-9]{3}[ .\-][0-9]{4}|0[0-9]{2,4}\)[ \-][0-9]{3,8}(?:[ \-][0-9]{3,4})?)"
    r"(?!\w|[.\-][0-9])",
    _A,
)
# National with a trunk 0: 020 7946 0958, 0161 496 0000, 07700 900123, 030 123456.
PHONE_TRUNK_RE = re.compile(
    r"0(?<![\w+.\-]0)[0-9]{2,4}[ \-][0-9]{3,8}(?:[ \-][0-9]{3,4})?(?!\w|[.\-][0-9])", _A
)
_DIGIT_KINDS = frozenset({"phone", "card", "ssn"})
_PHONE_SEP_RE = re.compile(r"[ .\-]")
_DIGIT_RE = re.compile(r"[0-9]")


def _digit_count(s: str) -> int:
    return sum(map(s.count, _DIGITS))


def _scan_phone_intl(text: str, hits: list[Hit]) -> None:
    for first in PHONE_INTL_RE.finditer(text):
        m: re.Match[str] | None = first
        while m is not None:
            end = _add_phone_intl(m, hits)
            m = _PHONE_INTL_NEXT_RE.match(text, end) if end else None


def _add_phone_intl(m: re.Match[str], hits: list[Hit]) -> int:
    """Record ``m`` if its digits make a phone number; return where it ended, or 0 if not."""
    span = m.group()
    n = _digit_count(span)
    # E.164 allows 15 digits; a longer run is a number followed by another number, so drop
    # trailing groups rather than let the whole number through.
    while n > 15:
        cut = max((s.start() for s in _PHONE_SEP_RE.finditer(span)), default=-1)
        if cut <= 0:
            break
        span = span[:cut]
        n = _digit_count(span)
    if 8 <= n <= 15:
        hits.append(("phone", m.start(), m.start() + len(span)))
        return m.start() + len(span)
    return 0


def _national_phone_ok(s: str) -> bool:
    return 9 <= _digit_count(s) <= 12


# -------------------------------------------------------------------------- card, SSN, IBAN

# The first digit is a major industry identifier of a payment network (2-6: airlines, travel,
# banking); that excludes epoch timestamps in ms/us and most database ids (leading 1 or 9).
CARD_RE = re.compile(
    r"[2-6](?<![\w.\-][2-6])(?:"
    r"[0-9]{12,18}"
    r"|[0-9]{3}[ .\-/][0-9]{4}[ .\-/][0-9]{4}[ .\-/][0-9]{1,4}(?:[ .\-/][0-9]{1,3})?"
    r"|(?<=3)[0-9]{3}[ .\-/][0-9]{6}[ .\-/][0-9]{4,5}"
    r")(?![\w\-]|[.,][0-9])",
    _A,
)
# ddd-dd-dddd, or with single spaces or dots instead of the dashes (one kind throughout).
SSN_RE = re.compile(
    r"[0-9](?<![\w\-][0-9])(?<![0-9][ .][0-9])[0-9]{2}(?P<s>[ .\-])[0-9]{2}(?P=s)[0-9]{4}"
    r"(?![\w\-]|[ .][0-9])",
    _A,
)
# Nine bare digits are an SSN only right after a word that says so ("SSN 123456789",
# "social security no: 123-45-6789"): alone they are any number.
_SSN_BARE_RE = re.compile(r"[^0-9\n]{0,24}?(?<![\w\-])([0-9]{9})(?![\w\-]|[.,][0-9])", _A)
_SSN_WORDS = ("ssn", "social", "soc sec", "ss#", "ss #", "ss no", "taxpayer")
# Anchored on the check digits (a digit prefix is fast to find); the country code is checked by
# the lookbehind and the match is widened by two characters in code.
IBAN_RE = re.compile(
    r"[0-9](?<=(?<![A-Za-z0-9])[A-Za-z]{2}[0-9])[0-9](?:[ ]?[A-Za-z0-9]){10,32}+", _A
)


def _scan_iban(text: str, pos: int, hits: list[Hit], invalid: list[tuple[int, int]]) -> None:
    """Add a valid IBAN whose check digits start at ``pos`` to ``hits``.

    The span of IBAN-shaped text that fails mod-97 goes to ``invalid``: it is not redacted, and
    neither are the digit groups inside it that happen to pass Luhn or look like a phone number.
    """
    # 34 characters at most, plus the spaces of the printed form, minus the country code.
    for m in IBAN_RE.finditer(text, pos, pos + 40):
        start = m.start() - 2
        cand = text[start : m.end()]
        length = IBAN_LENGTHS.get(cand[:2].upper())
        if length is None:
            continue
        # Take exactly the country's number of characters: either unbroken, or printed in
        # groups of four separated by single spaces.
        compact = cand.replace(" ", "")
        if len(compact) < length:
            continue
        if cand[:length].isalnum():
            end = length
        else:
            end = length + (length - 1) // 4
            printed = cand[:end]
            if len(printed) < end or any(
                (ch == " ") != (i % 5 == 4) for i, ch in enumerate(printed)
            ):
                continue
        after = start + end
        if after < len(text) and text[after] in _ALNUM:
            continue
        if iban_ok(compact[:length]):
            hits.append(("iban", start, after))
        else:
            invalid.append((start, after))


def _scan_ssn_context(text: str, low: str, hits: list[Hit]) -> None:
    for word in _SSN_WORDS:
        i = low.find(word)
        while i >= 0:
            if i == 0 or not low[i - 1].isalpha():
                m = _SSN_BARE_RE.match(text, i + len(word))
                if m is not None and ssn_ok(m.group(1)):
                    hits.append(("ssn", m.start(1), m.end(1)))
            i = low.find(word, i + 1)


# ---------------------------------------------------------------------------------------- IP

IPV4_RE = re.compile(
    r"[0-9](?<![\w.][0-9])[0-9]{0,2}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}(?!\w|\.[0-9])", _A
)
IPV6_RE = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}+"
    r"(?:(?:[0-9]{1,3}\.){3}[0-9]{1,3}|[0-9A-Fa-f]{1,4})?(?![\w:]|\.\w)",
    _A,
)

# "::" or a group between two colons: the regex engine jumps between colons to find these, and
# only the run of hex digits, colons and dots around one is matched against IPV6_RE.
_IPV6_ANCHOR_RE = re.compile(r"::|:[0-9A-Fa-f]{1,4}:")
_IPV6_CHARS = frozenset("0123456789abcdefABCDEF:.")


def _scan_ipv6(text: str, hits: list[Hit]) -> None:
    size = len(text)
    pos = 0
    while (anchor := _IPV6_ANCHOR_RE.search(text, pos)) is not None:
        lo, hi = anchor.span()
        floor, ceiling = max(0, lo - 45), min(size, hi + 45)
        while lo > floor and text[lo - 1] in _IPV6_CHARS:
            lo -= 1
        while hi < ceiling and text[hi] in _IPV6_CHARS:
            hi += 1
        for m in IPV6_RE.finditer(text, lo, min(size, hi + 2)):
            if ipv6_ok(m.group()):
                hits.append(("ip", m.start(), m.end()))
        pos = hi


# Whole strings of these shapes are everywhere in trace events and never hold a detection.
_PLAIN_RE = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|[0-9]{4}-[0-9]{2}-[0-9]{2}(?:[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,9})?)?"
    r"(?:Z|[+\-][0-9]{2}:?[0-9]{2})?)?"
    r"|-?[0-9]{1,12}(?:\.[0-9]{1,12})?"
    # git SHAs (short, SHA-1, SHA-256) and MD5: lengths no IBAN or card number has
    r"|(?=(?:[0-9a-f]{7,12}|[0-9a-f]{32}|[0-9a-f]{40}|[0-9a-f]{64})$)[0-9]*[a-f][0-9a-f]*",
    _A,
)


_PLAIN_FIRST = frozenset("0123456789abcdefABCDEF-")

# ------------------------------------------------------------------------------------- scan


def scan(text: str) -> list[Hit]:
    """Return every validated detection in ``text``; detections may overlap.

    Example:
        >>> scan("mail bob@example.com")
        [('email', 5, 20)]
    """
    hits: list[Hit] = []
    size = len(text)
    # Gates are chains of "in" tests rather than any(...) over tuples: on the clean strings that
    # dominate trace events the gates are the whole cost, and a generator costs ten "in" tests.
    if size < 4 or (size <= 64 and text[0] in _PLAIN_FIRST and _PLAIN_RE.fullmatch(text)):
        return hits
    if "@" in text:
        _scan_email(text, hits)
    if "://" in text:
        if "@" in text:
            _scan_url_credentials(text, hits)
        if "hooks.slack.com" in text:
            _run_regex(SLACK_WEBHOOK_RE, "webhook", text, hits)
    # Every key or token below is at least 20 characters long (AKIA + 16 is the shortest; a
    # real JWT is longer), and short strings are the common case.
    if size >= 20:
        if "PRIVATE KEY" in text:
            _run_regex(PRIVATE_KEY_RE, "private_key", text, hits)
        if "eyJ" in text:
            _run_regex(JWT_RE, "jwt", text, hits)
        if "sk-" in text:
            _run_regex(OPENAI_RE, "api_key", text, hits, _openai_ok)
        if "AKIA" in text or "ASIA" in text or "ABIA" in text or "ACCA" in text:
            _run_regex(AWS_KEY_ID_RE, "api_key", text, hits)
        if "gh" in text and "_" in text:
            _run_regex(GITHUB_RE, "api_key", text, hits)
        if "github_pat_" in text:
            _run_regex(GITHUB_PAT_RE, "api_key", text, hits)
        if "glpat-" in text:
            _run_regex(GITLAB_RE, "api_key", text, hits)
        if "xox" in text:
            _run_regex(SLACK_TOKEN_RE, "api_key", text, hits)
        if "_live_" in text or "_test_" in text:
            _run_regex(STRIPE_RE, "api_key", text, hits)
        if "AIza" in text:
            _run_regex(GOOGLE_RE, "api_key", text, hits)

    low = text.lower()
    if len(low) != size:
        # Some non-ASCII characters lower to two; keep positions aligned with the text.
        low = text.translate(_ASCII_LOWER)
    if size >= 43 and ("aws" in low or "secret" in low):
        _scan_aws_secret(text, low, hits)
    if size >= 15 and "bearer" in low:
        _scan_bearer(text, low, hits)
    if ":" in text or "=" in text:
        if "authorization" in low:
            _scan_authorization(text, low, hits)
        if "pass" in low or "secret" in low or "token" in low or "key" in low:
            _scan_credential(text, low, hits)
        if "::" in text or text.count(":") >= 7:
            _scan_ipv6(text, hits)

    if size >= 12 and ("ss" in low or "soc" in low or "tax" in low):
        _scan_ssn_context(text, low, hits)
    if size < 7:
        return hits
    # Finding no digit is cheaper with the regex engine on short strings and with memchr-based
    # "in" on long ones.
    if not (_DIGIT_RE.search(text) if size < 64 else any(map(text.__contains__, _DIGITS))):
        return hits
    if "+" in text:
        _scan_phone_intl(text, hits)
    _scan_digit_clusters(text, hits)
    return hits


_LETTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
# A run of at least four digits joined by up to three of " ().-" at a time: phone numbers, card
# numbers, SSNs and IPv4 addresses each lie inside one. The second branch catches the two check
# digits of an IBAN (two letters at a word start before them), whose run may be shorter.
_CLUSTER_RE = re.compile(
    r"[0-9](?:(?:[ ().\-/]{0,3}+[0-9]){3,}+"
    r"|(?<=(?<![A-Za-z0-9])[A-Za-z]{2}[0-9])[0-9])",
    _A,
)


def _scan_digit_clusters(text: str, hits: list[Hit]) -> None:
    """Run the digit detectors on the clusters of digits in ``text`` only.

    Clean text holds few clusters worth a look (dates, times and version numbers are short), so
    this costs one pass of the regex engine instead of one per detector. Each detector runs on
    a window two characters wider than the cluster on each side, which lets its boundary
    lookbehind and lookahead see the real neighbours.
    """
    size = len(text)
    # Card-shaped numbers that fail Luhn and IBAN-shaped text that fails mod-97 are order
    # numbers, references or typos: the phone numbers and SSNs seen inside them are dropped too.
    invalid: list[tuple[int, int]] = []
    first = len(hits)
    for m in _CLUSTER_RE.finditer(text):
        start, end = m.span()
        if (
            start >= 2
            and text[start - 1] in _LETTERS
            and text[start - 2] in _LETTERS
            and (start == 2 or text[start - 3] not in _ALNUM)
        ):
            _scan_iban(text, start, hits, invalid)
        length = end - start
        if length < 7:  # "1.1.1.1" is the shortest detection
            continue
        cluster = m.group()
        lo, hi = max(0, start - 2), min(size, end + 2)
        dots = cluster.count(".")
        if dots >= 3:
            _run_window(IPV4_RE, "ip", text, lo, hi, hits, ipv4_ok)
        if length < 9:
            continue
        dashes = cluster.count("-")
        digits = length - dots - dashes - cluster.count(" ") - cluster.count("(")
        digits -= cluster.count(")")
        if digits < 9:
            continue
        if dashes or dots == 2 or " " in cluster:
            _run_window(SSN_RE, "ssn", text, lo, hi, hits, ssn_ok)
        if "0" in cluster:
            _run_window(PHONE_TRUNK_RE, "phone", text, lo, hi, hits, _national_phone_ok)
        if "(" in text[lo:start]:
            _run_window(PHONE_PAREN_RE, "phone", text, lo, hi, hits, _national_phone_ok)
        if digits >= 10:
            _run_window(PHONE_US_RE, "phone", text, lo, hi, hits, None)
        if digits >= 13:
            for card in CARD_RE.finditer(text, lo, hi):
                if card_ok(card.group()):
                    hits.append(("card", card.start(), card.end()))
                else:
                    invalid.append(card.span())
    if invalid:
        hits[first:] = _outside(hits[first:], invalid)


def _outside(hits: list[Hit], invalid: list[tuple[int, int]]) -> list[Hit]:
    """Drop the phone, card and SSN hits that lie inside one of the ``invalid`` spans."""
    invalid.sort()
    starts = [s for s, _ in invalid]
    # reach[i]: the furthest end among invalid[: i + 1]; a hit starting at or after start i is
    # inside one of them exactly when it ends before that.
    reach = list(accumulate((e for _, e in invalid), max))
    kept = []
    for hit in hits:
        i = bisect_right(starts, hit[1]) - 1
        if hit[0] in _DIGIT_KINDS and i >= 0 and hit[2] <= reach[i]:
            continue
        kept.append(hit)
    return kept


def _run_window(
    pattern: re.Pattern[str],
    kind: str,
    text: str,
    lo: int,
    hi: int,
    hits: list[Hit],
    check: Callable[[str], bool] | None,
) -> None:
    for m in pattern.finditer(text, lo, hi):
        if check is None or check(m.group()):
            hits.append((kind, m.start(), m.end()))


#: Priority of each kind: when two detections overlap and neither contains the other, the
#: higher one is kept (URL credentials beat the "password@host" that looks like an e-mail).
KIND_PRIORITY: Mapping[str, int] = MappingProxyType(
    {
        "private_key": 100,
        "secret": 95,
        "url_credentials": 90,
        "webhook": 88,
        "jwt": 85,
        "api_key": 80,
        "bearer": 70,
        "authorization": 65,
        "credential": 60,
        "email": 50,
        "iban": 46,
        "card": 45,
        "ssn": 44,
        "ip": 42,
        "phone": 30,
    }
)
