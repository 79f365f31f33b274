"""``wb.pending()``: one row per paused run, with what a reviewer needs to decide."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest

import master_sdk as ms
from master_sdk.review.pending import PENDING_COLUMNS, SHOW_CHARS


def test_one_row_per_paused_run_with_the_documented_columns_and_dtypes(
    wb: ms.Workbench,
) -> None:
    """Approval and input pauses both listed (oldest wait first), with prompt from the flow
    file, the show value redacted, who started it, since when and how long."""
    first = wb.run("hello_world/greet", inputs={"text": "mail ana@example.com"}, by="bob")
    second = wb.run("hello_world/greet", inputs={"text": "two"}, by="carl")
    second.approve(by="ana")
    frame = wb.pending()
    assert list(frame.columns) == list(PENDING_COLUMNS)
    assert list(frame["run_id"]) == [first.id, second.id]
    assert list(frame["kind"].astype(str)) == ["approval", "input"]
    assert list(frame["step"]) == ["review", "audience"]
    assert frame["prompt"][0] == "Send this text to the summariser?"
    assert frame["show"][0] == '{"text":"mail <EMAIL>"}'
    assert pd.isna(frame["show"][1])
    assert list(frame["started_by"]) == ["bob", "carl"]
    assert str(frame["waiting_since"].dtype) == "datetime64[us, UTC]"
    assert str(frame["waited"].dtype) == "timedelta64[us]"
    assert (frame["waited"] >= pd.Timedelta(0)).all()
    assert frame["experiment"].isna().all() and frame["reserved_by"].isna().all()


def test_filters_by_product_flow_step_kind_and_age(wb: ms.Workbench) -> None:
    """Each filter narrows the list; an unknown kind is refused with the choices."""
    runs = [wb.run("hello_world/greet", inputs={"text": str(i)}) for i in range(3)]
    runs[0].approve(by="ana")
    assert len(wb.pending(kind="approval")) == 2
    assert list(wb.pending(kind="input")["run_id"]) == [runs[0].id]
    assert len(wb.pending(step="review")) == 2
    assert len(wb.pending(product="hello_world", flow="greet")) == 3
    assert wb.pending(product="other").empty
    assert wb.pending(older_than=timedelta(hours=1)).empty
    assert len(wb.pending(older_than=0)) == 3
    assert wb.pending(experiment="nope").empty
    with pytest.raises(ms.NotFound, match="approval, input"):
        wb.pending(kind="approvals")


def test_a_long_show_value_is_truncated(wb: ms.Workbench) -> None:
    """The list keeps the first SHOW_CHARS characters of a long ``show:`` value."""
    wb.run("hello_world/greet", inputs={"text": "x" * 1000})
    show = wb.pending()["show"][0]
    assert len(show) == SHOW_CHARS and show.endswith("…")


def test_show_texts_are_redacted_in_one_pass_or_one_by_one_when_a_finding_spans_two() -> None:
    """``redact_texts`` gives what redacting each text alone gives, also when a redaction
    swallows the separator between two texts (it then falls back to one call each)."""
    from master_sdk.review.pending import redact_texts

    def redact(text: str) -> str:
        return text.replace("secret", "<SECRET>")

    assert redact_texts(["a secret", None, "b"], redact) == ["a <SECRET>", None, "b"]

    def greedy(text: str) -> str:  # a finding running across the separator
        return text.replace("x\n\u241e\ny", "<SPAN>") if "\u241e" in text else text.upper()

    assert redact_texts(["x", "y"], greedy) == ["X", "Y"]
    assert redact_texts([None], redact) == [None]
