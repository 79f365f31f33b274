"""Encoded canaries planted at every entrance never reach any exit.

A secrets-file value in its common encodings (upper and lower case, base64 at every byte
alignment in both alphabets, hex in both cases, URL-encoded, HTML entities, zero-width
characters inserted) and personal data written to slip past a detector (an e-mail with a
zero-width space and one in full-width letters, a card with dots, an SSN without dashes, a
key with a zero-width joiner) are planted in a tool's output, the flow inputs, a user's form
input and approval comment, a model's reply, an exception, flow template constants, a
refused ``by=``, a hand-given skip output and a tampered import. Then the raw SQLite file and
its ``-wal`` (read while the workbench is open), the log file, JSON Lines and SQLite exports,
CLI output (stdout and stderr), the public frames, the run properties, the errors raised and
every live widget are searched for every form — also after decoding JSON escapes and folding
the text as detectors do: zero hits.
"""

from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path

import pytest
from ipywidgets.widgets.widget import _instances as live_widgets

import master_sdk as ms
from master_sdk.cli import main as cli
from master_sdk.governance.normalise import fold
from master_sdk.models.providers.fake import FakeProvider
from tests.conftest import Project

SECRET = "Zebra-Canary-Secret-9137"
KEY = "sk-proj-Cnry7f3KdQ9xLmP2vR8tW4yZ6bN1cH5jA0eGqT3u"
EMAIL = "canary.person@example-canary.org"
CARD_DIGITS = "4539148803436467"
SSN_DIGITS = "536228190"


def _b64(prefix: str, alphabet: str = "std") -> str:
    data = (prefix + SECRET).encode()
    enc = base64.b64encode if alphabet == "std" else base64.urlsafe_b64encode
    return enc(data).decode()


SECRET_FORMS = {
    "upper": SECRET.upper(),
    "lower": SECRET.lower(),
    "b64-0": _b64(""),
    "b64-1": _b64("k").rstrip("="),
    "b64-2": _b64("ke", "url"),
    "b64-user": _b64("user:"),
    "hex": SECRET.encode().hex(),
    "HEX": SECRET.encode().hex().upper(),
    "url": "".join(f"%{b:02X}" for b in SECRET.encode()),
    "html-dec": "".join(f"&#{ord(c)};" for c in SECRET),
    "html-hex": "".join(f"&#x{ord(c):x};" for c in SECRET),
    "zero-width": "\u200b".join(SECRET),
}
PII_FORMS = {
    "email-zw": EMAIL.replace("@", "\u200b@"),
    "email-fullwidth": "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in EMAIL),
    "email-entity": EMAIL.replace("@", "&#64;"),
    "card-dots": ".".join(CARD_DIGITS[i : i + 4] for i in range(0, 16, 4)),
    "card-zw": "\u200c".join(CARD_DIGITS),
    "ssn": f"SSN {SSN_DIGITS}",
    "ssn-spaces": f"{SSN_DIGITS[:3]} {SSN_DIGITS[3:5]} {SSN_DIGITS[5:]}",
    "key-zw": KEY.replace("proj", "pr\u200doj"),
}
ALL = " | ".join([*SECRET_FORMS.values(), *PII_FORMS.values()])
# the planted strings themselves, and what any of them decodes or folds to
NEEDLES = {
    **SECRET_FORMS,
    **PII_FORMS,
    "secret": SECRET,
    "email": EMAIL,
    "card": CARD_DIGITS,
    "card-dotted": PII_FORMS["card-dots"],
    "ssn-digits": SSN_DIGITS,
    "key": KEY,
    "b64-core": base64.b64encode(SECRET.encode()).decode()[:24],
}
_JSON_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")


def views(text: str) -> list[str]:
    """The text, with JSON \\u escapes decoded, with HTML entities decoded, and folded."""
    decoded = _JSON_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)
    unescaped = html.unescape(decoded)
    return [text, decoded, fold(decoded), fold(unescaped)]


def hits(data: bytes | str, where: str) -> list[str]:
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    found = []
    for view in views(text):
        low = view.lower()
        for name, needle in NEEDLES.items():
            if needle in view or (
                name in ("secret", "hex", "upper", "lower") and needle.lower() in low
            ):
                found.append(f"{where}: {name}")
    return sorted(set(found))


COMPONENTS = f"""

@tool
def leak(text: str) -> dict:
    return {{"leaked": {ALL!r}, "echo": text}}


@tool
def explode(text: str) -> Echoed:
    raise RuntimeError("failed for " + {ALL!r} + " while handling " + text)


@tool
def free(text: str) -> dict:
    raise RuntimeError("needs a hand")
"""

FLOWS = {
    "leaky": f"""
id: leaky
inputs: {{type: object, properties: {{text: {{type: string}}}}, required: [text]}}
steps:
  - id: ask
    type: user_input
    prompt: {json.dumps("Anything? " + ALL)}
    schema:
      type: object
      properties: {{note: {{type: string}}}}
      required: [note]
  - id: leak
    type: tool
    tool: leak
    input: {{text: "{{{{ steps.ask.output.note }}}} {SECRET_FORMS["b64-user"]}"}}
  - id: review
    type: hitl
    prompt: {json.dumps("Send it? " + ALL)}
    show: "{{{{ steps.leak.output }}}}"
  - {{id: summary, type: agent, agent: summarizer, input: {{text: "{{{{ inputs.text }}}}"}}}}
output:
  summary: "{{{{ steps.summary.output.summary }}}}"
  constant: {json.dumps(ALL)}
""",
    "failing": """
id: failing
inputs: {type: object, properties: {text: {type: string}}}
steps:
  - {id: x, type: tool, tool: explode, input: {text: "{{ inputs.text }}"}}
""",
    "skippable": """
id: skippable
steps:
  - {id: f, type: tool, tool: free, input: {text: "x"}}
  - {id: e, type: tool, tool: echo, input: {text: "got {{ steps.f.output.text }}"}}
""",
}


@pytest.fixture
def canary_project(project: Project) -> Project:
    root = project.root
    components = root / "products" / "demo" / "components.py"
    components.write_text(components.read_text(encoding="utf-8") + COMPONENTS, "utf-8")
    for name, text in FLOWS.items():
        project.flow(name, text)
    (root / "secrets").mkdir()
    (root / "secrets" / "secrets.yaml").write_text(f"vendor: {{token: {SECRET}}}\n", "utf-8")
    (root / "configs" / "app.yaml").write_text(
        "log_file: logs/master.log\nlog_level: DEBUG\n", encoding="utf-8"
    )
    return project


def _tampered_import(root: Path, tmp_path: Path) -> Path:
    """An export of a plain run with the canaries written into its free text."""
    source = tmp_path / "other.sqlite3"
    with ms.Workbench.open(root, store=source, providers={"default": FakeProvider()}) as wb:
        wb.run("demo/failing", inputs={"text": "plain"})
        path = tmp_path / "tampered.jsonl"
        wb.export_store(path)
    lines = []
    for line in path.read_text("utf-8").splitlines():
        record = json.loads(line)
        if record.get("kind") == "run":
            record["run"]["error"] = ALL
            record["run"]["output"] = {"planted": ALL}
            record["steps"][0]["error"] = ALL
            record["trace"][0]["attrs"] = {"planted": ALL}
        if record.get("kind") == "flow":
            record["source"] = record["source"] + f"\n# {ALL}\n"
        lines.append(json.dumps(record))
    path.write_text("\n".join(lines) + "\n", "utf-8")
    return path


def test_no_encoded_canary_reaches_any_exit(
    canary_project: Project, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Zero hits for every encoding in the store, WAL, log, exports, CLI output, frames,
    run properties, errors and widgets."""
    root = canary_project.root
    opened_before = set(live_widgets)
    model = FakeProvider(responses=[f"The summary repeats {ALL}"])
    wb = ms.Workbench.open(root, providers={"default": model})
    found: list[str] = []

    run = wb.run("demo/leaky", inputs={"text": f"input {ALL}"}, by="ana")
    view = run.view()
    form = run.form()
    form.fields["note"].value = f"note {ALL}"
    form.submit_button.click()
    assert run.status == "waiting_approval", form.status
    for bad_by in (SECRET_FORMS["b64-user"], SECRET_FORMS["upper"], PII_FORMS["email-zw"]):
        with pytest.raises(ms.InputInvalid) as info:
            run.approve(comment="x", by=bad_by)
        found += hits(f"{info.value} {info.value.errors!r}", "refused by=")
    approval = run.form()
    approval.comment.value = f"approved, {ALL}"
    approval.approve_button.click()
    assert run.status == "completed", run.error
    view.update()

    failed = wb.run("demo/failing", inputs={"text": ALL})
    assert failed.status == "failed" and "<SECRET>" in (failed.error or "")
    skipped = wb.run("demo/skippable")
    assert skipped.status == "failed"
    skipped.skip({"text": ALL, "more": [ALL]})
    assert skipped.status == "completed", skipped.error
    for other in (failed, skipped):
        other.view().update()

    report = wb.import_store(_tampered_import(root, tmp_path))
    assert len(report.runs) == 1
    imported = wb.get_run(report.runs[0])

    store = root / "storage" / "master.sqlite3"
    wal = Path(f"{store}-wal")
    assert wal.stat().st_size > 0
    for path in (store, wal):
        found += hits(path.read_bytes(), path.name)
    found += hits((root / "logs" / "master.log").read_text("utf-8"), "log")

    for target in (tmp_path / "all.jsonl", tmp_path / "all.sqlite3"):
        wb.export_store(target)
        found += hits(target.read_bytes(), target.name)

    frames = [wb.runs(), wb.traces(), wb.approvals()]
    for r in (run, failed, skipped, imported):
        frames += [r.steps(), r.trace(), r.budget()]
        shown = {"output": r.output, "inputs": r.inputs, "error": r.error, "ref": r.ref}
        found += hits(json.dumps(shown, default=str), "run properties")
    for frame in frames:
        found += hits(frame.to_json(date_format="iso", default_handler=str), "frame")
    states = [w.get_state() for w in list(live_widgets.values())]
    assert states
    found += hits(json.dumps(states, default=str), "widget state")

    capsys.readouterr()
    args = ["--root", str(root)]
    for r in (run, failed, skipped, imported):
        cli([*args, "show", r.id, "--no-recover"])
        cli([*args, "trace", r.id, "--format", "json"])
        cli([*args, "trace", r.id, "--format", "csv"])
    cli([*args, "runs"])
    cli([*args, "run", "demo/failing", "--input", f"text={ALL}"])
    cli([*args, "run", "demo/leaky", "--input", f"text={ALL}", "--by", SECRET_FORMS["lower"]])
    canary_project.flow(
        "broken", f"id: broken\nsteps:\n  - {{id: s, type: tool, tool: {json.dumps(ALL)}}}\n"
    )
    cli([*args, "validate"])
    out = capsys.readouterr()
    assert "<SECRET>" in out.out + out.err
    found += hits(out.out, "cli stdout") + hits(out.err, "cli stderr")
    for problem in wb.validate():
        found += hits(f"{problem} {vars(problem)!r}", "validate()")

    wb.close()
    found += hits(store.read_bytes(), "store after checkpoint")
    for key in set(live_widgets) - opened_before:  # what was typed stays out of later tests
        live_widgets[key].close()
    assert found == []


def test_the_encoded_canaries_are_really_planted(canary_project: Project) -> None:
    """Without the secrets file and the detectors the same run would leak every form: the
    zero above is redaction at work, not canaries that never arrived."""
    root = canary_project.root
    (root / "configs" / "policy.yaml").write_text(
        "policy: {redaction: {enabled: false}}\n", encoding="utf-8"
    )
    (root / "secrets" / "secrets.yaml").unlink()
    with ms.Workbench.open(root, providers={"default": FakeProvider(responses=["x"])}) as wb:
        failed = wb.run("demo/failing", inputs={"text": "x"})
        error = failed.error or ""
    for name in ("b64-user", "hex", "html-dec", "zero-width", "email-fullwidth", "card-dots"):
        assert NEEDLES[name] in error, name
