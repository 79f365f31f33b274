"""International numbers written one after another with no space between them.

Found by the idempotence property test: after an e-mail address, four glued numbers took one
redaction pass each, more than text() runs, so the last number came out in clear.
"""

from __future__ import annotations

import pytest

from master_sdk.governance.redaction import Redactor

NUMBER = "+44 20 7946 0958"


@pytest.mark.parametrize("count", [2, 4, 12])
@pytest.mark.parametrize("before", ["", "bob@example.com", "tel: ", "EMAIL"])
def test_every_glued_number_is_redacted_in_one_pass(before: str, count: int) -> None:
    r = Redactor(["EMAIL"])
    text = before + NUMBER * count
    out = r.text(text)
    assert out.count("<PHONE>") == count
    assert "7946" not in out
    assert r.text(out) == out
    assert r.findings(out) == []


def test_a_glued_number_is_found_with_the_first() -> None:
    found = Redactor().findings("call " + NUMBER * 3)
    assert [(f.kind, f.end - f.start) for f in found] == [("phone", len(NUMBER))] * 3


def test_base64_with_a_plus_is_still_left_alone() -> None:
    """The lookbehind that keeps "...8+44..." inside base64 out of reach still holds there."""
    blob = "aGVsbG8+12345678901234"
    assert Redactor().text(blob) == blob
