"""The `master` command, end to end, in real subprocesses."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
from pathlib import Path


def master(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "master_sdk.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def run_id(output: str) -> str:
    found = re.search(r"run ([0-9a-f]{32})", output)
    assert found, output
    return found.group(1)


def test_run_approve_submit_and_trace_from_the_command_line(hello_root: Path) -> None:
    """run -> waiting_approval; approve -> waiting_input; submit -> completed; trace csv."""
    started = master("run", "hello_world/greet", "--input", "text=hi", cwd=hello_root)
    assert started.returncode == 0, started.stderr
    assert "waiting_approval" in started.stdout
    rid = run_id(started.stdout)

    approved = master("approve", rid, "--comment", "fine", "--by", "ana", cwd=hello_root)
    assert approved.returncode == 0, approved.stderr
    assert "waiting_input" in approved.stdout

    bad = master("submit", rid, "--data", '{"audience": ""}', cwd=hello_root)
    assert bad.returncode == 1
    assert bad.stderr.strip().count("\n") == 0
    assert "audience" in bad.stderr and "must not be blank" in bad.stderr

    done = master("submit", rid, "--data", '{"audience": "board"}', cwd=hello_root)
    assert done.returncode == 0, done.stderr
    assert "completed" in done.stdout and "board" in done.stdout

    trace = master("trace", rid, "--format", "csv", cwd=hello_root)
    assert trace.returncode == 0, trace.stderr
    rows = list(csv.DictReader(io.StringIO(trace.stdout)))
    events = [r["event"] for r in rows]
    for needed in (
        "step_started",
        "tool_called",
        "model_called",
        "approval_decided",
        "input_received",
        "run_completed",
    ):
        assert needed in events
    assert {r["run_id"] for r in rows} == {rid}
    assert {r["product"] for r in rows} == {"hello_world"}
    assert {r["flow"] for r in rows} == {"greet"}
    assert {r["step_id"] for r in rows} >= {"echo", "review", "audience", "summary"}

    as_json = master("trace", rid, "--format", "json", cwd=hello_root)
    assert json.loads(as_json.stdout)[0]["event"] == "run_started"

    runs = master("runs", "--status", "completed", cwd=hello_root)
    assert rid in runs.stdout


def test_approving_a_run_not_waiting_is_a_one_line_error(hello_root: Path) -> None:
    """A wrong action exits 1 with one line on stderr and changes nothing."""
    rid = run_id(master("run", "hello_world/greet", "--input", "text=x", cwd=hello_root).stdout)
    assert master("approve", rid, cwd=hello_root).returncode == 0
    again = master("approve", rid, cwd=hello_root)
    assert again.returncode == 1
    assert again.stderr.startswith("error: cannot approve run")
    assert again.stderr.strip().count("\n") == 0
    assert "waiting_input" in master("show", rid, cwd=hello_root).stdout


def test_broken_flow_gives_one_line_naming_file_step_and_field(hello_root: Path) -> None:
    """validate and run report a broken flow in one line with its location."""
    flow = hello_root / "products" / "hello_world" / "flows" / "broken.yaml"
    flow.write_text(
        "id: broken\nsteps:\n  - {id: first, type: tool, tool: echoo, input: {text: x}}\n"
    )
    checked = master("validate", cwd=hello_root)
    assert checked.returncode == 1
    lines = checked.stderr.strip().splitlines()
    assert len(lines) == 1
    assert str(flow) in lines[0]
    assert "step 'first'" in lines[0] and "field 'tool'" in lines[0]
    assert "unknown tool 'echoo'" in lines[0]
    ran = master("run", "hello_world/broken", cwd=hello_root)
    assert ran.returncode == 1
    assert "field 'tool'" in ran.stderr


def test_schema_command_prints_the_flow_json_schema(hello_root: Path) -> None:
    """`master schema flow` emits a JSON Schema editors can use."""
    out = master("schema", "flow", cwd=hello_root)
    schema = json.loads(out.stdout)
    assert schema["title"] == "FlowSpec"
    assert "steps" in schema["properties"]


def test_bad_usage_exits_2(hello_root: Path) -> None:
    """argparse errors use exit code 2."""
    assert master("frobnicate", cwd=hello_root).returncode == 2
    assert master("run", "hello_world/greet", "--input", "novalue", cwd=hello_root).returncode == 1
