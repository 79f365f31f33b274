"""The commit hook hands the exporter process the store's own chunk bytes (SQLite): the
spans a real OTLP/HTTP receiver on 127.0.0.1 decodes are exactly those of the path that
copies every event, for the same commits."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from master_sdk.memory.store import Commit
from master_sdk.tracing.otel.hook import TelemetryHook, open_telemetry
from tests.support.otlp_receiver import OtlpReceiver, ReceivedSpan

THREE = """
id: three
inputs: {type: object, properties: {text: {type: string}}}
steps:
  - {id: a, type: tool, tool: echo, input: {text: "{{ inputs.text }}"}}
  - {id: s, type: agent, agent: summarizer, input: {text: "{{ steps.a.output.text }}"}}
  - {id: c, type: tool, tool: count, input: {text: "{{ steps.s.output.summary }}"}}
"""
# other step ids and a failing tool: names the exporter learns after its first commits
LATER = """
id: later
inputs: {type: object, properties: {text: {type: string}}}
steps:
  - {id: first_echo, type: tool, tool: echo, input: {text: "{{ inputs.text }}"}}
  - {id: breaks, type: tool, tool: boom, input: {text: "{{ steps.first_echo.output.text }}"}}
"""


class CopiedEvents:
    """Feeds a second telemetry hook the same commits without the store's chunk, so it
    takes the path that copies and marshals every event."""

    def __init__(self, hook: TelemetryHook) -> None:
        self.hook = hook
        self.encoded = 0

    def before_commit(self, commit: Commit) -> None:
        """Nothing."""

    def after_commit(self, commit: Commit) -> None:
        if commit.encoded is not None:
            self.encoded += 1
        self.hook.after_commit(dataclasses.replace(commit, encoded=None))


def everything(spans: list[ReceivedSpan]) -> list[tuple[Any, ...]]:
    return sorted(
        (
            s.trace_id,
            s.span_id,
            s.parent_span_id,
            s.name,
            s.kind,
            s.start_ns,
            s.end_ns,
            s.status_code,
            s.status_message,
            sorted(s.attributes.items()),
            sorted(s.resource.items()),
            s.scope,
        )
        for s in spans
    )


@pytest.mark.parametrize("capture_content", [False, True])
def test_spans_from_the_stores_chunks_are_those_of_copied_events(
    project: Any, capture_content: bool
) -> None:
    project.flow("three", THREE)
    project.flow("later", LATER)
    with OtlpReceiver() as chunks, OtlpReceiver() as copied:
        settings = {"endpoint": chunks.url, "flush_interval_s": 0.05}
        wb = project.open(telemetry={**settings, "capture_content": capture_content})
        try:
            telemetry = wb._telemetry
            assert telemetry is not None
            other = open_telemetry(
                telemetry.settings.model_copy(update={"endpoint": copied.url}), scrub=wb._redact
            )
            feed = CopiedEvents(other)
            wb.add_hook(feed)
            runs = [wb.run("demo/three", inputs={"text": f"hello {i}"}) for i in range(3)]
            runs.append(wb.run("demo/later", inputs={"text": "mail ana@example.com"}))
            runs += [wb.run("demo/three", inputs={"text": "again"}) for _ in range(2)]
            assert [r.status for r in runs] == ["completed"] * 3 + ["failed"] + ["completed"] * 2
            assert wb.flush_telemetry(20.0)
            assert other.flush(20.0)
            status, other_status = wb.telemetry_status(), other.status()
            other.close(10.0)
        finally:
            wb.close()
    assert feed.encoded > 0  # the SQLite store handed its chunks over
    assert status["build_errors"] == other_status["build_errors"] == 0
    assert status["dropped"] == other_status["dropped"] == 0
    assert len(chunks.spans) == len(copied.spans) == status["exported"] > 6 * 4
    assert everything(chunks.spans) == everything(copied.spans)
    assert {s.attributes["master.run_id"] for s in chunks.spans} == {r.id for r in runs}


def test_names_in_a_dropped_commit_come_with_the_next_one(project: Any) -> None:
    """The exporter is SIGSTOPped until commits are dropped, among them the first ones
    naming the steps of a new flow; the next run of that flow is exported whole anyway:
    the names the exporter never got come with the next frame."""
    import os
    import signal

    project.flow("three", THREE)
    project.flow("later", LATER)
    with OtlpReceiver() as receiver:
        wb = project.open(
            telemetry={"endpoint": receiver.url, "flush_interval_s": 0.05, "max_queue": 4}
        )
        try:
            wb.run("demo/three", inputs={"text": "start"})
            assert wb.flush_telemetry(10.0)
            pid = wb.telemetry_status()["exporter_pid"]
            os.kill(pid, signal.SIGSTOP)
            try:
                for i in range(40):
                    wb.run("demo/three", inputs={"text": f"run {i}"})
                lost = wb.run("demo/later", inputs={"text": "lost"})
                stopped = wb.telemetry_status()
            finally:
                os.kill(pid, signal.SIGCONT)
            assert wb.flush_telemetry(10.0)  # room in the pipe again
            kept = wb.run("demo/later", inputs={"text": "kept"})
            assert wb.flush_telemetry(10.0)
            status = wb.telemetry_status()
        finally:
            wb.close()
    assert stopped["dropped_commits"] > 0
    assert not [s for s in receiver.spans if s.attributes["master.run_id"] == lost.id]
    spans = [s for s in receiver.spans if s.attributes["master.run_id"] == kept.id]
    assert status["build_errors"] == 0, status["last_error"]
    names = {s.name for s in spans}
    assert {"step first_echo", "step breaks", "execute_tool boom"} <= names, names
