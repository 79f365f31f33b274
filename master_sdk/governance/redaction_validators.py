"""Checks that turn a pattern match into a detection: checksums, ranges and shapes.

Each function takes the matched text and answers whether it is what it looks like: a card
number passes Luhn, an IBAN has its country's length and a valid mod-97 check, an IP address has
valid octets or groups, a credential looks machine-made rather than like a word of prose.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType


def luhn_ok(digits: str) -> bool:
    """Return True when ``digits`` (only ASCII digits) passes the Luhn checksum."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


#: IBAN length per country (ISO 13616 registry).
IBAN_LENGTHS: Mapping[str, int] = MappingProxyType({
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22,
    "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32,
    "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24,
    "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24, "SC": 31,
    "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28, "TL": 23,
    "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
})  # fmt: skip


def iban_ok(iban: str) -> bool:
    """Return True when ``iban`` (no spaces) has its country's length and a valid mod-97 check."""
    iban = iban.upper()
    if IBAN_LENGTHS.get(iban[:2]) != len(iban) or not iban.isalnum() or not iban.isascii():
        return False
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def ipv4_ok(s: str) -> bool:
    """Return True for a dotted quad with octets 0-255 and no leading zeros."""
    parts = s.split(".")
    return len(parts) == 4 and all(
        p.isdigit() and p.isascii() and len(p) <= 3 and (p == "0" or p[0] != "0") and int(p) < 256
        for p in parts
    )


_HEX = frozenset("0123456789abcdefABCDEF")


def ipv6_ok(s: str) -> bool:
    """Return True for a valid IPv6 address worth redacting.

    Accepts full, ``::``-compressed and IPv4-suffixed forms. A compressed form needs three
    written groups, or one group with a hex letter or four digits (``fe80::1``, ``2001:db8::``):
    ``::``, ``::1`` and ``1::3`` collide with slice and scope syntax in code (``a[::2]``,
    ``x[1::3]``, ``Foo::bar``) and name no host or person.
    """
    needed = 8
    written = 0
    if "." in s:
        head, _, tail = s.rpartition(":")
        if not ipv4_ok(tail):
            return False
        needed, written = 6, 2
        s = head + ":" if head.endswith(":") else head
    if s.count("::") > 1:
        return False
    if "::" in s:
        left, right = s.split("::")
        parts = (left.split(":") if left else []) + (right.split(":") if right else [])
        if len(parts) > needed - 1:
            return False
    else:
        parts = s.split(":")
        if len(parts) != needed:
            return False
    if not all(0 < len(p) <= 4 and _HEX.issuperset(p) for p in parts):
        return False
    return written > 0 or len(parts) >= 3 or any(len(p) == 4 or not p.isdigit() for p in parts)


def looks_like_token(s: str) -> bool:
    """Return True when ``s`` looks machine-generated rather than like a word of prose.

    Used where only context (``Bearer``, ``Authorization:``) marks a credential: a token has at
    least 8 characters and a digit, an inner capital or one of ``+/=_``, or is 24+ characters.
    """
    if len(s) < 8:
        return False
    if len(s) >= 24:
        return True
    return (
        any(c.isdigit() for c in s)
        or any(c.isupper() for c in s[1:])
        or any(c in "+/=_" for c in s)
    )


def ssn_ok(s: str) -> bool:
    """Return True for ddd-dd-dddd (or spaced, dotted, bare) outside the never-issued ranges
    (area 000, 666, 9xx; group 00; serial 0000)."""
    digits = s.replace("-", "").replace(" ", "").replace(".", "")
    if len(digits) != 9 or not digits.isdigit():
        return False
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


def card_ok(s: str) -> bool:
    """Return True when ``s`` (digits and one kind of separator: space, dash, dot or slash)
    holds 13-19 digits that pass Luhn."""
    digits = s.replace(" ", "").replace("-", "").replace(".", "").replace("/", "")
    return 13 <= len(digits) <= 19 and luhn_ok(digits)


def aws_secret_ok(s: str) -> bool:
    """Return True for 40 characters mixing capitals, small letters and digits or ``/+``."""
    return (
        any(c.isupper() for c in s)
        and any(c.islower() for c in s)
        and any(c.isdigit() or c in "/+" for c in s)
    )
