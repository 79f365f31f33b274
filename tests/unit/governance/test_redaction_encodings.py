# ruff: noqa: RUF001 - full-width look-alike characters are the input these tests feed in
"""Secrets-file values in their common encodings, and personal data written to slip past a
detector (invisible characters, full-width forms, other separators), are redacted; ordinary
numbers and generated ids are not."""

from __future__ import annotations

import base64
import html
import json
import uuid
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from master_sdk.governance.normalise import fold, normalise
from master_sdk.governance.redaction import Redactor

SECRET = "Zebra-Canary-Secret-9137"
MARKUP_SECRET = "Tiger&Lion<Secret>42"
R = Redactor([SECRET, "pässwört-Ünïcode-77", MARKUP_SECRET])
ZW = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad"]


def _b64_variants(value: str) -> list[str]:
    """``value`` base64-encoded after 0-5 bytes of prefix, both alphabets, padded or not."""
    out = []
    for prefix in ("", "u", "us", "use", "user", "user:"):
        data = (prefix + value).encode()
        for enc in (base64.b64encode, base64.urlsafe_b64encode):
            text = enc(data).decode()
            out += [text, text.rstrip("=")]
    return out


def _encodings(value: str) -> dict[str, str]:
    data = value.encode()
    forms = {
        "upper": value.upper(),
        "lower": value.lower(),
        "swapcase": value.swapcase(),
        "hex": data.hex(),
        "HEX": data.hex().upper(),
        "url": quote(value, safe=""),
        "url-every-char": "".join(f"%{b:02X}" for b in data),
        "url-lower": "".join(f"%{b:02x}" for b in data),
        "html-decimal": "".join(f"&#{ord(c)};" for c in value),
        "html-hex": "".join(f"&#x{ord(c):x};" for c in value),
        "json-u": "".join(f"\\u{ord(c):04x}" for c in value),
        "full-width": "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in value),
    }
    for i, mark in enumerate(ZW):
        forms[f"zero-width-{i}"] = mark.join(value)
    for i, text in enumerate(_b64_variants(value)):
        forms[f"base64-{i}"] = text
    return forms


@pytest.mark.parametrize("name", sorted(_encodings(SECRET)))
def test_each_encoding_of_a_secrets_file_value_is_redacted(name: str) -> None:
    """Upper/lower case, hex, URL, HTML entities, JSON escapes, full-width, zero-width
    characters and base64 at every alignment: none of the value survives, in context."""
    form = _encodings(SECRET)[name]
    for text in (form, f"log line: {form} end", json.dumps({"v": form})):
        out = R.text(text)
        assert "<SECRET>" in out, (name, text, out)
        assert form not in out and SECRET.lower() not in out.lower()


def test_a_secret_with_markup_characters_is_found_with_named_entities() -> None:
    """``&amp;``, ``&lt;``, ``&gt;`` (and the decimal forms) decode to the value."""
    for form in (html.escape(MARKUP_SECRET), MARKUP_SECRET.replace("&", "&#38;")):
        out = R.text(f"<p>{form}</p>")
        assert "<SECRET>" in out and "Lion" not in out, out


def test_hex_with_separators_and_entities_without_semicolons_are_found() -> None:
    """Hex bytes separated by spaces or colons, and numeric entities browsers read without
    their semicolon."""
    data = SECRET.encode()
    for form in (data.hex(" "), data.hex(":").upper(), "".join(f"&#{ord(c)}" for c in SECRET)):
        assert "<SECRET>" in R.text(f"x {form} y"), form


def test_a_non_ascii_secret_is_found_in_its_encodings() -> None:
    """UTF-8 bytes of a non-ASCII secret in hex and base64, and its URL-encoded form."""
    value = "pässwört-Ünïcode-77"
    for form in (
        value.encode().hex(),
        base64.b64encode(b"k=" + value.encode()).decode(),
        quote(value),
        value.upper(),
    ):
        assert "<SECRET>" in R.text(f"x {form} y"), form


@pytest.mark.parametrize(
    "text",
    [
        "bob\u200b@example.com",
        "bob@exa\u200dmple.com",
        "ｂｏｂ＠ｅｘａｍｐｌｅ．ｃｏｍ",
        "bob﹫example.com",
        "bob&#64;example.com",
        "bob&commat;example.com",
        "bob%40example.com",
    ],
)
def test_emails_hidden_by_invisible_or_look_alike_characters_are_found(text: str) -> None:
    """Detectors see the text as it reads: NFKC, invisible characters removed, entities
    decoded; the whole original span (invisible characters included) is replaced."""
    out = R.text(f"mail {text} now")
    assert out == "mail <EMAIL> now", out


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("4111.1111.1111.1111", "<CARD>"),
        ("4111/1111/1111/1111", "<CARD>"),
        ("4111\u200b1111\u200b1111\u200b1111", "<CARD>"),
        ("４１１１ １１１１ １１１１ １１１１", "<CARD>"),
        ("4111\u00a01111\u00a01111\u00a01111", "<CARD>"),
        ("GB82\u200bWEST\u200b1234\u200b5698\u200b7654\u200b32", "<IBAN>"),
        ("SSN 123456789", "SSN <SSN>"),
        ("social security number: 123456789", "social security number: <SSN>"),
        ("123 45 6789", "<SSN>"),
        ("123.45.6789", "<SSN>"),
        ("123\u200b-45-6789", "<SSN>"),
        ("sk-\u200bproj-Cnry7f3KdQ9xLmP2vR8tW4yZ6bN1cH5jA0eGqT3u", "<API_KEY>"),
        ("ghp_\u200c" + "a1B2" * 9, "<API_KEY>"),
        ("+44\u200b20 7946 0958", "<PHONE>"),
        ("4111 1111-1111.1111", "<CARD>"),
        ("123\u201345\u20136789", "<SSN>"),
        ("b\u00fccher@ex\u00e4mple.de", "<EMAIL>"),
        ("\u00e9lodie.dupont@example.fr", "<EMAIL>"),
    ],
)
def test_personal_data_with_other_separators_or_invisible_characters_is_found(
    text: str, kind: str
) -> None:
    """Cards with dots, slashes or no-break spaces; IBANs, keys and phones with zero-width
    characters; SSNs bare after a word that names them, or with spaces or dots."""
    assert R.text(f"value: {text} (end)") == f"value: {kind} (end)"


def test_ssn_values_are_found_by_their_key() -> None:
    """Nine bare digits under a key naming an SSN are redacted; elsewhere they are a number."""
    out = R.value({"ssn": "123456789", "customer_SSN": 123456789, "count": 123456789})
    assert out == {"ssn": "<SSN>", "customer_SSN": "<SSN>", "count": 123456789}


@pytest.mark.parametrize(
    "text",
    [
        "tokens=123456789",
        "order 123456789 shipped",
        "2024.01.01",
        "1.2.3.4567",
        "v1.2.3",
        "12 345 6789 0",
        "pass rate 97.5%",
        "a &amp; b &lt; c",
        "caf\u00e9 na\u00efve r\u00e9sum\u00e9",
        "日本語のテキスト、全角スペース　あり",
        "ﬁle ① ²",
    ],
)
def test_ordinary_text_and_numbers_are_left_alone(text: str) -> None:
    """No false positives on counts, dates, versions, entities or non-ASCII prose."""
    assert R.text(text) == text


def test_run_ids_and_hex_digests_are_never_redacted() -> None:
    """Run ids (32 hex characters) and SHAs, alone or in text, stay as they are."""
    for _ in range(2000):
        run_id = uuid.uuid4().hex
        for text in (run_id, f"run {run_id}: completed", f"master approve {run_id}"):
            assert R.text(text) == text


def test_normalise_maps_folded_positions_back_to_the_original() -> None:
    """Each folded character points at the character it came from."""
    text = "a\u200bｂ＠c"
    folded, source = normalise(text) or ("", [])
    assert folded == "ab@c"
    assert [text[i] for i in source] == ["a", "ｂ", "＠", "c"]
    assert normalise("plain") is None
    assert fold("x\ufeffy") == "xy"


def test_redaction_stays_idempotent_on_encoded_forms() -> None:
    """A second pass over redacted text changes nothing."""
    for form in _encodings(SECRET).values():
        once = R.text(f"a {form} b")
        assert R.text(once) == once


_PIECES = st.sampled_from(
    [
        "a", "Z", "1", " ", "@", ".", "-", "\u200b", "\u200d", "\ufeff", "\u00ad", "\uff20",
        "\uff41", "\uff11", "\u0301", "\ufb01", "\u2460", "\u00a0", "\u2013", "&#64;", "&amp;",
        "%40", "\\u0040", "bob@example.com", "4111 1111 1111 1111", SECRET, SECRET.upper(),
        base64.b64encode(SECRET.encode()).decode(), "\U000e0041", "\u0130", "\u1e9e",
    ]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(_PIECES, max_size=40))
def test_folding_never_breaks_redaction(pieces: list[str]) -> None:
    """Any mix of invisible, compatibility, combining and expanding characters with planted
    values: redaction does not fail, is idempotent, and leaves neither the secret (in any
    case, inside words too) nor an e-mail address between spaces behind."""
    out = R.text("".join(pieces))
    assert R.text(out) == out
    assert SECRET.lower() not in fold(out).lower()
    spaced = R.text(" ".join(pieces))  # an address needs a boundary: "...com1" is none
    assert R.text(spaced) == spaced
    assert "bob@example.com" not in fold(spaced)
