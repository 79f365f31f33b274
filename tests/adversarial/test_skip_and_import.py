"""Hand-given step outputs and imported files are untrusted input.

``run.skip(output=...)`` is checked against the step's output contract with the limits of
user input; an imported JSON Lines file is validated record by record and redacted on the way
in. Either refusal names what is wrong and changes nothing.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

import master_sdk as ms
from master_sdk.cli import main as cli
from tests.conftest import Project

SECRET = "Zebra-Canary-Secret-9137"
EMAIL = "canary.person@example-canary.org"

FLOWS = {
    "tool_then_read": """
        id: tool_then_read
        steps:
          - {id: c, type: tool, tool: count_or_fail, input: {text: "x"}}
          - {id: e, type: tool, tool: echo, input: {text: "n={{ steps.c.output.n }}"}}
        """,
    "agent_fails": """
        id: agent_fails
        steps:
          - {id: s, type: agent, agent: summarizer, input: {text: "x"}}
        output: "{{ steps.s.output.summary }}"
        """,
    "ask_then_fail": """
        id: ask_then_fail
        steps:
          - {id: f, type: tool, tool: boom, input: {text: "x"}}
          - id: q
            type: user_input
            prompt: p
            schema: {type: object, properties: {n: {type: integer}}, required: [n]}
        """,
    "unread": """
        id: unread
        steps:
          - {id: f, type: tool, tool: boom, input: {text: "x"}}
        """,
}

EXTRA = """

@tool
def count_or_fail(text: str) -> Counted:
    raise RuntimeError("fails")
"""


@pytest.fixture
def proj(project: Project) -> Project:
    components = project.root / "products" / "demo" / "components.py"
    components.write_text(components.read_text("utf-8") + EXTRA, "utf-8")
    for name, text in FLOWS.items():
        project.flow(name, text)
    (project.root / "secrets").mkdir()
    (project.root / "secrets" / "secrets.yaml").write_text(f"a: {{b: {SECRET}}}\n", "utf-8")
    return project


def _failed(wb: ms.Workbench, ref: str) -> ms.Run:
    run = wb.run(ref)
    assert run.status == "failed", run.error
    return run


def _state(run: ms.Run) -> tuple[str, int]:
    run.refresh()
    return run.status, len(run.trace())


@pytest.mark.parametrize(
    ("output", "fields"),
    [
        (None, [""]),
        ({}, ["n"]),
        ({"n": "3"}, ["n"]),
        ({"n": None}, ["n"]),
        ({"n": 3, "extra": 1}, ["extra"]),
        (["n", 3], [""]),
        ("3", [""]),
        ({"n": 3.5}, ["n"]),
        ({"n": True}, ["n"]),
    ],
)
def test_skip_output_must_match_the_tool_output_model(
    proj: Project, output: Any, fields: list[str]
) -> None:
    """Wrong shape, wrong type, None where a later step reads the output, extra fields:
    InputInvalid naming each failing field; the run is unchanged."""
    with proj.open() as wb:
        run = _failed(wb, "demo/tool_then_read")
        before = _state(run)
        with pytest.raises(ms.InputInvalid) as info:
            run.skip(output)
        assert sorted(e.path for e in info.value.errors) == fields, info.value
        assert _state(run) == before
        run.skip({"n": 3})
        assert run.status == "completed"
        assert run.steps().set_index("step_id").loc["e", "output"] == {"text": "n=3"}


def test_skip_output_lists_every_failing_field(proj: Project) -> None:
    """Several wrong fields are reported together."""
    proj.flow(
        "two",
        """
        id: two
        steps:
          - {id: f, type: tool, tool: boom, input: {text: "x"}}
          - {id: e, type: tool, tool: echo, input: {text: "{{ steps.f.output.text }}"}}
        """,
    )
    with proj.open() as wb:
        run = _failed(wb, "demo/two")
        with pytest.raises(ms.InputInvalid) as info:
            run.skip({"text": 1, "a": 2, "b": 3})
        assert {e.path for e in info.value.errors} == {"text", "a", "b"}


def test_skip_output_is_limited_in_size_and_depth(proj: Project) -> None:
    """A 5 MB output or one nested 200 deep is refused like user input."""
    with proj.open() as wb:
        run = _failed(wb, "demo/unread")
        before = _state(run)
        for output in ({"text": "x" * 5_000_000}, {"text": _deep(200)}):
            with pytest.raises(ms.InputInvalid):
                run.skip(output)
        assert _state(run) == before
        run.skip()  # nothing reads it: no output is fine
        assert run.status == "completed"


def _deep(n: int) -> Any:
    value: Any = "x"
    for _ in range(n):
        value = [value]
    return value


def test_skip_output_of_an_agent_step_is_its_output_model(proj: Project) -> None:
    """An agent step's output must be its AgentOutput model; control fields are refused."""
    from master_sdk.testing import ScriptedModel

    model = ScriptedModel([RuntimeError("model down")])
    with proj.open(providers={"default": model}) as wb:
        run = wb.run("demo/agent_fails")
        assert run.status == "failed"
        for bad in ({"summary": 1}, {"summary": "ok", "next_step": "x"}, None, {}):
            with pytest.raises(ms.InputInvalid):
                run.skip(bad)
        run.skip({"summary": f"mail {EMAIL}"})
        assert run.status == "completed" and run.output == "mail <EMAIL>"


# ----------------------------------------------------------------------------- imports


def _export(proj: Project, tmp_path: Path) -> tuple[Path, list[str]]:
    proj.flow(
        "plain",
        """
        id: plain
        steps:
          - {id: e, type: tool, tool: echo, input: {text: "hi"}}
        """,
    )
    source = tmp_path / "source.sqlite3"
    with proj.open(store=source) as wb:
        wb.run("demo/plain")
        path = tmp_path / "share.jsonl"
        wb.export_store(path)
    return path, path.read_text("utf-8").splitlines()


def _tamper(lines: list[str], change: Any) -> list[str]:
    out = []
    for line in lines:
        record = json.loads(line)
        if record.get("kind") == "run":
            change(record)
        out.append(json.dumps(record))
    return out


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda r: r["run"].update(product=EMAIL), "run.product"),
        (lambda r: r["run"].update(product=SECRET), "run.product"),
        (lambda r: r["run"].update(flow="a b"), "run.flow"),
        (lambda r: r["run"].update(run_id="../../etc"), "run.run_id"),
        (lambda r: r["run"].update(status="hacked"), "run.status"),
        (lambda r: r["run"].update(tokens_in=-1), "run.tokens_in"),
        (lambda r: r["run"].update(cursor="1"), "run.cursor"),
        (lambda r: r["run"].update(created_by=SECRET), "run.created_by"),
        (lambda r: r["run"].update(error="x" * 2_000_000), "run.error"),
        (lambda r: r["steps"][0].update(step_id=EMAIL), "steps[0].step_id"),
        (lambda r: r["steps"][0].update(type="shell"), "steps[0].type"),
        (lambda r: r["trace"][0].update(event=999), "event"),
        (lambda r: r["trace"][0].update(attrs=_deep(150)), "trace[0].attrs"),
        (lambda r: r.update(steps="nope"), "steps"),
    ],
)
def test_a_tampered_import_is_refused_naming_line_and_field(
    proj: Project, tmp_path: Path, change: Any, field: str
) -> None:
    """Each bad record gives a StoreError naming the file's line and the field (and never
    the planted value); nothing is imported."""
    path, lines = _export(proj, tmp_path)
    path.write_text("\n".join(_tamper(lines, change)) + "\n", "utf-8")
    target = tmp_path / "target.sqlite3"
    with proj.open(store=target) as wb:
        with pytest.raises(ms.StoreError) as info:
            wb.import_store(path)
        message = str(info.value)
        assert f"line {len(lines)}" in message and field in message, message
        assert SECRET not in message and EMAIL not in message
        assert len(wb.runs()) == 0


def test_personal_data_in_free_text_is_redacted_on_the_way_in(
    proj: Project, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """PII and secrets planted in an import's error, output, trace attributes and flow
    source are stored redacted; `master show` and a re-export show no trace of them."""
    path, lines = _export(proj, tmp_path)

    def plant(record: dict[str, Any]) -> None:
        record["run"]["error"] = f"mail {EMAIL} secret {SECRET}"
        record["run"]["output"] = {"to": EMAIL, "k": SECRET.upper()}
        record["steps"][0]["output"] = {"text": EMAIL}
        record["trace"][0]["attrs"] = {"who": EMAIL, SECRET: 1}

    tampered = _tamper(lines, plant)
    tampered = [
        json.dumps({**json.loads(t), "source": f"# {EMAIL} {SECRET}"})
        if json.loads(t).get("kind") == "flow"
        else t
        for t in tampered
    ]
    path.write_text("\n".join(tampered) + "\n", "utf-8")
    target = tmp_path / "target.sqlite3"
    with proj.open(store=target) as wb:
        report = wb.import_store(path)
        (run_id,) = report.runs
        again = tmp_path / "again.jsonl"
        wb.export_store(again)
    assert cli(["--root", str(proj.root), "--store", str(target), "show", run_id]) == 0
    shown = capsys.readouterr().out
    with sqlite3.connect(target) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    for text in (target.read_bytes().decode("latin-1"), again.read_text("utf-8"), shown):
        assert EMAIL not in text and SECRET not in text and SECRET.upper() not in text


def test_a_tampered_sqlite_import_is_refused_too(proj: Project, tmp_path: Path) -> None:
    """An SQLite export edited to hold an address as a product name and a secret in an
    error: refused naming the run and the field, nothing imported; with only the error
    planted, the import succeeds and stores it redacted."""
    _export(proj, tmp_path)
    share = tmp_path / "share.sqlite3"
    with proj.open(store=tmp_path / "source.sqlite3") as wb:
        wb.export_store(share)
    with sqlite3.connect(share) as conn:
        conn.execute("UPDATE runs SET product = ?, error = ?", (EMAIL, f"oops {SECRET}"))
    target = tmp_path / "target.sqlite3"
    with proj.open(store=target) as wb:
        with pytest.raises(ms.StoreError, match=r"run 1: invalid record: run\.product"):
            wb.import_store(share)
        assert len(wb.runs()) == 0
    with sqlite3.connect(share) as conn:
        conn.execute("UPDATE runs SET product = 'demo'")
    with proj.open(store=target) as wb:
        (run_id,) = wb.import_store(share).runs
        assert wb.get_run(run_id, recover=False).error == "oops <SECRET>"
    with sqlite3.connect(target) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert SECRET not in target.read_bytes().decode("latin-1")


def test_a_sqlite_import_with_a_deeply_nested_value_is_refused(
    proj: Project, tmp_path: Path
) -> None:
    """A store file whose run output nests 100,000 deep: a StoreError, nothing imported."""
    _export(proj, tmp_path)
    share = tmp_path / "share.sqlite3"
    with proj.open(store=tmp_path / "source.sqlite3") as wb:
        wb.export_store(share)
    with sqlite3.connect(share) as conn:
        conn.execute("UPDATE runs SET output = ?", ("[" * 100_000 + "]" * 100_000,))
    with proj.open(store=tmp_path / "target.sqlite3") as wb:
        with pytest.raises(ms.StoreError, match="nested too deeply"):
            wb.import_store(share)
        assert len(wb.runs()) == 0
