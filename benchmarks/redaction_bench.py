"""Benchmark of the redaction engine: speed, and recall / precision per kind.

Run from the repository root:

    PYTHONPATH=. .venv/bin/python benchmarks/redaction_bench.py [--runs 5] [--json PATH]

Everything is generated from a seeded RNG, so two runs measure the same corpus:

* throughput (MB/s, median and min-max of ``--runs`` runs) on ~1 MB of clean and of PII-dense
  text, redacted line by line (as trace events are) and as one string;
* latency of ``Redactor.value`` on small trace-event dicts, clean and with PII;
* time to redact pathological 1 MB inputs built to make regexes backtrack;
* recall and precision per kind on a labelled corpus of positives and hard negatives placed in
  log lines, JSON payloads (escaped, so spans move) and prose;
* recall per encoding of secrets-file values (case, base64 at every alignment in both
  alphabets with and without padding, hex, URL, HTML entities, JSON escapes, zero-width and
  full-width characters) and of disguised personal data (zero-width characters, full-width
  and entity-encoded ``@``, other card and SSN separators), beside the plain recall;
* false positives: lines of the clean corpus (and 2,000 run ids) that redaction changed.

The machine may be shared: a calibration figure (a fixed pure-Python loop) is printed so figures
from different runs can be compared.
"""

from __future__ import annotations

import argparse
import base64
import html
import ipaddress
import json
import random
import re
import statistics
import string
import sys
import time
import unicodedata
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from master_sdk.governance.redaction import PLACEHOLDERS, Redactor

SEED = 20240115
ALNUM = string.ascii_letters + string.digits


# ------------------------------------------------------------------------ sample makers


def _luhn_complete(body: str) -> str:
    """Append the Luhn check digit to ``body``."""
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return body + str((10 - total % 10) % 10)


def _group(digits: str, sizes: list[int], sep: str) -> str:
    out, i = [], 0
    for n in sizes:
        out.append(digits[i : i + n])
        i += n
    if i < len(digits):
        out.append(digits[i:])
    return sep.join(p for p in out if p)


def make_card(rng: random.Random, valid: bool = True) -> str:
    prefix, length = rng.choice(
        [("4", 16), ("4", 13), ("51", 16), ("55", 16), ("2221", 16), ("2720", 16), ("34", 15),
         ("37", 15), ("6011", 16), ("65", 16), ("3528", 16), ("36", 14), ("62", 19)]
    )  # fmt: skip
    body = prefix + "".join(rng.choices(string.digits, k=length - len(prefix) - 1))
    number = _luhn_complete(body)
    if not valid:
        number = number[:-1] + str((int(number[-1]) + rng.randint(1, 9)) % 10)
    sep = rng.choice(["", " ", "-"])
    if not sep:
        return number
    if length == 15:
        return _group(number, [4, 6, 5], sep)
    if length == 14:
        return _group(number, [4, 6, 4], sep)
    return _group(number, [4, 4, 4, 4], sep)


IBAN_FORMATS = {  # country: (length, BBAN alphabet pattern: d digit, a letter, c either)
    "GB": (22, "aaaadddddddddddddd"),
    "DE": (22, "dddddddddddddddddd"),
    "FR": (27, "ddddddddddcccccccccccdd"),
    "NL": (18, "aaaadddddddddd"),
    "ES": (24, "dddddddddddddddddddd"),
    "IT": (27, "addddddddddcccccccccccc"),
    "BE": (16, "dddddddddddd"),
    "CH": (21, "dddddcccccccccccc"),
    "NO": (15, "ddddddddddd"),
    "PL": (28, "dddddddddddddddddddddddd"),
}


def make_iban(rng: random.Random, valid: bool = True) -> str:
    country = rng.choice(sorted(IBAN_FORMATS))
    _, pattern = IBAN_FORMATS[country]
    pools = {"d": string.digits, "a": string.ascii_uppercase, "c": string.ascii_uppercase + "0123"}
    bban = "".join(rng.choice(pools[p]) for p in pattern)
    numeric = int("".join(str(int(c, 36)) for c in bban + country + "00"))
    check = 98 - numeric % 97
    if not valid:
        check = rng.choice([c for c in range(2, 99) if c != check])
    iban = f"{country}{check:02d}{bban}"
    if rng.random() < 0.5:
        return " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))
    return iban


def make_email(rng: random.Random) -> str:
    first = rng.choice(["alice", "bob", "j.smith", "maria-luisa", "o_neil", "dev+ci", "x1"])
    if rng.random() < 0.5:
        first += str(rng.randint(1, 999))
    domain = rng.choice(["example.com", "mail.example.co.uk", "corp-mail.io", "uni.edu", "x.org"])
    return f"{first}@{domain}"


def make_phone(rng: random.Random) -> str:
    # Formats 6 and 7 are ones the engine does not claim to detect (French national pairs and
    # bare ten-digit runs, which ids and counters share): they keep the recall figure honest.
    kind = rng.randrange(8)
    d = lambda n: "".join(rng.choices(string.digits, k=n))  # noqa: E731 - local shorthand
    if kind == 0:
        return f"+44 20 {d(4)} {d(4)}"
    if kind == 1:
        return f"+49 30 {d(6)}"
    if kind == 2:
        return f"+1 ({rng.randint(200, 999)}) {d(3)}-{d(4)}"
    if kind == 3:
        return f"({rng.randint(200, 999)}) {d(3)}-{d(4)}"
    if kind == 4:
        return f"{rng.randint(200, 999)}-{d(3)}-{d(4)}"
    if kind == 5:
        return f"0{rng.randint(20, 99)} {d(4)} {d(4)}"
    if kind == 6:
        return f"0{rng.randint(1, 9)} {d(2)} {d(2)} {d(2)} {d(2)}"
    return f"{rng.randint(2, 9)}{d(9)}"


def make_ssn(rng: random.Random, valid: bool = True) -> str:
    if valid:
        area = rng.choice([n for n in range(1, 900) if n != 666])
        return f"{area:03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"
    area = rng.choice(["000", "666", str(rng.randint(900, 999))])
    return f"{area}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"


def make_ipv4(rng: random.Random, valid: bool = True) -> str:
    octets = [rng.randint(0, 255) for _ in range(4)]
    if not valid:
        octets[rng.randrange(4)] = rng.randint(256, 999)
    return ".".join(map(str, octets))


def make_ipv6(rng: random.Random) -> str:
    addr = ipaddress.IPv6Address(rng.getrandbits(128))
    if rng.random() < 0.5:
        # Zero a run of groups so the compressed form has "::".
        groups = addr.exploded.split(":")
        start = rng.randrange(1, 6)
        for i in range(start, start + rng.randint(2, 3)):
            groups[i] = "0000"
        addr = ipaddress.IPv6Address(":".join(groups))
        return addr.compressed
    return addr.exploded if rng.random() < 0.5 else str(addr)


def _rand(rng: random.Random, n: int, alphabet: str = ALNUM) -> str:
    return "".join(rng.choices(alphabet, k=n))


def make_api_key(rng: random.Random) -> str:
    return rng.choice(
        [
            lambda: "sk-" + _rand(rng, 48),
            lambda: "sk-" + "proj-" + _rand(rng, 56, ALNUM + "_-"),
            lambda: "sk-" + "ant-api03-" + _rand(rng, 86, ALNUM + "_-"),
            lambda: "AKIA" + _rand(rng, 16, string.ascii_uppercase + string.digits),
            lambda: "ASIA" + _rand(rng, 16, string.ascii_uppercase + string.digits),
            lambda: rng.choice(["ghp", "gho", "ghu", "ghs", "ghr"]) + "_" + _rand(rng, 36),
            lambda: "github" + "_pat_" + _rand(rng, 22) + "_" + _rand(rng, 59),
            lambda: "glpat" + "-" + _rand(rng, 20, ALNUM + "_-"),
            lambda: (
                f"xox{rng.choice('bpars')}-{_rand(rng, 12, string.digits)}-"
                f"{_rand(rng, 13, string.digits)}-{_rand(rng, 24)}"
            ),
            lambda: rng.choice(["sk", "rk", "pk"]) + "_live_" + _rand(rng, 24),
            lambda: "sk_" + "test_" + _rand(rng, 24),
            lambda: "AI" + "za" + _rand(rng, 35, ALNUM + "_-"),
        ]
    )()


def _b64(rng: random.Random) -> str:
    user = _rand(rng, rng.randint(3, 10), string.ascii_lowercase)
    return base64.b64encode(f"{user}:{_rand(rng, 12)}".encode()).decode()


def _b64url(obj: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def make_jwt(rng: random.Random) -> str:
    header = {"alg": rng.choice(["HS256", "RS256"]), "typ": "JWT"}
    payload = {"sub": str(rng.randint(1, 10**9)), "iat": rng.randint(10**9, 2 * 10**9)}
    return f"{_b64url(header)}.{_b64url(payload)}.{_rand(rng, 43, ALNUM + '_-')}"


def make_private_key(rng: random.Random) -> str:
    label = rng.choice(["RSA PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY"])
    lines = [_rand(rng, 64, ALNUM + "+/") for _ in range(rng.randint(3, 8))]
    return f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----"


# ------------------------------------------------------------------------ labelled corpus

NEGATIVE_MAKERS: dict[str, Callable[[random.Random], str]] = {
    "uuid": lambda rng: str(uuid.UUID(int=rng.getrandbits(128))),
    "sha": lambda rng: _rand(rng, rng.choice([7, 12, 40, 64]), "0123456789abcdef"),
    "timestamp": lambda rng: (
        f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T"
        f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}Z"
    ),
    "version": lambda rng: ".".join(str(rng.randint(0, 20)) for _ in range(3)),
    "number": lambda rng: str(rng.randint(0, 10 ** rng.randint(1, 12))),
    "epoch_ms": lambda rng: str(rng.randint(1_600_000_000_000, 1_800_000_000_000)),
    "order": lambda rng: f"ORD-{rng.randint(2020, 2025)}-{rng.randint(0, 10**9):09d}",
    "bad_card": lambda rng: make_card(rng, valid=False),
    "bad_iban": lambda rng: make_iban(rng, valid=False),
    "bad_ssn": lambda rng: make_ssn(rng, valid=False),
    "bad_ipv4": lambda rng: make_ipv4(rng, valid=False),
    "sk_prose": lambda rng: rng.choice(["sk-learn", "task-runner", "sk-based approach"]),
    "mac": lambda rng: ":".join(f"{rng.randint(0, 255):02x}" for _ in range(6)),
    "slice": lambda rng: f"x[{rng.randint(0, 9)}::{rng.randint(1, 9)}]",
    "time": lambda rng: (
        f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}"
    ),
    "money": lambda rng: f"${rng.randint(1, 99_999):,}.{rng.randint(0, 99):02d}",
    # SSH remotes look like e-mail addresses; ISBNs and coordinates like phone numbers.
    "git_remote": lambda rng: f"git@github.com:{_rand(rng, 6).lower()}/{_rand(rng, 8).lower()}.git",
    "isbn": lambda rng: (
        f"978-{rng.randint(0, 9)}-{rng.randint(10, 99)}-{rng.randint(10**5, 10**6)}-1"
    ),
    "coordinates": lambda rng: f"{rng.uniform(-90, 90):.4f}, {rng.uniform(-180, 180):.4f}",
}

POSITIVE_MAKERS: dict[str, Callable[[random.Random], str]] = {
    "email": make_email,
    "phone": make_phone,
    "card": make_card,
    "iban": make_iban,
    "ssn": make_ssn,
    "ip": lambda rng: make_ipv4(rng) if rng.random() < 0.6 else make_ipv6(rng),
    "api_key": make_api_key,
    "jwt": make_jwt,
    "private_key": make_private_key,
}

WORDS = [
    *("the", "agent", "called", "tool", "summarize", "with", "input", "and", "returned"),
    *("status", "ok", "after", "retry", "step", "approval", "pending", "user", "review"),
    *("budget", "tokens", "model", "cost", "run", "flow", "product"),
]


@dataclass
class Labelled:
    text: str
    spans: list[tuple[str, int, int]] = field(default_factory=list)  # kind, start, end


def _prose(rng: random.Random, n: int) -> str:
    return " ".join(rng.choices(WORDS, k=n))


def _place(rng: random.Random, kind: str, sample: str, secrets: list[str]) -> Labelled:
    """Put one sample in a log line, a JSON payload or prose and record its span."""
    # Samples that are defined by their context carry it with them.
    label_start_offset = 0
    label_sample = sample
    if kind == "bearer":
        sample = "Authorization: Bearer " + sample
        label_start_offset = len("Authorization: Bearer ")
    elif kind == "url_credentials":
        user, pw = label_sample.split(":", 1)
        sample = f"postgres://{user}:{pw}@db{rng.randint(1, 9)}.internal:5432/app"
        label_start_offset = len("postgres://")
    elif kind == "authorization":
        sample = "Authorization: Basic " + sample
        label_start_offset = len("Authorization: Basic ")
    elif kind == "credential":
        key = rng.choice(["password", "DB_PASSWORD", "client_secret", "api_key"])
        sample = f"{key}={label_sample}"
        label_start_offset = len(key) + 1
    layout = rng.randrange(3)
    if layout == 0:
        prefix = f"2024-05-0{rng.randint(1, 9)} INFO {_prose(rng, 4)} value="
        text = prefix + sample + " " + _prose(rng, 3)
        start = len(prefix)
    elif layout == 1:
        escaped = json.dumps(sample)[1:-1]
        head = json.dumps({"event": _prose(rng, 2), "n": rng.randint(0, 99)})[:-1] + ', "data": "'
        text = head + escaped + '"}'
        if label_start_offset:
            label_start_offset = len(json.dumps(sample[:label_start_offset])[1:-1])
        label_sample = json.dumps(label_sample)[1:-1]
        start = len(head)
    else:
        prefix = _prose(rng, 5) + " "
        text = prefix + sample + ". " + _prose(rng, 4)
        start = len(prefix)
    if kind == "none":
        return Labelled(text)
    begin = start + label_start_offset
    return Labelled(text, [(kind, begin, begin + len(label_sample))])


def labelled_corpus(rng: random.Random, per_kind: int, secrets: list[str]) -> list[Labelled]:
    items: list[Labelled] = []
    for kind, maker in POSITIVE_MAKERS.items():
        items += [_place(rng, kind, maker(rng), secrets) for _ in range(per_kind)]
    items += [
        _place(rng, "bearer", _rand(rng, rng.randint(20, 40), ALNUM + "-._~"), secrets)
        for _ in range(per_kind)
    ]
    items += [
        _place(rng, "url_credentials", f"{_rand(rng, 6)}:{_rand(rng, 12)}", secrets)
        for _ in range(per_kind)
    ]
    items += [
        _place(rng, "credential", _rand(rng, rng.randint(6, 20), ALNUM + "!$"), secrets)
        for _ in range(per_kind)
    ]
    items += [_place(rng, "secret", rng.choice(secrets), secrets) for _ in range(per_kind)]
    items += [_place(rng, "authorization", _b64(rng), secrets) for _ in range(per_kind)]
    items += [
        _place(
            rng,
            "webhook",
            f"https://hooks.slack.com/services/T{_rand(rng, 8, string.ascii_uppercase)}/"
            f"B{_rand(rng, 8, string.ascii_uppercase)}/{_rand(rng, 24)}",
            secrets,
        )
        for _ in range(per_kind)
    ]
    for maker in NEGATIVE_MAKERS.values():
        items += [_place(rng, "none", maker(rng), secrets) for _ in range(per_kind)]
    rng.shuffle(items)
    return items


def score(redactor: Redactor, items: list[Labelled]) -> dict[str, dict[str, float]]:
    """Recall (labelled spans fully covered by a finding of their kind) and precision (findings
    that overlap a labelled span of their kind) per kind."""
    labels: Counter[str] = Counter()
    caught: Counter[str] = Counter()
    found: Counter[str] = Counter()
    correct: Counter[str] = Counter()
    for item in items:
        findings = redactor.findings(item.text)
        for kind, start, end in item.spans:
            labels[kind] += 1
            if any(f.kind == kind and f.start <= start and end <= f.end for f in findings):
                caught[kind] += 1
        for f in findings:
            found[f.kind] += 1
            if any(k == f.kind and f.start < e and s < f.end for k, s, e in item.spans):
                correct[f.kind] += 1
    out: dict[str, dict[str, float]] = {}
    for kind in sorted(set(labels) | set(found)):
        out[kind] = {
            "labels": labels[kind],
            "findings": found[kind],
            "recall": caught[kind] / labels[kind] if labels[kind] else float("nan"),
            "precision": correct[kind] / found[kind] if found[kind] else float("nan"),
        }
    return out


# ------------------------------------------------------------------------ encoded forms

_ZW = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad"]
_JSON_U = re.compile(r"\\u([0-9a-fA-F]{4})")


def _full_width(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


def _zero_width(rng: random.Random, text: str) -> str:
    chars = list(text)
    for _ in range(rng.randint(1, 3)):
        chars.insert(rng.randint(1, len(chars) - 1), rng.choice(_ZW))
    return "".join(chars)


def _b64_form(rng: random.Random, value: str, offset: int, alphabet: str, pad: bool) -> str:
    prefix = _rand(rng, offset + 3 * rng.randint(0, 3))
    enc = base64.b64encode if alphabet == "std" else base64.urlsafe_b64encode
    text = enc((prefix + value).encode()).decode()
    return text if pad else text.rstrip("=")


def secret_encodings() -> dict[str, Callable[[random.Random, str], str]]:
    """Each encoding of a secrets-file value the redactor claims to find."""
    forms: dict[str, Callable[[random.Random, str], str]] = {
        "upper": lambda rng, v: v.upper(),
        "lower": lambda rng, v: v.lower(),
        "swapcase": lambda rng, v: v.swapcase(),
        "hex": lambda rng, v: v.encode().hex(),
        "HEX": lambda rng, v: v.encode().hex().upper(),
        "url (quote)": lambda rng, v: quote(v, safe=""),
        "url (every byte)": lambda rng, v: "".join(f"%{b:02X}" for b in v.encode()),
        "html named": lambda rng, v: html.escape(v),
        "html decimal": lambda rng, v: "".join(f"&#{ord(c)};" for c in v),
        "html hex": lambda rng, v: "".join(f"&#x{ord(c):x};" for c in v),
        "json \\u escapes": lambda rng, v: "".join(f"\\u{ord(c):04x}" for c in v),
        "zero-width inserted": _zero_width,
        "full-width": lambda rng, v: _full_width(v),
    }
    for alphabet in ("std", "url"):
        for offset in range(3):
            for pad in (True, False):
                name = f"base64 {alphabet} +{offset}{'' if pad else ' nopad'}"
                forms[name] = lambda rng, v, a=alphabet, o=offset, p=pad: _b64_form(rng, v, o, a, p)
    return forms


def pii_encodings() -> dict[str, tuple[str, Callable[[random.Random], tuple[str, str]]]]:
    """Disguised personal data: name -> (kind, maker returning (written form, plain value))."""

    def email_with(change: Callable[[str], str]) -> Callable[[random.Random], tuple[str, str]]:
        def make(rng: random.Random) -> tuple[str, str]:
            plain = make_email(rng)
            return change(plain), plain

        return make

    def card_with(sep: str, digits: Callable[[str], str] = str) -> Callable[..., tuple[str, str]]:
        def make(rng: random.Random) -> tuple[str, str]:
            number = _luhn_complete("4" + "".join(rng.choices(string.digits, k=14)))
            return digits(sep.join(number[i : i + 4] for i in range(0, 16, 4))), number

        return make

    def ssn(written: Callable[[str], str]) -> Callable[[random.Random], tuple[str, str]]:
        def make(rng: random.Random) -> tuple[str, str]:
            plain = make_ssn(rng).replace("-", "")
            return written(plain), plain

        return make

    def zw(maker: Callable[[random.Random], str]) -> Callable[[random.Random], tuple[str, str]]:
        def make(rng: random.Random) -> tuple[str, str]:
            plain = maker(rng)
            return _zero_width(rng, plain), plain

        return make

    return {
        "email zero-width": ("email", zw(make_email)),
        "email full-width @": ("email", email_with(lambda e: e.replace("@", "\uff20"))),
        "email all full-width": ("email", email_with(_full_width)),
        "email &#64;": ("email", email_with(lambda e: e.replace("@", "&#64;"))),
        "card dots": ("card", card_with(".")),
        "card slashes": ("card", card_with("/")),
        "card no-break spaces": ("card", card_with("\u00a0")),
        "card zero-width": ("card", card_with("\u200b")),
        "card full-width": ("card", card_with(" ", _full_width)),
        "ssn spaces": ("ssn", ssn(lambda d: f"{d[:3]} {d[3:5]} {d[5:]}")),
        "ssn dots": ("ssn", ssn(lambda d: f"{d[:3]}.{d[3:5]}.{d[5:]}")),
        "ssn bare after 'SSN'": ("ssn", ssn(lambda d: f"SSN {d}")),
        "iban zero-width": ("iban", zw(lambda rng: make_iban(rng).replace(" ", ""))),
        "api key zero-width": ("api_key", zw(make_api_key)),
        "phone zero-width": (
            "phone",
            zw(lambda rng: f"+44 20 {_rand(rng, 4, string.digits)} {_rand(rng, 4, string.digits)}"),
        ),
    }


def _exposed(out: str, written: str, plain: str, fold_case: bool) -> bool:
    """Whether redacted text still shows the written form or, decoded and folded, the value."""
    if written in out:
        return True
    decoded = html.unescape(_JSON_U.sub(lambda m: chr(int(m.group(1), 16)), out))
    folded = unicodedata.normalize("NFKC", decoded)
    folded = "".join(c for c in folded if c not in _ZW).replace("\u00a0", " ")
    for view in (folded, folded.replace(" ", "").replace(".", "").replace("/", "")):
        if plain in view or (fold_case and plain.lower() in view.lower()):
            return True
    return False


def _in_context(rng: random.Random, written: str) -> str:
    layout = rng.randrange(3)
    if layout == 0:
        return (
            f"2024-05-0{rng.randint(1, 9)} INFO {_prose(rng, 4)} value={written} {_prose(rng, 3)}"
        )
    if layout == 1:
        return json.dumps({"event": _prose(rng, 2), "data": f"{_prose(rng, 2)} {written}"})
    return f"{_prose(rng, 5)} {written}. {_prose(rng, 4)}"


def encoded_recall(
    redactor: Redactor, secrets: list[str], per_form: int, seed: int
) -> dict[str, dict[str, dict[str, float]]]:
    """Recall per encoding: the share of planted forms that leave no trace in the redacted
    text (neither as written nor decoded and folded back to the plain value)."""
    rng = random.Random(seed)
    out: dict[str, dict[str, dict[str, float]]] = {"secret": {}, "pii": {}}
    for name, encode in secret_encodings().items():
        caught = 0
        for _ in range(per_form):
            value = rng.choice(secrets)
            written = encode(rng, value)
            text = _in_context(rng, written)
            caught += not _exposed(redactor.text(text), written, value, True)
        out["secret"][name] = {"samples": per_form, "recall": caught / per_form}
    for name, (kind, make) in pii_encodings().items():
        caught = 0
        for _ in range(per_form):
            written, plain = make(rng)
            text = _in_context(rng, written)
            caught += not _exposed(redactor.text(text), written, plain, False)
        out["pii"][name] = {"kind": kind, "samples": per_form, "recall": caught / per_form}
    return out


def clean_changes(redactor: Redactor, lines: list[str]) -> int:
    """Lines of the clean corpus (ids, run ids, timestamps, numbers, prose) that redaction
    changed: false positives."""
    run_ids = [uuid.UUID(int=random.Random(SEED + i).getrandbits(128)).hex for i in range(2000)]
    return sum(redactor.text(x) != x for x in [*lines, *run_ids])


# --------------------------------------------------------------------------- throughput


def _log_line(rng: random.Random) -> str:
    run = uuid.UUID(int=rng.getrandbits(128))
    version = f"v1.{rng.randint(0, 9)}.{rng.randint(0, 9)}"
    return (
        f"2024-05-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:"
        f"{rng.randint(0, 59):02d}.{rng.randint(0, 999_999):06d}Z INFO run={run} "
        f"step={rng.choice(['echo', 'approve', 'summarize'])} {_prose(rng, rng.randint(3, 12))} "
        f"took={rng.random() * 10:.3f}s tokens={rng.randint(1, 5000)} {version}"
    )


def _json_line(rng: random.Random) -> str:
    return json.dumps(
        {
            "run_id": str(uuid.UUID(int=rng.getrandbits(128))),
            "type": rng.choice(["step_started", "step_completed", "model_call"]),
            "ts": f"2024-05-{rng.randint(1, 28):02d}T10:00:00Z",
            "payload": {
                "output": _prose(rng, rng.randint(5, 30)),
                "usage": {"input_tokens": rng.randint(1, 9999), "cost_usd": rng.random()},
                "sha": _rand(rng, 40, "0123456789abcdef"),
            },
        }
    )


def _pii(rng: random.Random) -> str:
    kind = rng.choice(list(POSITIVE_MAKERS))
    return POSITIVE_MAKERS[kind](rng)


def clean_corpus(rng: random.Random, size: int) -> list[str]:
    lines: list[str] = []
    total = 0
    while total < size:
        line = rng.choice([_log_line, _json_line, lambda r: _prose(r, r.randint(10, 60))])(rng)
        lines.append(line)
        total += len(line) + 1
    return lines


def dense_corpus(rng: random.Random, size: int) -> list[str]:
    lines: list[str] = []
    total = 0
    while total < size:
        parts = [_prose(rng, rng.randint(2, 5)) + " " + _pii(rng) for _ in range(rng.randint(2, 4))]
        line = rng.choice([" ".join(parts), json.dumps({"msg": " ".join(parts)})])
        lines.append(line)
        total += len(line) + 1
    return lines


# --clock cpu times with the process's CPU time: on a shared, loaded machine wall time
# mostly measures the other processes
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
_clock = [time.perf_counter]


def _timed(fn: Callable[[], object], runs: int) -> list[float]:
    clock = _clock[0]
    times = []
    for _ in range(runs):
        start = clock()
        fn()
        times.append(clock() - start)
    return times


def throughput(make: Callable[[], Redactor], lines: list[str], runs: int) -> dict[str, float]:
    """MB/s over ``lines``; each timed run gets a redactor of its own (built untimed), so a
    line is scanned every time rather than found in the previous run's clean-string cache."""
    size_mb = sum(len(line) + 1 for line in lines) / 1e6
    joined = "\n".join(lines)
    fresh = iter([make() for _ in range(2 * runs)])

    def scan_lines() -> object:
        redactor = next(fresh)
        return [redactor.text(x) for x in lines]

    per_line = [size_mb / t for t in _timed(scan_lines, runs)]
    whole = [size_mb / t for t in _timed(lambda: next(fresh).text(joined), runs)]
    return {
        "mb": size_mb,
        "lines": len(lines),
        "per_line_median": statistics.median(per_line),
        "per_line_min": min(per_line),
        "per_line_max": max(per_line),
        "whole_median": statistics.median(whole),
        "whole_min": min(whole),
        "whole_max": max(whole),
    }


def event_latency(redactor: Redactor, rng: random.Random, runs: int) -> dict[str, float]:
    """Microseconds per Redactor.value call on a small trace event."""

    def event(pii: bool) -> dict[str, Any]:
        return {
            "run_id": str(uuid.UUID(int=rng.getrandbits(128))),
            "seq": rng.randint(1, 500),
            "type": "step_completed",
            "ts": "2024-05-01T10:00:00.123456Z",
            "step": "summarize",
            "payload": {
                "input": {"text": _prose(rng, 12), "user": make_email(rng) if pii else "anon"},
                "output": _prose(rng, 20) + (" call " + make_phone(rng) if pii else ""),
                "usage": {"input_tokens": 812, "output_tokens": 64, "cost_usd": 0.0011},
                "tags": ["demo", "hello_world"],
            },
        }

    out: dict[str, float] = {}
    for name, pii in (("clean", False), ("pii", True)):
        events = [event(pii) for _ in range(200)]
        identical = all(redactor.value(e) is e for e in events)
        times = _timed(lambda ev=events: [redactor.value(e) for e in ev], runs)  # type: ignore[misc]
        per = [t / len(events) * 1e6 for t in times]
        out[f"{name}_median_us"] = statistics.median(per)
        out[f"{name}_min_us"] = min(per)
        out[f"{name}_max_us"] = max(per)
        if not pii:
            out["clean_returned_identical"] = float(identical)
    return out


PATHOLOGICAL: dict[str, Callable[[int], str]] = {
    "letters": lambda n: "a" * n,
    "digits": lambda n: "1" * n,
    "digit-dash": lambda n: "1-" * (n // 2),
    "at-signs": lambda n: "@" * n,
    "dotted-local": lambda n: "a.b" * (n // 3) + "@x",
    "colons": lambda n: ":" * n,
    "hex-colons": lambda n: "a:" * (n // 2),
    "digit-dots": lambda n: "1." * (n // 2),
    "plus-digits": lambda n: "+1 " * (n // 3),
    "pem-headers": lambda n: "-----BEGIN RSA PRIVATE KEY-----" * (n // 31),
    "backslashes": lambda n: "\\" * n,
    "u-escapes": lambda n: "\\u0040" * (n // 6),
    "pct-escapes": lambda n: "%40" * (n // 3),
    "password=": lambda n: "password=" * (n // 9),
    "authorization:": lambda n: "authorization: " * (n // 15),
    "aws-40": lambda n: "aws " + "A1" * (n // 2),
    "iban-heads": lambda n: "GB82 " * (n // 5),
}


def pathological(redactor: Redactor, size: int) -> dict[str, float]:
    out = {}
    for name, make in PATHOLOGICAL.items():
        text = make(size)
        start = time.perf_counter()
        redactor.text(text)
        out[name] = time.perf_counter() - start
    return out


def calibration() -> float:
    """Microseconds for a fixed pure-Python loop: scales the other figures on a busy machine."""

    def loop() -> int:
        x = 0
        for i in range(10_000):
            x += i
        return x

    return min(_timed(loop, 20)) * 1e6


# ------------------------------------------------------------------------------- report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per figure (>= 5)")
    parser.add_argument("--size", type=int, default=1_000_000, help="corpus size in characters")
    parser.add_argument("--per-kind", type=int, default=400, help="labelled samples per kind")
    parser.add_argument("--per-form", type=int, default=200, help="samples per encoded form")
    parser.add_argument(
        "--clock", choices=sorted(CLOCKS), default="wall", help="time with wall or CPU time"
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    _clock[0] = CLOCKS[args.clock]

    rng = random.Random(SEED)
    secrets = [_rand(rng, rng.randint(12, 32), ALNUM + "!#$%&*-_") for _ in range(20)]
    redactor = Redactor(secrets)
    results: dict[str, Any] = {"seed": SEED, "calibration_loop_us": calibration()}

    print(f"calibration: 10k-iteration Python loop = {results['calibration_loop_us']:.0f} us")
    print(f"\nthroughput (MB/s of {args.clock} time, median [min-max] of", args.runs, "runs)")
    print(f"{'corpus':<12}{'MB':>6}{'lines':>8}{'per line':>26}{'one string':>26}")
    for name, make in (("clean", clean_corpus), ("pii-dense", dense_corpus)):
        t = throughput(lambda: Redactor(secrets), make(random.Random(SEED), args.size), args.runs)
        results[f"throughput_{name}"] = t
        per_line = f"{t['per_line_median']:.2f} [{t['per_line_min']:.2f}-{t['per_line_max']:.2f}]"
        whole = f"{t['whole_median']:.2f} [{t['whole_min']:.2f}-{t['whole_max']:.2f}]"
        print(f"{name:<12}{t['mb']:>6.2f}{t['lines']:>8}{per_line:>26}{whole:>26}")

    lat = event_latency(redactor, random.Random(SEED), args.runs)
    results["event_latency"] = lat
    print("\nRedactor.value on a small trace event (us per event, median [min-max])")
    for name in ("clean", "pii"):
        print(
            f"  {name:<6}{lat[f'{name}_median_us']:>8.1f} "
            f"[{lat[f'{name}_min_us']:.1f}-{lat[f'{name}_max_us']:.1f}]"
        )
    print(f"  clean events returned by identity: {bool(lat['clean_returned_identical'])}")

    patho = pathological(redactor, args.size)
    results["pathological_seconds"] = patho
    print(f"\npathological inputs of {args.size / 1e6:.1f} MB (seconds)")
    for name, seconds in patho.items():
        print(f"  {name:<16}{seconds:>8.3f}")

    items = labelled_corpus(random.Random(SEED + 1), args.per_kind, secrets)
    quality = score(redactor, items)
    results["quality"] = quality
    print(f"\nrecall / precision per kind ({len(items)} labelled texts, hard negatives included)")
    print(f"{'kind':<18}{'labels':>8}{'findings':>10}{'recall':>9}{'precision':>11}")
    for kind, q in quality.items():
        print(
            f"{kind:<18}{q['labels']:>8}{q['findings']:>10}"
            f"{q['recall']:>9.3f}{q['precision']:>11.3f}"
        )
    missing = set(PLACEHOLDERS) - set(quality)
    if missing:
        print(f"(kinds not in the labelled corpus: {', '.join(sorted(missing))})")

    plain_secret = quality.get("secret", {}).get("recall", float("nan"))
    encoded = encoded_recall(redactor, secrets, args.per_form, SEED + 2)
    results["encoded_recall"] = encoded
    print(f"\nrecall of a secrets-file value by encoding ({args.per_form} per form, in context;")
    print("caught = no trace left, as written or decoded and folded back to the value)")
    print(f"{'encoding':<26}{'samples':>8}{'recall':>9}   (plain form: {plain_secret:.3f})")
    for name, row in encoded["secret"].items():
        print(f"{name:<26}{row['samples']:>8}{row['recall']:>9.3f}")
    print("\nrecall of disguised personal data")
    print(f"{'form':<26}{'kind':<10}{'samples':>8}{'recall':>9}{'plain':>9}")
    for name, row in encoded["pii"].items():
        plain = quality.get(str(row["kind"]), {}).get("recall", float("nan"))
        print(f"{name:<26}{row['kind']!s:<10}{row['samples']:>8}{row['recall']:>9.3f}{plain:>9.3f}")
    changed = clean_changes(redactor, clean_corpus(random.Random(SEED), args.size))
    results["clean_lines_changed"] = changed
    print(f"\nclean corpus and 2,000 run ids: {changed} line(s) changed by redaction")

    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, default=float))
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
