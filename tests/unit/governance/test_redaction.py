"""Behaviour of the redaction engine: what it replaces, what it leaves, and its guarantees."""

from __future__ import annotations

import base64
import itertools
import json
import random
from collections import OrderedDict
from typing import Any, NamedTuple
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from master_sdk.governance.redaction import (
    MAX_DEPTH,
    PLACEHOLDERS,
    TOO_DEEP,
    Finding,
    Redactor,
)
from master_sdk.governance.redaction_validators import iban_ok, ipv6_ok, luhn_ok

# Credentials are assembled at run time so that no scanner mistakes this file for a leak.
ALNUM = "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"


def _token(prefix: str, length: int, alphabet: str = ALNUM) -> str:
    return prefix + (alphabet * 8)[:length]


def _jwt() -> str:
    def seg(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{seg({'alg': 'HS256', 'typ': 'JWT'})}.{seg({'sub': '1234567890'})}.{'Sg' * 20}"


OPENAI_KEY = _token("sk-", 48)
OPENAI_PROJECT_KEY = _token("sk-" + "proj-", 56)
ANTHROPIC_KEY = _token("sk-" + "ant-api03-", 80)
AWS_KEY_ID = "AKIA" + "IOSFODNN7EXAMPLE"
AWS_SESSION_KEY_ID = "ASIA" + "Y34FZKBOKMUTVV7A"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/" + "bPxRfiCYEXAMPLEKEY"
GITHUB_TOKENS = [_token(p + "_", 36) for p in ("ghp", "gho", "ghu", "ghs", "ghr")]
GITHUB_PAT = _token("github" + "_pat_", 82, ALNUM + "_")
GITLAB_TOKEN = _token("glpat" + "-", 20)
SLACK_TOKENS = [_token(f"xox{c}-", 40, "1234567890-" + ALNUM) for c in "bpars"]
SLACK_WEBHOOK = "https://hooks.slack.com/services/" + "T00000000/B00000000/" + "X" * 24
STRIPE_KEYS = [_token(p, 24) for p in ("sk_" + "live_", "sk_" + "test_", "rk_" + "live_")]
STRIPE_KEYS.append(_token("pk_" + "live_", 24))
GOOGLE_KEY = _token("AI" + "za", 35, ALNUM + "_-")
JWT = _jwt()
PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIIEpAIBAAKCAQEA0Z3VS5JJcds3xfn/ygWyF8PbnGy0AHB7MhgHcTz6sE2I2yPB\n"
    "aFDrBz9vFqU4yV3T4xh2l9DkR6Yt5e3k1pQxXzJ0H6N7oG5qLm3a0c4dE2f1gH==\n"
    "-----END RSA PRIVATE KEY-----"
)

# (kind, sample): the sample alone must become the kind's placeholder, wherever it sits.
POSITIVES: list[tuple[str, str]] = [
    ("email", "bob@example.com"),
    ("email", "first.last+tag@sub.example.co.uk"),
    ("email", "x_y-z@mail-server.io"),
    ("email", "UPPER.CASE@EXAMPLE.ORG"),
    ("phone", "+44 20 7946 0958"),
    ("phone", "+49 30 123456"),
    ("phone", "+1 (555) 123-4567"),
    ("phone", "+1-555-123-4567"),
    ("phone", "+33 1 23 45 67 89"),
    ("phone", "+442079460958"),
    ("phone", "+44 (0)20 7946 0958"),
    ("phone", "(555) 123-4567"),
    ("phone", "555-123-4567"),
    ("phone", "555.123.4567"),
    ("phone", "555 123 4567"),
    ("phone", "1-800-555-0199"),
    ("phone", "020 7946 0958"),
    ("phone", "0161 496 0000"),
    ("phone", "07700 900123"),
    ("phone", "030 123456"),
    ("phone", "(030) 1234567"),
    ("card", "4111 1111 1111 1111"),
    ("card", "4111-1111-1111-1111"),
    ("card", "4111111111111111"),
    ("card", "5555555555554444"),
    ("card", "2223003122003222"),
    ("card", "378282246310005"),
    ("card", "3782 822463 10005"),
    ("card", "6011111111111117"),
    ("card", "6011 0009 9013 9424"),
    ("card", "3530111333300000"),
    ("card", "30569309025904"),
    ("card", "4222222222222"),
    ("iban", "GB82 WEST 1234 5698 7654 32"),
    ("iban", "GB82WEST12345698765432"),
    ("iban", "DE89 3704 0044 0532 0130 00"),
    ("iban", "de89370400440532013000"),
    ("iban", "FR14 2004 1010 0505 0001 3M02 606"),
    ("iban", "NL91ABNA0417164300"),
    ("iban", "BE68539007547034"),
    ("iban", "CH9300762011623852957"),
    ("iban", "NO9386011117947"),
    ("ssn", "123-45-6789"),
    ("ssn", "078-05-1120"),
    ("ip", "192.168.1.1"),
    ("ip", "10.0.0.1"),
    ("ip", "8.8.8.8"),
    ("ip", "255.255.255.255"),
    ("ip", "0.0.0.0"),  # noqa: S104 - a sample to redact, nothing binds to it
    ("ip", "127.0.0.1"),
    ("ip", "1.2.3.4"),
    ("ip", "2001:db8::1"),
    ("ip", "2001:0db8:85a3:0000:0000:8a2e:0370:7334"),
    ("ip", "fe80::1ff:fe23:4567:890a"),
    ("ip", "::ffff:192.0.2.128"),
    ("ip", "2001:db8::"),
    ("ip", "FE80::ABCD:1"),
    ("api_key", OPENAI_KEY),
    ("api_key", OPENAI_PROJECT_KEY),
    ("api_key", ANTHROPIC_KEY),
    ("api_key", AWS_KEY_ID),
    ("api_key", AWS_SESSION_KEY_ID),
    *[("api_key", t) for t in GITHUB_TOKENS],
    ("api_key", GITHUB_PAT),
    ("api_key", GITLAB_TOKEN),
    *[("api_key", t) for t in SLACK_TOKENS],
    *[("api_key", t) for t in STRIPE_KEYS],
    ("api_key", GOOGLE_KEY),
    ("webhook", SLACK_WEBHOOK),
    ("jwt", JWT),
    ("private_key", PEM),
    ("private_key", PEM.replace("RSA", "OPENSSH")),
    ("private_key", PEM.replace("RSA ", "")),
    ("private_key", PEM.replace("RSA", "ENCRYPTED")),
]


@pytest.fixture(scope="module")
def redactor() -> Redactor:
    return Redactor()


@pytest.mark.parametrize(("kind", "sample"), POSITIVES, ids=[f"{k}-{s[:24]}" for k, s in POSITIVES])
@pytest.mark.parametrize(
    "template",
    ["{}", "before {} after", "({})", '{{"field": "{}"}}', "x={};", "line\n{}\nnext"],
    ids=["alone", "prose", "parens", "json", "kv", "lines"],
)
def test_each_kind_is_replaced_by_its_placeholder(
    redactor: Redactor, kind: str, sample: str, template: str
) -> None:
    """A sample of each kind, alone or in common surroundings, becomes exactly its placeholder."""
    assert redactor.text(template.format(sample)) == template.format(PLACEHOLDERS[kind])


@pytest.mark.parametrize(("kind", "sample"), POSITIVES, ids=[f"{k}-{s[:24]}" for k, s in POSITIVES])
def test_findings_report_kind_and_exact_span(redactor: Redactor, kind: str, sample: str) -> None:
    """findings() names the kind and the exact span of the sample."""
    text = f"see {sample} here"
    assert redactor.findings(text) == [Finding(kind, 4, 4 + len(sample))]


# (text, expected): detections that keep their context.
CONTEXTUAL: list[tuple[str, str]] = [
    (
        "postgres://admin:s3cr3t@db.internal:5432/app",
        "postgres://<URL_CREDENTIALS>@db.internal:5432/app",
    ),
    ("redis://:pw123@cache:6379/0", "redis://<URL_CREDENTIALS>@cache:6379/0"),
    ("https://user:p@ss@example.com/x", "https://<URL_CREDENTIALS>@example.com/x"),
    ("Authorization: Bearer abc.DEF-123_456~xyz", "Authorization: Bearer <BEARER>"),
    ("authorization: bearer " + JWT, "authorization: bearer <JWT>"),
    ("Authorization: Basic dXNlcjpwYXNzd29yZA==", "Authorization: Basic <AUTHORIZATION>"),
    ('{"Authorization": "Token 9f8e7d6c5b4a3f2e"}', '{"Authorization": "Token <AUTHORIZATION>"}'),
    ("Proxy-Authorization: Basic dXNlcjpwYXNz", "Proxy-Authorization: Basic <AUTHORIZATION>"),
    (
        "curl -H 'Authorization: Bearer " + OPENAI_KEY + "'",
        "curl -H 'Authorization: Bearer <API_KEY>'",
    ),
    ("sent with bearer eyJhbGciOi.x-1_2 token", "sent with bearer <BEARER> token"),
    ("aws_secret_access_key = " + AWS_SECRET, "aws_secret_access_key = <API_KEY>"),
    ('{"SecretAccessKey": "' + AWS_SECRET + '"}', '{"SecretAccessKey": "<API_KEY>"}'),
    ("AWS secret: " + AWS_SECRET + " (rotate)", "AWS secret: <API_KEY> (rotate)"),
    ("password=hunter2", "password=<CREDENTIAL>"),
    ("DB_PASSWORD=hunter2 next", "DB_PASSWORD=<CREDENTIAL> next"),
    ('{"client_secret": "abc", "n": 1}', '{"client_secret": "<CREDENTIAL>", "n": 1}'),
    ("GET /cb?code=1&access_token=ya29.a0Af&x=1", "GET /cb?code=1&access_token=<CREDENTIAL>&x=1"),
    ("X-Api-Key: 9f8e7d6c5b4a3f2e", "X-Api-Key: <CREDENTIAL>"),
    ("api_key: 'abc-def'", "api_key: '<CREDENTIAL>'"),
    ("mailto:bob@example.com", "mailto:<EMAIL>"),
    ("[2001:db8::1]:443", "[<IP>]:443"),
    ("10.0.0.0/8 and 10.1.2.3:8080", "<IP>/8 and <IP>:8080"),
    ("server at 10.0.0.1.", "server at <IP>."),
    ("version 1.2.3.4 ships", "version <IP> ships"),
]


@pytest.mark.parametrize(("text", "expected"), CONTEXTUAL, ids=[e[:30] for _, e in CONTEXTUAL])
def test_contextual_detections_keep_their_context(
    redactor: Redactor, text: str, expected: str
) -> None:
    """Scheme, host, header names and scheme words stay readable; only the credential goes."""
    assert redactor.text(text) == expected


NEGATIVES: list[str] = [
    # ids and digests
    "123e4567-e89b-12d3-a456-426614174000",
    "run 550e8400-e29b-41d4-a716-446655440000 step 6ba7b810-9dad-11d1-80b4-00c04fd430c8",
    "3f786850e387550fdab836ed7e6dc881de23001b",
    "commit abc1234 and e83c5163316f89bfbde7d9ab23ca2e25604af290",
    "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    # numbers, dates, times
    "42",
    "3.14159",
    "1,234,567",
    "total 1234567890 items",
    "epoch ms 1700000000000 and us 1700000000000000",
    "-12345.678",
    "2024-01-15",
    "2024-01-15T10:30:00Z",
    "2024-01-15 10:30:00.123456+01:00",
    "15/01/2024 at 10:30:45",
    "Jan 15, 2024",
    "took 12:30:45.123",
    # versions (a 4-part version that is a valid IPv4 address is redacted: see CONTEXTUAL)
    "python 3.11.7",
    "v1.2.3.4",
    "release 10.0.0.256",
    "1.2.3.4.5",
    # near misses
    "order 4111 1111 1111 1112",
    "ref 1234567812345678",
    "ORD-2024-000123456",
    "GB82 WEST 1234 5698 7654 33",
    "DE89 3704 0044 0532 0130 01",
    "000-12-3456",
    "666-12-3456",
    "900-12-3456",
    "123-00-4567",
    "123-45-0000",
    "256.1.1.1",
    "01.02.03.04",
    "std::vector<int> and Foo::Bar::baz",
    "a[::2] and x[1::3]",
    "::",
    "::1",
    "mac 00:1a:2b:3c:4d:5e",
    "use sk-learn here; sk-this-is-not-a-key-at-all-really",
    "the task-runner is fine",
    "the bearer of bad news",
    "Password: must be at least 8 characters",
    '{"max_tokens": 512, "token_count": 5, "secret": true}',
    "password_hash=abc and secret_santa=bob",
    "AKIA is a prefix",
    "eyJ alone",
    "dGhpcyBpcyBhIHRlc3Qgc3RyaW5nIGZvciBiYXNl",
    "secret rotated in commit 3f786850e387550fdab836ed7e6dc881de23001b",
    "http://example.com:8080/path?q=1",
    "git clone git@github.com:org/repo.git",
    "ftp://example.com/file",
    "1 + 1 = 2 and 50% off",
    "C:\\new\\table",
    "<EMAIL> <PHONE> <SECRET>",
    "",
]


@pytest.mark.parametrize("text", NEGATIVES, ids=[t[:30] or "empty" for t in NEGATIVES])
def test_lookalikes_are_left_alone(redactor: Redactor, text: str) -> None:
    """UUIDs, SHAs, numbers, dates, versions and checksum-failing near misses are not redacted,
    and the very same string object comes back."""
    assert redactor.text(text) is text
    assert redactor.findings(text) == []


def test_placeholders_cover_every_kind_found() -> None:
    """Every kind the engine reports has a placeholder of the form <NAME>."""
    kinds = {k for k, _ in POSITIVES} | {"bearer", "authorization", "url_credentials"}
    kinds |= {"credential", "secret"}
    assert kinds == set(PLACEHOLDERS)
    assert all(p.startswith("<") and p.endswith(">") for p in PLACEHOLDERS.values())


# ------------------------------------------------------------------------- escaped text


def test_json_inside_a_json_string_is_redacted_and_stays_valid(redactor: Redactor) -> None:
    """A JSON document embedded (twice) in a string is redacted through its escapes."""
    payload = {"to": "alice@example.com", "note": "card 4111 1111 1111 1111", "ip": "10.1.2.3"}
    once = json.dumps(payload)
    twice = json.dumps({"body": once})
    thrice = json.dumps(twice)
    expected = {"to": "<EMAIL>", "note": "card <CARD>", "ip": "<IP>"}
    assert json.loads(redactor.text(once)) == expected
    assert json.loads(json.loads(redactor.text(twice))["body"]) == expected
    assert json.loads(json.loads(json.loads(redactor.text(thrice)))["body"]) == expected


def test_unicode_escapes_are_decoded(redactor: Redactor) -> None:
    """\\u0040 stands for @: the address is found and the whole escaped span replaced."""
    assert redactor.text('{"to": "bob\\u0040example.com"}') == '{"to": "<EMAIL>"}'
    assert redactor.text(json.dumps({"k": AWS_KEY_ID})) == '{"k": "<API_KEY>"}'


def test_escaped_newline_is_not_part_of_the_match(redactor: Redactor) -> None:
    """In 'a\\nbob@x.io' the 'n' belongs to the escape, so the escape survives intact."""
    assert redactor.text("line1\\nbob@example.com") == "line1\\n<EMAIL>"
    assert redactor.text("ip\\t10.0.0.1\\n") == "ip\\t<IP>\\n"


def test_escaped_slashes_in_urls_are_decoded(redactor: Redactor) -> None:
    """JSON's \\/ does not hide URL credentials."""
    out = redactor.text('{"dsn": "postgres:\\/\\/admin:pw@db:5432\\/app"}')
    assert out == '{"dsn": "postgres:\\/\\/<URL_CREDENTIALS>@db:5432\\/app"}'


def test_json_escaped_credential_assignment(redactor: Redactor) -> None:
    """A key/value pair inside an escaped JSON string is still a key/value pair."""
    inner = json.dumps({"api_key": "abcdef123456", "password": "hunter2"})
    out = json.loads(redactor.text(json.dumps(inner)))
    assert json.loads(out) == {"api_key": "<CREDENTIAL>", "password": "<CREDENTIAL>"}


@pytest.mark.parametrize(
    ("kind", "sample"),
    [
        ("email", "bob@example.com"),
        ("phone", "+44 20 7946 0958"),
        ("iban", "GB82 WEST 1234 5698 7654 32"),
    ],
)
def test_url_encoded_values_are_redacted(redactor: Redactor, kind: str, sample: str) -> None:
    """%40, %2B and %20 are decoded for detection; the encoded span is replaced whole."""
    query = f"/cb?v={quote(sample, safe='')}&next=%2Fhome"
    assert redactor.text(query) == f"/cb?v={PLACEHOLDERS[kind]}&next=%2Fhome"


def test_url_encoded_password_in_url(redactor: Redactor) -> None:
    """user:p%40ss is one credential, not a password cut at the encoded @."""
    out = redactor.text("https://user:p%40ss@example.com/x")
    assert out == "https://<URL_CREDENTIALS>@example.com/x"


# ----------------------------------------------------------------------------- secrets


def test_secret_values_are_redacted_in_every_encoding() -> None:
    """A secrets-file value is found raw, JSON-escaped and URL-encoded."""
    secret = 'tr0ub4dor&3 "x"/y'
    r = Redactor([secret])
    assert r.text(f"pw={secret}!") == "pw=<SECRET>!"
    assert r.text(json.dumps({"v": secret})) == '{"v": "<SECRET>"}'
    assert r.text(f"/login?pw={quote(secret, safe='')}&x=1") == "/login?pw=<SECRET>&x=1"
    assert r.text(json.dumps(json.dumps({"v": secret}))) == json.dumps(
        json.dumps({"v": "<SECRET>"})
    )


def test_secrets_match_inside_words_and_in_any_letter_case() -> None:
    """A secret embedded in other text is still a leak, and so is the same value upper- or
    lower-cased (a case-insensitive system accepts it as the secret)."""
    r = Redactor(["Zebra-Crossing-42"])
    assert r.text("id=xZebra-Crossing-42y") == "id=x<SECRET>y"
    assert r.text("zebra-crossing-42") == "<SECRET>"
    assert r.text("ZEBRA-CROSSING-42") == "<SECRET>"
    assert r.text("zebra-crossing-43") == "zebra-crossing-43"


def test_short_secrets_are_ignored() -> None:
    """Values shorter than min_secret_length would redact ordinary text, so they are skipped."""
    r = Redactor(["on", "abc", "abcd"], min_secret_length=4)
    assert r.text("on abc abcd") == "on abc <SECRET>"
    assert Redactor(["abc"], min_secret_length=3).text("abc") == "<SECRET>"


def test_a_key_that_contains_a_secret_is_redacted_whole() -> None:
    """When a secrets value sits inside a detected key, the whole key goes, not just the value."""
    r = Redactor([OPENAI_KEY[10:20]])
    assert r.text(f"key {OPENAI_KEY} end") == "key <API_KEY> end"


def test_secret_that_spells_a_placeholder_is_stable() -> None:
    """A secret such as 'EMAIL' does not eat the placeholders the redactor writes."""
    r = Redactor(["EMAIL", "SECRET"])
    once = r.text("EMAIL bob@example.com SECRET")
    assert once == "<SECRET> <EMAIL> <SECRET>"
    assert r.text(once) == once


def test_repr_does_not_reveal_secrets() -> None:
    """Logging the redactor itself leaks nothing."""
    r = Redactor(["very-secret-value"])
    assert "very-secret-value" not in repr(r)
    assert "very-secret-value" not in str(r)


# -------------------------------------------------------------------------- nested values


def test_nested_values_and_keys_are_redacted(redactor: Redactor) -> None:
    """Strings anywhere in dicts, lists and tuples are redacted, dictionary keys included."""
    data = {
        "user": {"email": "a@b.io", "phones": ["+44 20 7946 0958", "none"]},
        "bob@example.com": ("10.0.0.1", 3),
        "n": 1,
    }
    assert redactor.value(data) == {
        "user": {"email": "<EMAIL>", "phones": ["<PHONE>", "none"]},
        "<EMAIL>": ("<IP>", 3),
        "n": 1,
    }


def test_clean_values_come_back_as_the_same_object(redactor: Redactor) -> None:
    """Clean nested data is returned by identity: the hot path allocates nothing."""
    data = {
        "run_id": "123e4567-e89b-12d3-a456-426614174000",
        "ts": "2024-01-15T10:30:00Z",
        "steps": [{"name": "echo", "ok": True, "tokens": 12, "cost": 0.01}, ("a", None)],
        "tags": {"x", "y"},
    }
    assert redactor.value(data) is data


def test_unchanged_branches_are_shared_with_the_input(redactor: Redactor) -> None:
    """Only containers on the path to a change are copied; clean siblings are reused."""
    clean = {"deep": ["x", "y"]}
    data = {"clean": clean, "dirty": ["bob@example.com"]}
    out = redactor.value(data)
    assert out is not data
    assert out["clean"] is clean
    assert data["dirty"] == ["bob@example.com"]


def test_colliding_redacted_keys_keep_both_values(redactor: Redactor) -> None:
    """Two keys that redact to the same text are kept apart rather than overwritten."""
    assert redactor.value({"a@x.io": 1, "b@x.io": 2}) == {"<EMAIL>": 1, "<EMAIL>#2": 2}
    out = redactor.value({"a@x.io": 1, "b@x.io": 2, "<EMAIL>#2": 3})
    assert sorted(out.values()) == [1, 2, 3]


class Point(NamedTuple):
    label: str
    n: int


def test_container_types_are_preserved(redactor: Redactor) -> None:
    """Tuples, NamedTuples, sets and frozensets come back as their own types."""
    out = redactor.value(
        [("bob@example.com",), Point("10.0.0.1", 1), {"a@b.io"}, frozenset({"a@b.io"})]
    )
    assert out == [("<EMAIL>",), Point("<IP>", 1), {"<EMAIL>"}, frozenset({"<EMAIL>"})]
    assert type(out[1]) is Point
    assert type(out[3]) is frozenset


def test_dict_subclasses_become_plain_dicts_when_changed(redactor: Redactor) -> None:
    """An OrderedDict with something to redact comes back as a dict with the same order."""
    out = redactor.value(OrderedDict([("b", "a@b.io"), ("a", "x")]))
    assert list(out.items()) == [("b", "<EMAIL>"), ("a", "x")]


def test_integer_card_numbers_are_redacted(redactor: Redactor) -> None:
    """A Luhn-valid card number stored as an int is replaced; other ints and bools are kept."""
    assert redactor.value({"pan": 4111111111111111, "n": 4111111111111112, "ok": True}) == {
        "pan": "<CARD>",
        "n": 4111111111111112,
        "ok": True,
    }
    assert redactor.value(10**5000) == 10**5000
    # in a mapping, ints are checked inline: the same answers
    assert redactor.value({"big": 10**5000, "neg": -4111111111111111, "n": 7}) == {
        "big": 10**5000,
        "neg": "<CARD>",
        "n": 7,
    }


def test_too_deep_nesting_and_cycles_do_not_raise(redactor: Redactor) -> None:
    """Containers deeper than MAX_DEPTH, cycles included, become TOO_DEEP instead of overflowing."""
    deep: list[Any] = ["a@b.io"]
    for _ in range(MAX_DEPTH + 10):
        deep = [deep]
    out = redactor.value(deep)
    for _ in range(MAX_DEPTH):
        out = out[0]
    assert out == TOO_DEEP
    cyclic: list[Any] = ["x"]
    cyclic.append(cyclic)
    out = redactor.value(cyclic)
    assert out[0] == "x"


def test_other_objects_pass_through(redactor: Redactor) -> None:
    """Bytes, floats, None and arbitrary objects are returned as they are."""
    marker = object()
    data = [b"bob@example.com", 1.5, None, marker]
    assert redactor.value(data) is data


# ---------------------------------------------------------------------------- properties

PII_SAMPLES = [s for _, s in POSITIVES] + [t for t, _ in CONTEXTUAL]
PIECES = st.one_of(
    st.sampled_from(PII_SAMPLES),
    st.sampled_from(NEGATIVES),
    st.sampled_from(list(PLACEHOLDERS.values())),
    st.text(max_size=12),
    st.text(alphabet="0123456789 -.+():@/%\\\"'=_<>aAfFxz", max_size=16),
)
MIXED = st.lists(PIECES, max_size=8).map("".join)
ANY_TEXT = st.text(alphabet=st.characters(codec=None), max_size=300)


@settings(max_examples=400, deadline=None)
@given(MIXED)
def test_redaction_is_idempotent(text: str) -> None:
    """Redacting twice gives the same result as once: placeholders are never matched again."""
    r = Redactor(["hunter2-pw", "EMAIL"])
    once = r.text(text)
    assert r.text(once) == once
    assert r.findings(once) == []


@settings(max_examples=300, deadline=None)
@given(ANY_TEXT)
def test_any_text_is_handled_deterministically(text: str) -> None:
    """Arbitrary text (surrogates and control characters included) never raises, gives the same
    answer every time, and findings are sorted, disjoint and within the text."""
    r = Redactor(["hunter2-pw"])
    out = r.text(text)
    assert isinstance(out, str)
    assert r.text(text) == out
    found = r.findings(text)
    assert all(0 <= f.start < f.end <= len(text) for f in found)
    assert all(a.end <= b.start for a, b in itertools.pairwise(found))


CLEAN_LEAVES = st.one_of(
    st.text(alphabet="abcdefghij klmnop_.,!?", max_size=20),
    st.integers(min_value=-(10**6), max_value=10**6),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=False),
)
CLEAN_TREES = st.recursive(
    CLEAN_LEAVES,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(alphabet="abcdef_", max_size=8), inner, max_size=4),
        st.tuples(inner, inner),
    ),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(CLEAN_TREES)
def test_clean_trees_are_returned_by_identity(tree: Any) -> None:
    """Any clean JSON-like tree comes back as the very same object."""
    assert Redactor().value(tree) is tree


# ------------------------------------------------------------------------ large inputs


def test_one_megabyte_of_mixed_text_is_fully_redacted(redactor: Redactor) -> None:
    """A 1 MB log of prose, JSON and planted PII comes back with none of the planted values."""
    rng = random.Random(7)
    planted = [s for k, s in POSITIVES if k in ("email", "card", "iban", "ssn", "phone", "ip")]
    words = ["the", "quick", "brown", "fox", "step", "run", "tool", "agent", "2024-01-15", "v1.2.3"]
    lines: list[str] = []
    size = 0
    count = 0
    while size < 1_000_000:
        sample = rng.choice(planted)
        filler = " ".join(rng.choices(words, k=8))
        line = rng.choice(
            [f"INFO {filler} value={sample}", json.dumps({"msg": filler, "v": sample}), filler]
        )
        count += sample in line
        lines.append(line)
        size += len(line) + 1
    text = "\n".join(lines)
    out = redactor.text(text)
    assert sum(out.count(p) for p in PLACEHOLDERS.values()) == count
    assert not any(s in out for s in planted)


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "text",
    [
        "a" * 100_000,
        "1-" * 50_000,
        "@" * 100_000,
        "a.b" * 33_000 + "@x",
        ":" * 100_000,
        "1." * 50_000,
        "+1 " * 33_000,
        "-----BEGIN RSA PRIVATE KEY-----" * 3_000,
        "\\" * 100_000,
        "%40" * 33_000,
        "password=" * 11_000,
        "authorization: " * 6_000,
        "secret " * 14_000,
        "aws " + "A1" * 50_000,
        "GB82 " * 20_000,
        "4111 1111 1111 1112 555-123-4567 " * 3_000,
    ],
    ids=lambda t: repr(t[:12]),
)
def test_pathological_inputs_complete(redactor: Redactor, text: str) -> None:
    """Inputs built to make regexes backtrack finish (guarded by a generous timeout, not timed)
    and still give a stable answer."""
    out = redactor.text(text)
    assert redactor.text(out) == out


# --------------------------------------------------------------------------- validators


@pytest.mark.parametrize(
    ("address", "valid"),
    [
        ("2001:db8::1", True),
        ("1:2:3:4:5:6:7:8", True),
        ("::ffff:10.0.0.1", True),
        ("64:ff9b::192.0.2.33", True),
        ("fe80::", True),
        ("1:2:3:4:5:6:7:8:9", False),
        ("1::2::3", False),
        ("12345::1", False),
        ("::ffff:10.0.0.256", False),
        ("1:2:3", False),
        ("::", False),
        ("::1", False),
        ("1::3", False),
    ],
)
def test_ipv6_validation(address: str, valid: bool) -> None:
    """ipv6_ok accepts real addresses and refuses malformed ones and slice-like forms."""
    assert ipv6_ok(address) is valid


def test_checksums() -> None:
    """Luhn and mod-97 accept the published test numbers and refuse a changed last digit."""
    assert luhn_ok("79927398713")
    assert not luhn_ok("79927398710")
    assert iban_ok("GB82WEST12345698765432")
    assert iban_ok("gb82west12345698765432")
    assert not iban_ok("GB82WEST12345698765433")
    assert not iban_ok("GB82WEST1234569876543")  # one character short for GB
    assert not iban_ok("XX82WEST12345698765432")  # no such country
