"""Canary secrets and personal data planted at every entrance never reach any exit.

Distinct canaries — an OpenAI-style key, an e-mail address, a Luhn-valid card number and a
value of the secrets file — are planted in a tool's output, the flow inputs, a user's form
input and approval comment, a model's reply, an exception message, a policy violation and
template constants of the flow file. Flows run to completion, to failure and to a block,
with the trace log on. Then the raw bytes of the SQLite file and its ``-wal`` (read while
the workbench is still open, before closing checkpoints it), the log file, the CLI's
exports, a store export and the state of every live notebook widget are searched: no
canary may appear in any of them.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from ipywidgets.widgets.widget import _instances as live_widgets  # every widget not closed

import master_sdk as ms
from master_sdk.cli import main as cli
from master_sdk.models.providers.fake import FakeProvider
from tests.conftest import Project

KEY = "sk-proj-Cnry7f3KdQ9xLmP2vR8tW4yZ6bN1cH5jA0eGqT3u"
EMAIL = "canary.person@example-canary.org"
CARD = "4539148803436467"
SECRET = "Zebra-Canary-Secret-9137"
NEEDLES = (KEY, EMAIL, CARD, "4539 1488 0343 6467", SECRET)
ALL = f"key {KEY} mail {EMAIL} card 4539 1488 0343 6467 / {CARD} secret {SECRET}"

COMPONENTS = f'''

@tool
def leak(text: str) -> dict:
    return {{"leaked": "{ALL}", "echo": text}}


@tool
def explode(text: str) -> Echoed:
    raise RuntimeError("failed for {ALL} while handling " + text)


@agent(model="default")
def prober(ctx: AgentContext, text: str) -> Summary:
    return Summary(summary=ctx.complete(text, model="{EMAIL}").text)
'''

FLOWS = {
    "leaky": f"""
id: leaky
inputs: {{type: object, properties: {{text: {{type: string}}}}, required: [text]}}
steps:
  - id: ask
    type: user_input
    prompt: "Anything for {EMAIL}? (key {KEY})"
    schema:
      type: object
      properties: {{note: {{type: string, description: "like {CARD}"}}}}
      required: [note]
  - id: leak
    type: tool
    tool: leak
    input: {{text: "{{{{ steps.ask.output.note }}}} {SECRET}"}}
  - id: review
    type: hitl
    prompt: "Send to {EMAIL} with card {CARD}?"
    show: "{{{{ steps.leak.output }}}}"
  - {{id: summary, type: agent, agent: summarizer, input: {{text: "{{{{ inputs.text }}}}"}}}}
output:
  summary: "{{{{ steps.summary.output.summary }}}}"
  constant: "{KEY} / {SECRET} / {EMAIL}"
""",
    "failing": """
id: failing
inputs: {type: object, properties: {text: {type: string}}}
steps:
  - {id: x, type: tool, tool: explode, input: {text: "{{ inputs.text }}"}}
""",
    "blocked": """
id: blocked
steps:
  - {id: c, type: agent, agent: prober, input: {text: hi}}
""",
}


def hits(data: bytes | str, where: str) -> list[str]:
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    return [f"{where}: {needle!r}" for needle in NEEDLES if needle in text]


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


def test_no_canary_reaches_the_store_logs_exports_or_widgets(
    canary_project: Project, tmp_path: Path
) -> None:
    """Zero hits in the SQLite file, its WAL, the log, CLI and store exports, public frames
    and the notebook widgets, after runs that complete, fail and are blocked."""
    root = canary_project.root
    model = FakeProvider(responses=[f"The summary repeats {ALL}"])
    wb = ms.Workbench.open(root, providers={"default": model})

    # a run completed through the notebook view: form input and approval comment typed in
    run = wb.run("demo/leaky", inputs={"text": f"input {ALL}"})
    view = run.view()
    form = run.form()
    form.fields["note"].value = f"note {ALL}"
    form.submit_button.click()
    assert run.status == "waiting_approval", form.status
    approval = run.form()
    approval.comment.value = f"approved, {ALL}"
    approval.approve_button.click()
    assert run.status == "completed", run.error
    assert "<EMAIL>" in json.dumps(run.output)
    view.update()

    # a run failed by an exception, and one blocked by a model name that is an address
    failed = wb.run("demo/failing", inputs={"text": ALL})
    assert failed.status == "failed" and "<API_KEY>" in (failed.error or "")
    blocked = wb.run("demo/blocked")  # the agent asks for a model named like an address
    assert blocked.status == "blocked", blocked.error
    for other in (failed, blocked):
        other.view().update()

    found: list[str] = []
    store = root / "storage" / "master.sqlite3"
    wal = Path(f"{store}-wal")
    assert wal.stat().st_size > 0, "the WAL holds the commits until the workbench closes"
    for path in (store, wal, Path(f"{store}-shm")):
        found += hits(path.read_bytes(), path.name)

    log = root / "logs" / "master.log"
    log_text = log.read_text(encoding="utf-8")
    assert "run_completed" in log_text and "policy_violation" in log_text
    found += hits(log_text, "log")

    exports = tmp_path / "exports"
    exports.mkdir()
    for r in (run, failed, blocked):
        for fmt in ("csv", "json", "table"):
            out = exports / f"{r.id}.{fmt}"
            assert cli(["--root", str(root), "trace", r.id, "--format", fmt, "-o", str(out)]) == 0
            found += hits(out.read_bytes(), f"cli trace {fmt}")
    for target in (exports / "all.jsonl", exports / "all.sqlite3"):
        wb.export_store(target)
        found += hits(target.read_bytes(), target.name)

    frames = [wb.runs(), wb.traces(), wb.approvals(), run.steps(), run.trace()]
    frames += [r.budget() for r in (run, failed, blocked)]
    for frame in frames:
        found += hits(frame.to_json(date_format="iso", default_handler=str), "frame")
    for r in (run, failed, blocked):
        shown = {"output": r.output, "inputs": r.inputs, "error": r.error}
        found += hits(json.dumps(shown, default=str), "run properties")

    states = [w.get_state() for w in list(live_widgets.values())]
    assert states, "the views are live widgets"
    found += hits(json.dumps(states, default=str), "widget state")

    # the trace's name table holds the flows' step ids and tool, agent and model names only
    with closing(sqlite3.connect(store)) as conn:
        names = {r[0] for r in conn.execute("SELECT text FROM trace_names")}
    steps = {"ask", "leak", "review", "summary", "x", "c"}
    assert names == steps | {"explode", "summarizer", "prober", "default"}

    wb.close()
    found += hits(store.read_bytes(), "store after checkpoint")
    assert found == []


def test_canaries_are_really_planted(canary_project: Project) -> None:
    """The same flows without the secrets file and detectors would leak: the canaries reach
    the components and the model, so the zero above is redaction at work."""
    root = canary_project.root
    (root / "configs" / "policy.yaml").write_text(
        "policy: {redaction: {enabled: false}}\n", encoding="utf-8"
    )
    (root / "secrets" / "secrets.yaml").unlink()
    wb = ms.Workbench.open(root, providers={"default": FakeProvider(responses=["x"])})
    failed = wb.run("demo/failing", inputs={"text": "x"})
    assert KEY in (failed.error or "") and EMAIL in (failed.error or "")
    wb.close()
    assert KEY in (root / "logs" / "master.log").read_text(encoding="utf-8")
