"""User input: measured, validated and redacted before it is stored; a refusal changes
nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest

from master_sdk.errors import InputInvalid
from master_sdk.governance.inputs import MAX_INPUT_DEPTH, admit_input, input_size
from master_sdk.governance.redaction import Redactor
from master_sdk.orchestrator.validation import SchemaValidator
from tests.conftest import Project

SCHEMA = {
    "type": "object",
    "properties": {"say": {"type": "string"}},
    "required": ["say"],
    "additionalProperties": False,
}
ASK_FLOW = """
id: f
policy: {max_input_bytes: 100}
inputs:
  type: object
  properties: {text: {type: string}}
steps:
  - id: ask
    type: user_input
    prompt: Say something
    schema:
      type: object
      properties: {say: {type: string}}
      required: [say]
"""


def sized(n: int) -> dict[str, str]:
    """A {"say": ...} input of exactly n bytes of JSON as json.dumps writes it."""
    overhead = len(json.dumps({"say": ""}))
    return {"say": "x" * (n - overhead)}


def admit(data: Any, limit: int = 100) -> tuple[Any, int]:
    return admit_input(
        data,
        limit=limit,
        validator=SchemaValidator(SCHEMA),
        scrub=Redactor().value,
        what="user input",
    )


def test_input_exactly_at_the_size_limit_is_accepted_and_one_byte_more_is_not() -> None:
    """100 bytes of JSON pass a 100-byte limit; 101 are refused naming both sizes."""
    assert admit(sized(100))[1] == 100
    with pytest.raises(InputInvalid) as caught:
        admit(sized(101))
    assert "is 101 bytes; the limit is 100 bytes (max_input_bytes)" in str(caught.value)


def test_size_counts_utf8_bytes_not_characters() -> None:
    """Four emoji are 16 bytes, not 4 characters."""
    assert input_size("\U0001f600" * 4) == len(
        json.dumps("\U0001f600" * 4, ensure_ascii=False).encode()
    )


def test_input_nested_past_the_cap_is_refused_before_validation() -> None:
    """A 65-level list fits in a few hundred bytes but is refused."""
    deep: Any = "x"
    for _ in range(MAX_INPUT_DEPTH + 1):
        deep = [deep]
    with pytest.raises(InputInvalid, match="nests deeper than 64"):
        admit({"say": deep}, limit=10_000)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), {1, 2}, object()])
def test_values_that_are_not_json_data_are_refused(value: Any) -> None:
    """NaN, infinity, sets and objects are not JSON: refused as such."""
    with pytest.raises(InputInvalid, match="must be JSON data"):
        admit({"say": value}, limit=10_000)


def test_schema_errors_never_echo_values_and_redact_field_names() -> None:
    """An unknown key that is an e-mail address is shown as <EMAIL>; the value never is."""
    with pytest.raises(InputInvalid) as caught:
        admit({"say": "ok", "bob@example.com": "secret value 4111 1111 1111 1111"})
    message = str(caught.value)
    assert "bob@example.com" not in message and "4111" not in message
    assert [e.path for e in caught.value.errors] == ["<EMAIL>"]


def test_accepted_input_comes_back_redacted() -> None:
    """What is stored is the redacted value."""
    clean, _ = admit({"say": "mail me at bob@example.com"})
    assert clean == {"say": "mail me at <EMAIL>"}


def test_a_rejected_submit_leaves_the_run_unchanged(project: Project) -> None:
    """Too large, invalid and non-JSON submits raise InputInvalid; the stored run, its
    version and its trace are exactly as before; a valid submit then goes through."""
    project.flow("f", ASK_FLOW)
    wb = project.open()
    run = wb.run("demo/f")
    before = wb.store.load(run.id)
    trace_before = len(run.trace())
    for bad in (sized(101), {"say": 3}, {"say": float("nan")}, {}):
        with pytest.raises(InputInvalid):
            run.submit(bad)
        assert wb.store.load(run.id) == before
        assert run.status == "waiting_input"
    assert len(run.trace()) == trace_before
    run.submit(sized(100))
    assert run.status == "completed"
    wb.close()


def test_flow_inputs_are_size_capped_and_nothing_is_stored(project: Project) -> None:
    """wb.run with inputs over max_input_bytes is refused before any run exists."""
    project.flow("f", ASK_FLOW)
    wb = project.open()
    with pytest.raises(InputInvalid, match="max_input_bytes"):
        wb.run("demo/f", inputs={"text": "x" * 200})
    assert len(wb.runs()) == 0
    wb.close()


def test_flow_inputs_are_redacted_before_they_are_stored(project: Project) -> None:
    """An e-mail address in the inputs is stored, shown and passed on as <EMAIL>."""
    project.flow("f", ASK_FLOW.replace("max_input_bytes: 100", "max_input_bytes: 1000"))
    wb = project.open()
    run = wb.run("demo/f", inputs={"text": "from bob@example.com"})
    assert run.inputs == {"text": "from <EMAIL>"}
    assert wb.store.load(run.id)[0].inputs == {"text": "from <EMAIL>"}
    wb.close()


def test_a_template_typed_by_the_user_stays_literal(project: Project) -> None:
    """User input that looks like a template (or a sandbox escape) is data."""
    project.flow(
        "f",
        ASK_FLOW.replace("max_input_bytes: 100", "max_input_bytes: 1000")
        + '  - {id: e, type: tool, tool: echo, input: {text: "got {{ steps.ask.output.say }}"}}\n',
    )
    wb = project.open()
    run = wb.run("demo/f")
    typed = "{{ 7*7 }} {{ ''.__class__.__mro__ }} {% for i in range(10**9) %}{% endfor %}"
    run.submit({"say": typed})
    assert run.output == {"text": f"got {typed}"}
    wb.close()
