"""Every message that leaves the library is redacted: exceptions raised by the API, the
problems `validate()` returns, the CLI's stdout and stderr, and the widget text.

A flow file, a secrets file, a tool's exception and a user's input are all user data that
error messages are built from; each is planted with secrets-file values (and their
encodings), keys, e-mail addresses and card numbers, and each path out is checked.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

import master_sdk as ms
from master_sdk.cli import main as cli
from tests.conftest import Project

SECRET = "Zebra-Canary-Secret-9137"
KEY = "sk-proj-Cnry7f3KdQ9xLmP2vR8tW4yZ6bN1cH5jA0eGqT3u"
EMAIL = "canary.person@example-canary.org"
CARD = "4539148803436467"
B64 = base64.b64encode(f"user:{SECRET}".encode()).decode()
HEX = SECRET.encode().hex().upper()
NEEDLES = (SECRET, SECRET.lower(), SECRET.upper(), KEY, EMAIL, CARD, B64, HEX, "Q2FuYXJ5")
ALL = f"{KEY} {EMAIL} {CARD} {SECRET} {SECRET.upper()} {B64} {HEX}"


def leaks(text: str) -> list[str]:
    return [needle for needle in NEEDLES if needle in text]


@pytest.fixture
def leaky(project: Project) -> Project:
    root = project.root
    (root / "secrets").mkdir()
    (root / "secrets" / "secrets.yaml").write_text(f"vendor: {{token: {SECRET}}}\n", "utf-8")
    project.flow(
        "bad_tool",
        f"""
        id: bad_tool
        steps:
          - id: s1
            type: tool
            tool: "{ALL}"
            input: {{text: hi}}
        """,
    )
    project.flow(
        "bad_ref",
        f"""
        id: bad_ref
        steps:
          - id: s1
            type: tool
            tool: echo
            input: {{text: "{{{{ inputs.x }}}} {{{{ steps.{SECRET.replace("-", "_")}.output }}}}"}}
        """,
    )
    project.flow(
        "boom",
        """
        id: boom
        inputs: {type: object, properties: {text: {type: string}}}
        steps:
          - {id: b, type: tool, tool: boom, input: {text: "{{ inputs.text }}"}}
        """,
    )
    project.flow(
        "strict",
        """
        id: strict
        inputs:
          type: object
          properties: {text: {type: string, maxLength: 3}}
          required: [text]
          additionalProperties: false
        steps:
          - {id: e, type: tool, tool: echo, input: {text: "{{ inputs.text }}"}}
        """,
    )
    return project


def test_validate_returns_redacted_problems(leaky: Project) -> None:
    """`wb.validate()` lists each broken flow without any planted value."""
    with leaky.open() as wb:
        problems = wb.validate()
    assert len(problems) == 2
    text = " ".join(str(p) for p in problems) + " ".join(
        str(v) for p in problems for v in vars(p).values()
    )
    assert leaks(text) == []
    assert "<SECRET>" in text and "<API_KEY>" in text


@pytest.mark.parametrize("ref", ["demo/bad_tool", "demo/bad_ref"])
def test_loading_a_broken_flow_raises_a_redacted_flow_error(leaky: Project, ref: str) -> None:
    """`wb.run`, `wb.flow` on a broken flow raise a FlowError whose text, fields and chain
    hold no planted value."""
    with leaky.open() as wb:
        for call in (lambda: wb.run(ref), lambda: wb.flow(ref)):
            with pytest.raises(ms.FlowError) as info:
                call()
            exc = info.value
            chain = [exc, exc.__cause__, exc.__context__]
            text = " ".join(repr(e) for e in chain if e) + repr(vars(exc))
            assert leaks(text) == [], text


def test_a_tool_exception_is_redacted_in_the_run_error(leaky: Project) -> None:
    """A tool raising with secrets in its message fails the run with a redacted error."""
    with leaky.open() as wb:
        run = wb.run("demo/boom", inputs={"text": ALL})
        assert run.status == "failed"
        assert leaks(run.error or "") == [] and "<SECRET>" in (run.error or "")


def test_invalid_input_names_fields_without_planted_values(leaky: Project) -> None:
    """InputInvalid for extra keys named like secrets and too-long values holds no value."""
    with leaky.open() as wb, pytest.raises(ms.InputInvalid) as info:
        wb.run("demo/strict", inputs={"text": ALL, SECRET: 1, EMAIL: 2})
    exc = info.value
    assert leaks(str(exc) + repr(exc.errors)) == []


def test_a_config_error_at_open_is_redacted(project: Project) -> None:
    """A broken configuration file quoting a key or an address raises a redacted ConfigError."""
    (project.root / "configs" / "app.yaml").write_text(f"{KEY}: {EMAIL}\n", "utf-8")
    with pytest.raises(ms.ConfigError) as info:
        ms.Workbench.open(project.root)
    assert leaks(str(info.value) + repr(vars(info.value))) == []


def test_wb_redact_hides_every_encoding(leaky: Project) -> None:
    """The public `wb.redact` is the same redaction: every encoding of the secret goes."""
    with leaky.open() as wb:
        assert leaks(wb.redact(ALL)) == []
        assert wb.redact({"k": [ALL]}) == {"k": [wb.redact(ALL)]}
        clean = {"run": "0123456789abcdef0123456789abcdef"}
        assert wb.redact(clean) is clean


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_validate_and_run_print_redacted_errors(
    leaky: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    """`master validate` and `master run` on broken flows print one redacted line each."""
    root = str(leaky.root)
    code, out, err = _cli(["--root", root, "validate"], capsys)
    assert code == 1 and leaks(out + err) == [] and err.count("error:") == 2
    for ref in ("demo/bad_tool", "demo/bad_ref"):
        code, out, err = _cli(["--root", root, "run", ref], capsys)
        assert code == 1 and leaks(out + err) == [], err
        assert len(err.strip().splitlines()) == 1


def test_cli_output_and_argument_errors_are_redacted(
    leaky: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    """Run output echoing planted inputs, and argument errors quoting them, are redacted."""
    root = str(leaky.root)
    code, out, err = _cli(["--root", root, "run", "demo/boom", "--input", f"text={ALL}"], capsys)
    assert code == 1 and leaks(out + err) == []
    code, out, err = _cli(["--root", root, "run", "demo/boom", "--input", f"{KEY}{SECRET}"], capsys)
    assert code == 1 and leaks(out + err) == [] and "KEY=VALUE" in err
    code, out, err = _cli(["--root", root, "show", SECRET], capsys)
    assert code == 1 and leaks(out + err) == []


def test_form_errors_never_echo_typed_text(leaky: Project) -> None:
    """A number list field typed with a secret shows an error without the secret."""
    leaky.flow(
        "ask",
        """
        id: ask
        steps:
          - id: q
            type: user_input
            prompt: numbers
            schema:
              type: object
              properties: {ids: {type: array, items: {type: integer}}}
        """,
    )
    with leaky.open() as wb:
        run = wb.run("demo/ask")
        form = run.form()
        form.fields["ids"].control.value = f"1\n{SECRET}"
        form.submit_button.click()
        assert form.status == "invalid"
        assert leaks(repr(form.errors) + str(form.fields["ids"].error)) == []


def test_flow_diagrams_are_redacted(leaky: Project, tmp_path: Path) -> None:
    """`wb.flow(ref).steps`, `.mermaid()` and `.svg()` show guards without planted values."""
    leaky.flow(
        "guarded",
        f"""
        id: guarded
        steps:
          - {{id: e, type: tool, tool: echo, input: {{text: hi}},
             when: "'{SECRET}' != '{EMAIL}'"}}
        """,
    )
    with leaky.open() as wb:
        view = wb.flow("demo/guarded")
        assert leaks(repr(view.steps) + view.mermaid() + view.svg()) == []
