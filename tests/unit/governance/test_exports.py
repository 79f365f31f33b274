"""Redaction on the way out: frames, run properties and CLI exports, even for data stored
before a secret was known."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from master_sdk.cli import main as cli
from master_sdk.contracts.policy import RedactionPolicy
from master_sdk.governance.exports import redact_frame
from master_sdk.governance.redaction import Redactor
from master_sdk.governance.scrubbing import build_redactor
from tests.conftest import Project

LATE_SECRET = "tok-Zq81-LATE-SECRET-77"


def test_a_clean_frame_comes_back_as_the_same_object() -> None:
    """Nothing to redact: no copy is made."""
    frame = pd.DataFrame({"a": pd.Categorical(["x", "y"]), "n": [1, 2], "o": [{"k": 1}, None]})
    assert redact_frame(frame, Redactor().value) is frame


def test_every_text_column_kind_is_redacted_and_dtypes_are_kept() -> None:
    """Categories, strings and object cells are redacted; numbers are untouched."""
    frame = pd.DataFrame(
        {
            "cat": pd.Categorical(["a@x.io", "b@y.io", "plain", None]),
            "text": pd.array(["call +44 20 7946 0958", None, "ok", "ok"], dtype="string"),
            "obj": pd.Series([{"to": "a@x.io"}, None, ["10.0.0.7"], "fine"], dtype=object),
            "num": np.arange(4, dtype="int64"),
        }
    )
    out = redact_frame(frame, Redactor().value)
    assert list(out["cat"][:3]) == ["<EMAIL>", "<EMAIL>", "plain"] and pd.isna(out["cat"][3])
    assert list(out["cat"].cat.categories) == ["<EMAIL>", "plain"]
    assert out["text"].dtype == "string"
    assert out["text"][0] == "call <PHONE>" and pd.isna(out["text"][1])
    assert list(out["obj"]) == [{"to": "<EMAIL>"}, None, ["<IP>"], "fine"]
    assert (out["num"] == frame["num"]).all() and out["num"].dtype == "int64"
    assert frame["cat"][0] == "a@x.io", "the input frame is not modified"


def test_columns_the_builder_already_redacted_are_not_walked_again() -> None:
    """A column named in ``redacted`` is left as it is (the trace's attrs, which the store
    redacted with the same redactor as it built the frame); the others are redacted."""
    frame = pd.DataFrame(
        {"attrs": pd.Series([{"to": "a@x.io"}], dtype=object), "cat": pd.Categorical(["a@x.io"])}
    )
    out = redact_frame(frame, Redactor().value, redacted=("attrs",))
    assert out["attrs"][0] is frame["attrs"][0]
    assert list(out["cat"]) == ["<EMAIL>"]


@pytest.fixture
def stored_before_the_secret(project: Project) -> Project:
    """Two runs that stored LATE_SECRET before secrets.yaml listed it: one paused for
    approval (prompt, shown data, inputs, step output), one failed (error, trace)."""
    project.flow(
        "paused",
        f"""
        id: paused
        inputs: {{type: object, properties: {{text: {{type: string}}}}}}
        steps:
          - {{id: a, type: tool, tool: echo, input: {{text: "{{{{ inputs.text }}}}"}}}}
          - id: review
            type: hitl
            prompt: "Approve {LATE_SECRET}?"
            show: "{{{{ steps.a.output }}}}"
        """,
    )
    project.flow(
        "failing",
        """
        id: failing
        inputs: {type: object, properties: {text: {type: string}}}
        steps:
          - {id: b, type: tool, tool: boom, input: {text: "{{ inputs.text }}"}}
        """,
    )
    wb = project.open()
    paused = wb.run("demo/paused", inputs={"text": LATE_SECRET}, by="ana")
    assert paused.waiting_for is not None and LATE_SECRET in json.dumps(paused.waiting_for)
    failed = wb.run("demo/failing", inputs={"text": LATE_SECRET}, by="ana")
    assert LATE_SECRET in (failed.error or "")
    wb.close()
    secrets = project.root / "secrets"
    secrets.mkdir()
    (secrets / "secrets.yaml").write_text(f"vendor: {{token: {LATE_SECRET}}}\n", "utf-8")
    return project


def run_ids(project: Project) -> dict[str, str]:
    wb = project.open()
    runs = wb.runs()
    wb.close()
    return dict(zip(runs["flow"].astype(str), runs["run_id"].astype(str), strict=True))


def test_every_public_read_redacts_data_stored_before_the_secret_was_known(
    stored_before_the_secret: Project,
) -> None:
    """Frames, output, inputs, error and waiting_for all show <SECRET> once the secret is
    in secrets.yaml, although the store still holds what was written earlier."""
    ids = run_ids(stored_before_the_secret)
    store = stored_before_the_secret.root / "storage" / "master.sqlite3"
    assert LATE_SECRET.encode() in store.read_bytes(), "the store still holds it: reads redact"
    wb = stored_before_the_secret.open()
    paused = wb.get_run(ids["paused"])
    assert LATE_SECRET not in json.dumps(paused.waiting_for)
    assert "<SECRET>" in paused.waiting_for["prompt"]
    assert paused.waiting_for["show"] == {"text": "<SECRET>"}
    assert paused.inputs == {"text": "<SECRET>"}
    paused.approve(comment=f"fine, {LATE_SECRET}", by="ana")
    assert paused.output == {
        "approved": True,
        "by": "ana",
        "comment": "fine, <SECRET>",
        "at": paused.output["at"],
    }
    failed = wb.get_run(ids["failing"])
    assert LATE_SECRET not in (failed.error or "") and "<SECRET>" in (failed.error or "")
    frames = {
        "trace": failed.trace(),
        "steps": paused.steps(),
        "runs": wb.runs(),
        "traces": wb.traces(),
        "approvals": wb.approvals(),
    }
    for name, frame in frames.items():
        text = frame.to_json(orient="records", date_format="iso", default_handler=str)
        assert LATE_SECRET not in text, name
        assert "<SECRET>" in text, name
    wb.close()


def test_cli_exports_are_redacted(stored_before_the_secret: Project, tmp_path: Path) -> None:
    """`master trace --format csv|json|table` and `master show` never write the secret."""
    root = str(stored_before_the_secret.root)
    failed = run_ids(stored_before_the_secret)["failing"]
    out = tmp_path / "out.txt"
    for fmt in ("csv", "json", "table"):
        assert cli(["--root", root, "trace", failed, "--format", fmt, "-o", str(out)]) == 0
        text = out.read_text(encoding="utf-8")
        assert LATE_SECRET not in text
        assert "<SECRET>" in text or fmt == "table"  # the table has no attrs column
    shown = subprocess.run(
        [sys.executable, "-m", "master_sdk.cli", "--root", root, "show", failed],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    assert LATE_SECRET not in shown.stdout and "<SECRET>" in shown.stdout


def test_a_policy_can_add_patterns_and_keep_secrets_with_detectors_off() -> None:
    """extra_patterns add placeholders; enabled: false keeps secrets redacted."""
    with_ticket = build_redactor(RedactionPolicy(extra_patterns={"TICKET": r"TCK-\d{6}"}), [])
    assert with_ticket.text("TCK-123456 by bob@example.com") == "<TICKET> by <EMAIL>"
    assert with_ticket.value({"k": ["TCK-123456"]}) == {"k": ["<TICKET>"]}
    off = build_redactor(RedactionPolicy(enabled=False), ["hunter2-pw"])
    assert off.text("bob@example.com hunter2-pw") == "bob@example.com <SECRET>"


def test_extra_patterns_never_rewrite_a_placeholder() -> None:
    """A pattern that matches placeholder text leaves placeholders alone."""
    greedy = build_redactor(RedactionPolicy(extra_patterns={"CAPS": "[A-Z]{4,}"}), [])
    assert greedy.text("mail bob@example.com ABCDE") == "mail <EMAIL> <CAPS>"


def test_the_policy_redactor_is_used_by_the_store(project: Project) -> None:
    """A platform pattern reaches what is stored, not only what is shown."""
    (project.root / "configs" / "policy.yaml").write_text(
        "policy:\n  redaction: {extra_patterns: {TICKET: 'TCK-\\d{6}'}}\n", encoding="utf-8"
    )
    project.flow(
        "f", "id: f\nsteps:\n  - {id: a, type: tool, tool: echo, input: {text: TCK-000123}}\n"
    )
    wb = project.open()
    run = wb.run("demo/f")
    assert wb.store.load(run.id)[1][0].output == {"text": "<TICKET>"}
    wb.close()


@pytest.mark.parametrize("suffix", [".jsonl", ".sqlite3"])
def test_store_exports_are_redacted_and_import_back(
    stored_before_the_secret: Project, tmp_path: Path, suffix: str
) -> None:
    """wb.export_store writes no secret bytes in either format, and the file imports."""
    wb = stored_before_the_secret.open()
    target = tmp_path / f"shared{suffix}"
    report = wb.export_store(target)
    wb.close()
    assert len(report.runs) == 2
    data = target.read_bytes()
    assert LATE_SECRET.encode() not in data
    assert b"<SECRET>" in data
    other = stored_before_the_secret.open(store=tmp_path / "other.sqlite3")
    imported = other.import_store(target)
    assert sorted(imported.runs) == sorted(report.runs)
    assert other.get_run(report.runs[0], recover=False).inputs == {"text": "<SECRET>"}
    other.close()
