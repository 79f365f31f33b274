"""Bad input gets a one-line error, never a traceback, and changes nothing.

API: a :class:`~master_sdk.MasterError` (mostly ``InputInvalid``). CLI: exit 1 and exactly one
line on stderr that says what to do. Covered: deep and huge JSON anywhere the CLI or the API
takes it, duplicate keys, inputs that are not objects, and identities (``by=``) that are not
identifiers.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import master_sdk as ms
from master_sdk.cli import main as cli
from tests.conftest import Project

SECRET = "Zebra-Canary-Secret-9137"
DEEP = "[" * 100_000 + "]" * 100_000
DEEP_OBJECT = '{"a":' * 100_000 + "1" + "}" * 100_000

ASK = """
id: ask
inputs: {type: object, properties: {text: {type: string}}}
steps:
  - {id: e, type: tool, tool: echo, input: {text: "{{ inputs.text }}"}}
  - id: q
    type: user_input
    prompt: anything
    schema: {type: object, properties: {note: {type: string}}}
  - {id: f, type: tool, tool: boom, input: {text: "x"}}
"""


@pytest.fixture
def proj(project: Project) -> Project:
    (project.root / "secrets").mkdir()
    (project.root / "secrets" / "secrets.yaml").write_text(f"a: {{b: {SECRET}}}\n", "utf-8")
    project.flow("ask", ASK)
    return project


@pytest.fixture
def wb(proj: Project) -> Iterator[ms.Workbench]:
    with proj.open() as bench:
        yield bench


def _snapshot(root: Path) -> list[tuple[object, ...]]:
    path = root / "storage" / "master.sqlite3"
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT run_id, status, version FROM runs ORDER BY run_id").fetchall()


def _one_line_error(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    code = cli(args)
    err = capsys.readouterr().err
    assert code == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


# ------------------------------------------------------------------------------- API


@pytest.mark.parametrize("data", [None, ["x"], "text", 3, [("a", 1)], {1: "x"}])
def test_submit_refuses_what_is_not_an_object(wb: ms.Workbench, data: object) -> None:
    """`run.submit(None)`, a list, a string, a number or non-string keys: InputInvalid, and
    the run still waits for its input."""
    run = wb.run("demo/ask", inputs={"text": "hi"})
    assert run.status == "waiting_input"
    with pytest.raises(ms.InputInvalid):
        run.submit(data)  # type: ignore[arg-type]
    assert run.refresh().status == "waiting_input"


@pytest.mark.parametrize("inputs", [["x"], "text", 3, {1: "x"}])
def test_run_refuses_inputs_that_are_not_an_object(wb: ms.Workbench, inputs: object) -> None:
    """`wb.run(ref, ["x"])` is InputInvalid and stores no run."""
    with pytest.raises(ms.InputInvalid):
        wb.run("demo/ask", inputs=inputs)  # type: ignore[arg-type]
    assert len(wb.runs()) == 0


def test_deep_data_through_the_api_is_refused(wb: ms.Workbench) -> None:
    """Input nested 100,000 deep is InputInvalid (no RecursionError), at start and submit."""
    deep: object = "x"
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(ms.InputInvalid):
        wb.run("demo/ask", inputs={"text": deep})
    run = wb.run("demo/ask", inputs={"text": "hi"})
    with pytest.raises(ms.InputInvalid):
        run.submit({"note": deep})
    assert run.refresh().status == "waiting_input"


@pytest.mark.parametrize(
    "by",
    [
        SECRET,
        SECRET.lower(),
        f"ana {SECRET}",
        "ana@example.com",
        "sk-proj-Cnry7f3KdQ9xLmP2vR8tW4yZ6bN1cH5jA0eGqT3u",
        "a" * 129,
        " ana",
        "ana ",
        "ana\u200b",
        "\uff41\uff4e\uff41",  # full-width "ana"
        "ana\nbob",
        "ana;drop",
        "<EMAIL>",
        42,
    ],
)
def test_identities_that_are_not_identifiers_are_refused(wb: ms.Workbench, by: object) -> None:
    """`by=` must be an identifier: too long, spaces at the ends, invisible or
    full-width characters, control characters, punctuation, placeholders, personal data and
    secrets-file values are refused (InputInvalid on field `by`) and nothing changes."""
    with pytest.raises(ms.InputInvalid) as info:
        wb.run("demo/ask", inputs={"text": "hi"}, by=by)  # type: ignore[arg-type]
    assert info.value.errors[0].path == "by"
    assert SECRET not in str(info.value)
    assert len(wb.runs()) == 0
    run = wb.run("demo/ask", inputs={"text": "hi"}, by="ana")
    with pytest.raises(ms.InputInvalid):
        run.submit({"note": "n"}, by=by)  # type: ignore[arg-type]
    with pytest.raises(ms.InputInvalid):
        run.abort("no", by=by)  # type: ignore[arg-type]
    assert run.refresh().status == "waiting_input"


@pytest.mark.parametrize(
    "by", ["ana", "ana.lopez", "reviewer-2", "Ana López", "ops+bot", "a" * 128]
)
def test_ordinary_identities_are_accepted_and_stored_as_given(wb: ms.Workbench, by: str) -> None:
    """User names with letters of any script, digits, `._@+-` and single spaces pass."""
    run = wb.run("demo/ask", inputs={"text": "hi"}, by=by)
    run.submit({"note": "n"}, by=by)
    assert wb.runs()["created_by"].tolist() == [by]


# ------------------------------------------------------------------------------- CLI


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--input", f"text:={DEEP}"], "nests too deeply"),
        (["--input", f"text:={DEEP_OBJECT}"], "nests too deeply"),
        (["--input", 'text:={"a": 1, "a": 2}'], "twice"),
        (["--input", "text=a", "--input", "text=b"], "twice"),
        (["--input", "text"], "KEY=VALUE"),
        (["--input", "text:={"], "not valid JSON"),
    ],
)
def test_cli_run_refuses_bad_json_with_one_line(
    proj: Project, capsys: pytest.CaptureFixture[str], args: list[str], says: str
) -> None:
    """Deep JSON, duplicate keys and malformed values: exit 1, one line, no run stored."""
    line = _one_line_error(["--root", str(proj.root), "run", "demo/ask", *args], capsys)
    assert says in line
    assert not (proj.root / "storage" / "master.sqlite3").exists() or _snapshot(proj.root) == []


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (DEEP, "nests too deeply"),
        ('{"text": "a", "text": "b"}', "twice"),
        ("[1, 2]", "JSON object"),
        ("\udcff", "not UTF-8"),
    ],
)
def test_cli_inputs_json_file_is_checked(
    proj: Project, tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, says: str
) -> None:
    """`--inputs-json FILE` with deep JSON, duplicate keys, a non-object or bad bytes."""
    path = tmp_path / "inputs.json"
    path.write_bytes(content.encode("utf-8", "surrogateescape"))
    line = _one_line_error(
        ["--root", str(proj.root), "run", "demo/ask", "--inputs-json", str(path)], capsys
    )
    assert says in line


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (DEEP, "nests too deeply"),
        ('{"note": "a", "note": "b"}', "twice"),
        ("null", "JSON object"),
        ('["x"]', "JSON object"),
        ('{"note": ' + "[" * 200 + "]" * 200 + "}", "nests deeper"),
        ('{"note": "' + "x" * 100_000 + '"}', "max_input_bytes"),
    ],
)
def test_cli_submit_refuses_bad_data_and_changes_nothing(
    proj: Project, capsys: pytest.CaptureFixture[str], data: str, says: str
) -> None:
    """`master submit --data` deep, duplicated, not an object, too deep for input or too
    large: exit 1, one line, and the run is as it was."""
    with proj.open() as wb:
        run = wb.run("demo/ask", inputs={"text": "hi"})
    before = _snapshot(proj.root)
    line = _one_line_error(["--root", str(proj.root), "submit", run.id, "--data", data], capsys)
    assert says in line
    assert _snapshot(proj.root) == before


def test_cli_skip_output_is_checked(proj: Project, capsys: pytest.CaptureFixture[str]) -> None:
    """`master skip --output` with deep or duplicated JSON: one line, nothing changed."""
    with proj.open() as wb:
        run = wb.run("demo/ask", inputs={"text": "hi"})
        run.submit({"note": "n"})
        assert run.status == "failed"
    before = _snapshot(proj.root)
    for output, says in ((DEEP, "nests too deeply"), ('{"a": 1, "a": 2}', "twice")):
        line = _one_line_error(
            ["--root", str(proj.root), "skip", run.id, "--output", output], capsys
        )
        assert says in line
    assert _snapshot(proj.root) == before


@pytest.mark.parametrize("by", [SECRET, "bob@example.com", "x" * 200])
def test_cli_by_is_an_identifier(
    proj: Project, capsys: pytest.CaptureFixture[str], by: str
) -> None:
    """`--by` with a secret, an address or 200 characters: one line without the value."""
    line = _one_line_error(
        ["--root", str(proj.root), "run", "demo/ask", "--input", "text=hi", "--by", by], capsys
    )
    assert "by" in line and SECRET not in line and "bob@" not in line


def test_a_huge_data_file_is_refused_unread(
    proj: Project, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--data @FILE` over 16 MiB is refused from its size, before it is read."""
    with proj.open() as wb:
        run = wb.run("demo/ask", inputs={"text": "hi"})
    big = tmp_path / "big.json"
    with big.open("wb") as handle:
        handle.truncate(17 * 2**20)  # a sparse file: no disk, no reading
    line = _one_line_error(
        ["--root", str(proj.root), "submit", run.id, "--data", f"@{big}"], capsys
    )
    assert "MiB" in line


def test_json_lines_import_with_deep_nesting_is_refused(
    proj: Project, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An import file with a line nested 100,000 deep: one line naming the line."""
    path = tmp_path / "deep.jsonl"
    header = {"format": "master_sdk.store", "schema_version": 1}
    path.write_text(json.dumps(header) + "\n" + DEEP + "\n", "utf-8")
    line = _one_line_error(["--root", str(proj.root), "store", "import", str(path)], capsys)
    assert "line 2" in line


@pytest.mark.parametrize(
    "call",
    [
        lambda wb: wb.traces(since="garbage"),
        lambda wb: wb.traces(since=5),
        lambda wb: wb.flow(None),
        lambda wb: wb.run(None),
        lambda wb: wb.run(5),
        lambda wb: wb.run("demo/ask", inputs={"text": "x" * 50_000_000}),
        lambda wb: wb.run("demo/ask", inputs={"text": float("nan")}),
        lambda wb: wb.run("demo/ask", inputs={"text": {1, 2}}),
        lambda wb: wb.run("demo/ask", inputs={"text": object()}),
        lambda wb: wb.run("demo/ask", inputs={"text": "hi"}).abort(reason=5),
        lambda wb: wb.run("demo/ask", inputs={"text": "hi"}).abort(reason="x" * 10**6),
    ],
)
def test_bad_arguments_raise_master_errors(wb: ms.Workbench, call: Any) -> None:
    """Wrong types and sizes for `since=`, refs, inputs, reasons: a MasterError, never a
    TypeError, ValueError or AttributeError from inside."""
    with pytest.raises(ms.MasterError):
        call(wb)


def test_a_huge_input_is_refused_without_serializing_it(wb: ms.Workbench) -> None:
    """A 200 MB input is refused from a bounded look (fast), not after encoding it."""
    import time

    start = time.process_time()
    with pytest.raises(ms.InputInvalid, match="max_input_bytes"):
        wb.run("demo/ask", inputs={"text": ["x" * 1000] * 200_000})
    assert time.process_time() - start < 1.0
