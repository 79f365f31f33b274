"""Live export runs in an exporter process: what its life does to runs and spans.

Spans are built and sent by ``python -m master_sdk.tracing.otel.exporter``, fed through a
pipe by the runs' process. These tests kill, stop and break that pair of real processes
and check against a real OTLP/HTTP receiver on 127.0.0.1: committed events still become
spans when the runs' process is killed; a runs' process never waits, never fails, and
counts what it drops when the exporter is stopped, gone or cannot start.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.otlp_receiver import OtlpReceiver
from tests.support.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]

FLOW = """
id: three
inputs: {type: object, properties: {text: {type: string}}}
steps:
  - {id: a, type: tool, tool: echo, input: {text: "{{ inputs.text }}"}}
  - {id: s, type: agent, agent: summarizer, input: {text: "{{ steps.a.output.text }}"}}
  - {id: c, type: tool, tool: count, input: {text: "{{ steps.s.output.summary }}"}}
"""
SPANS_PER_RUN = 7  # root, three steps, two tool calls, one model call


@pytest.fixture
def three(project: Any) -> Any:
    project.flow("three", FLOW)
    return project


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is gone for our purpose: it runs no more code
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_spans_of_a_process_killed_after_its_commits_still_arrive(three: Any) -> None:
    """A process runs three flows and is SIGKILLed (no close, no atexit): the exporter
    sees its pipe end, sends every span of the committed events and exits by itself."""
    with OtlpReceiver() as receiver:
        code = f"""
            import sys
            import master_sdk as ms
            wb = ms.Workbench.open(
                {str(three.root)!r},
                telemetry={{"endpoint": {receiver.url!r}, "flush_interval_s": 30}},
            )
            runs = [wb.run("demo/three", inputs={{"text": f"run {{i}}"}}) for i in range(3)]
            print(wb.telemetry_status()["exporter_pid"])
            print(" ".join(run.id for run in runs), flush=True)
            sys.stdin.readline()  # killed while waiting here
        """
        writer = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code)],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert writer.stdout is not None
            exporter = int(writer.stdout.readline())
            run_ids = set(writer.stdout.readline().split())
            assert len(run_ids) == 3, writer.stderr.read() if writer.stderr else ""
            assert alive(exporter)
            writer.kill()
            writer.wait(timeout=10)
        finally:
            if writer.poll() is None:
                writer.kill()
        # a flush interval of 30 s: only the pipe's end can make these arrive this soon
        spans = receiver.wait_for(lambda s: len(s) >= 3 * SPANS_PER_RUN, timeout_s=20.0)
        assert wait_until(lambda: not alive(exporter)), "the exporter outlived its parent"
    assert {s.attributes["master.run_id"] for s in spans} == run_ids
    roots = [s for s in spans if s.name == "invoke_workflow demo/three"]
    assert sorted(s.attributes["master.run_id"] for s in roots) == sorted(run_ids)
    assert len(spans) == 3 * SPANS_PER_RUN


def test_an_exporter_killed_mid_experiment_fails_no_run_and_status_says_so(three: Any) -> None:
    """The exporter is SIGKILLed between runs: later runs complete as usual, their commits
    are counted as dropped and the status names the exporter's end."""
    with OtlpReceiver() as receiver:
        wb = three.open(telemetry={"endpoint": receiver.url, "flush_interval_s": 0.05})
        try:
            first = wb.run("demo/three", inputs={"text": "before"})
            assert wb.flush_telemetry(10.0)
            status = wb.telemetry_status()
            assert status["exported"] == SPANS_PER_RUN and status["exporter"] == "running"
            os.kill(status["exporter_pid"], signal.SIGKILL)
            assert wait_until(lambda: not alive(status["exporter_pid"]))
            after = [wb.run("demo/three", inputs={"text": f"after {i}"}) for i in range(3)]
            assert not wb.flush_telemetry(2.0)
            gone = wb.telemetry_status()
        finally:
            wb.close()
    assert [r.status for r in (first, *after)] == ["completed"] * 4
    assert {s.attributes["master.run_id"] for s in receiver.spans} == {first.id}
    assert gone["exporter"] == "gone"
    assert gone["exported"] == SPANS_PER_RUN
    assert gone["dropped_commits"] >= 3 and gone["dropped"] > 0
    assert "exporter process" in gone["last_error"]


def test_a_stopped_exporter_never_blocks_runs_and_what_did_not_fit_is_counted(
    three: Any,
) -> None:
    """The exporter is SIGSTOPped: its pipe (sized for max_queue commits) and the local
    buffer fill, runs go on at full speed and the commits beyond are dropped and counted;
    once it continues, everything that was kept is sent."""
    with OtlpReceiver() as receiver:
        wb = three.open(
            telemetry={"endpoint": receiver.url, "flush_interval_s": 0.05, "max_queue": 8}
        )
        try:
            wb.run("demo/three", inputs={"text": "start"})
            assert wb.flush_telemetry(10.0)
            pid = wb.telemetry_status()["exporter_pid"]
            os.kill(pid, signal.SIGSTOP)
            try:
                clock = time.perf_counter()
                runs = [wb.run("demo/three", inputs={"text": f"run {i}"}) for i in range(40)]
                running = time.perf_counter() - clock
                stopped = wb.telemetry_status()  # the exporter cannot answer: ours only
            finally:
                os.kill(pid, signal.SIGCONT)
            assert wb.flush_telemetry(10.0)
            status = wb.telemetry_status()
        finally:
            wb.close()
    assert [r.status for r in runs] == ["completed"] * 40
    assert running < 30.0  # never waited for the exporter (40 runs take ~1 s)
    assert stopped["dropped_commits"] > 0 and stopped["pending_commits"] > 0
    assert status["dropped_commits"] >= stopped["dropped_commits"]
    assert status["pending_commits"] == 0
    assert status["exported"] == len(receiver.spans) > SPANS_PER_RUN


def test_an_exporter_that_cannot_start_fails_no_run_and_status_says_why(
    three: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No interpreter to start the exporter with (an embedded Python): runs complete, each
    commit is counted as dropped, the status says why."""
    monkeypatch.setattr(sys, "executable", str(REPO / "no-such-python"))
    wb = three.open(telemetry={"endpoint": "http://127.0.0.1:9/v1/traces"})
    try:
        runs = [wb.run("demo/three", inputs={"text": f"run {i}"}) for i in range(2)]
        assert wb.flush_telemetry(1.0) is False  # nothing can be sent
        status = wb.telemetry_status()
    finally:
        wb.close()
    assert [r.status for r in runs] == ["completed"] * 2
    assert status["exporter"] == "gone" and status["exporter_pid"] is None
    assert "could not start" in status["last_error"]
    assert status["dropped_commits"] >= 2 and status["exported"] == 0


def test_a_forked_process_does_not_write_into_its_parents_exporter(three: Any) -> None:
    """After fork, the child's commits are not the parent's exporter's business (dropped and
    counted there); the parent's spans are unaffected and the exporter still ends with it."""
    with OtlpReceiver() as receiver:
        wb = three.open(telemetry={"endpoint": receiver.url, "flush_interval_s": 0.05})
        try:
            first = wb.run("demo/three", inputs={"text": "parent"})
            pid = os.fork()
            if pid == 0:  # the forked copy: its commits must not reach the parent's pipe
                code = 0
                try:
                    child = wb._telemetry.exporter
                    child.write(b"garbage that would break the stream", 1)
                    code = 0 if child.status()["dropped_commits"] == 1 else 3
                finally:
                    os._exit(code)
            _, waited = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(waited) == 0
            second = wb.run("demo/three", inputs={"text": "parent again"})
            assert wb.flush_telemetry(10.0)
            status = wb.telemetry_status()
        finally:
            wb.close()
    assert status["build_errors"] == 0 and status["dropped"] == 0
    assert {s.attributes["master.run_id"] for s in receiver.spans} == {first.id, second.id}


def test_an_exporter_without_opentelemetry_reports_why_and_runs_go_on(
    three: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The exporter process starts but cannot import OpenTelemetry (its environment differs
    from the runs' process): it says so before exiting, and the status carries the install
    hint while runs complete and their commits are counted as dropped."""
    broken = tmp_path / "shadow" / "opentelemetry"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise ImportError('hidden for the test')\n")
    monkeypatch.setenv("PYTHONPATH", str(broken.parent))
    wb = three.open(telemetry={"endpoint": "http://127.0.0.1:9/v1/traces"})
    try:
        runs = [wb.run("demo/three", inputs={"text": f"run {i}"}) for i in range(3)]
        assert wait_until(lambda: wb.telemetry_status()["exporter"] == "gone", 20.0)
        runs.append(wb.run("demo/three", inputs={"text": "after"}))
        status = wb.telemetry_status()
    finally:
        wb.close()
    assert [r.status for r in runs] == ["completed"] * 4
    assert "could not start" in status["last_error"]
    assert "pip install 'master-sdk[otel]'" in status["last_error"]
    assert status["exported"] == 0 and status["dropped_commits"] >= 4
