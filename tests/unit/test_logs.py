"""The trace log: off unless asked for, JSON lines after each commit, redacted, and never
touching the application's own structlog setup."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
import structlog

from master_sdk.errors import AlreadyResumed
from master_sdk.governance.redaction import Redactor
from master_sdk.memory.records import RunRow
from master_sdk.tracing.events import TraceBuffer
from master_sdk.tracing.logs import TraceLog
from tests.conftest import Project

FLOW = """
id: f
inputs: {type: object, properties: {text: {type: string}}}
steps:
  - {id: a, type: tool, tool: echo, input: {text: "{{ inputs.text }}"}}
  - {id: review, type: hitl, prompt: "ok?"}
  - {id: b, type: tool, tool: boom, input: {text: "{{ inputs.text }}"}}
"""


def app_yaml(project: Project, text: str) -> None:
    (project.root / "configs" / "app.yaml").write_text(text, encoding="utf-8")


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_nothing_is_set_up_by_default(project: Project) -> None:
    """WARNING and no file: no logger, no hook on the commit path, structlog untouched."""
    before = structlog.get_config()
    project.flow("f", FLOW)
    wb = project.open()
    assert wb.hooks == [] and wb.store.hooks == []
    wb.run("demo/f", inputs={"text": "x"})
    assert structlog.get_config() == before
    assert not list(project.root.rglob("*.log"))
    wb.close()


def test_events_are_written_as_json_lines_after_each_commit(project: Project) -> None:
    """With a log file at INFO, every stored trace event appears once, in order, with run,
    product and flow."""
    app_yaml(project, "log_file: logs/trace.log\nlog_level: INFO\n")
    project.flow("f", FLOW)
    wb = project.open()
    run = wb.run("demo/f", inputs={"text": "x"})
    log = project.root / "logs" / "trace.log"
    logged = lines(log)
    trace = run.trace()
    assert [e["event"] for e in logged] == list(trace["event"].astype(str))
    assert [e["seq"] for e in logged] == list(trace["seq"])
    assert {(e["run_id"], e["product"], e["flow"]) for e in logged} == {(run.id, "demo", "f")}
    tool = next(e for e in logged if e["event"] == "tool_called")
    assert (tool["step_id"], tool["step_type"], tool["name"], tool["status"]) == (
        "a",
        "tool",
        "echo",
        "ok",
    )
    assert tool["level"] == "info" and tool["ts"].endswith("+00:00")
    wb.close()


def test_the_level_filters_events_by_what_they_mean(project: Project) -> None:
    """At WARNING (the default) a log file receives failures and violations only."""
    app_yaml(project, "log_file: trace.log\n")
    project.flow("f", FLOW)
    wb = project.open()
    run = wb.run("demo/f", inputs={"text": "x"})
    run.approve(by="ana")
    assert run.status == "failed"
    logged = lines(project.root / "trace.log")
    assert [(e["event"], e["level"]) for e in logged] == [
        ("step_failed", "error"),
        ("run_failed", "error"),
    ]
    wb.close()


def test_the_log_is_redacted(project: Project) -> None:
    """Personal data in tool output and exceptions is redacted before it is rendered."""
    app_yaml(project, "log_file: trace.log\nlog_level: DEBUG\n")
    project.flow("f", FLOW)
    wb = project.open()
    run = wb.run("demo/f", inputs={"text": "mail bob@example.com"})
    run.approve(by="ana")
    text = (project.root / "trace.log").read_text(encoding="utf-8")
    assert "bob@example.com" not in text and "<EMAIL>" in text
    wb.close()


def test_events_of_a_commit_that_failed_are_not_logged(project: Project) -> None:
    """Two workbenches approve the same pause: the loser's decision is not in the log."""
    app_yaml(project, "log_file: trace.log\nlog_level: INFO\n")
    project.flow("f", FLOW)
    first = project.open()
    second = project.open()
    run = first.run("demo/f", inputs={"text": "x"})
    # the second workbench has read the pause and is about to decide it when the first wins
    stale = second._context(run.id, allow_flow_change=False, by="zed-the-loser")
    run.approve(by="ana")
    with pytest.raises(AlreadyResumed):
        second.engine.decide(stale, approved=True, comment=None, by="zed-the-loser")
    text = (project.root / "trace.log").read_text(encoding="utf-8")
    assert "zed-the-loser" not in text
    assert [e["event"] for e in lines(project.root / "trace.log")] == list(
        first.get_run(run.id).trace()["event"].astype(str)
    )
    first.close()
    second.close()


def test_the_applications_structlog_setup_is_left_alone(tmp_path: Path) -> None:
    """A configured application logger keeps its processors; ours writes only to its file."""
    captured: list[dict[str, Any]] = []

    def capture(_logger: Any, _name: str, event_dict: dict[str, Any]) -> str:
        captured.append(dict(event_dict))
        return "app"

    structlog.configure(
        processors=[capture],
        logger_factory=structlog.ReturnLoggerFactory(),
        cache_logger_on_first_use=False,
    )
    try:
        before = structlog.get_config()
        log = TraceLog(level="INFO", file=tmp_path / "t.log", scrub=Redactor().value)
        trace = TraceBuffer(seq=0, rows=[])
        trace.emit("run_started", attrs={"by": "ana"})
        row = RunRow("r", "p", "f", "running", 1, 0, 0, 0, "h", "1", "ana")
        log.commit(row, trace.rows)
        log.close()
        structlog.get_logger().info("hello", who="app")
        assert structlog.get_config() == before
        assert captured == [{"event": "hello", "who": "app"}]
        assert lines(tmp_path / "t.log")[0]["event"] == "run_started"
    finally:
        structlog.reset_defaults()


def test_without_a_file_info_goes_to_the_given_stream() -> None:
    """level INFO and no file: events go to the stream (standard error by default)."""
    stream = io.StringIO()
    log = TraceLog(level="INFO", file=None, scrub=Redactor().value, stream=stream)
    assert log.enabled
    trace = TraceBuffer(seq=0, rows=[])
    trace.emit("run_started", attrs={"note": "call +44 20 7946 0958"})
    log.commit(RunRow("r", "p", "f", "running", 1, 0, 0, 0, "h", "1", "ana"), trace.rows)
    record = json.loads(stream.getvalue())
    assert record["attrs"] == {"note": "call <PHONE>"}


def test_a_log_that_cannot_be_written_never_fails_the_run(tmp_path: Path) -> None:
    """Writing after the file was closed underneath is swallowed."""
    log = TraceLog(level="INFO", file=tmp_path / "t.log", scrub=Redactor().value)
    assert log._handle is not None
    log._handle.close()
    trace = TraceBuffer(seq=0, rows=[])
    trace.emit("run_started")
    log.commit(RunRow("r", "p", "f", "running", 1, 0, 0, 0, "h", "1", "ana"), trace.rows)
