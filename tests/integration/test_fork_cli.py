"""`master fork` and `master diff`, end to end, in real subprocesses."""

from __future__ import annotations

import json
from pathlib import Path

from tests.integration.test_cli import master, run_id


def completed_run(root: Path, text: str = "hi") -> str:
    started = master("run", "hello_world/greet", "--input", f"text={text}", cwd=root)
    rid = run_id(started.stdout)
    assert master("approve", rid, cwd=root).returncode == 0
    done = master("submit", rid, "--data", '{"audience": "board"}', cwd=root)
    assert "completed" in done.stdout, done.stderr
    return rid


def test_fork_then_diff_from_the_command_line(hello_root: Path) -> None:
    """fork --at summary after a prompt edit completes (the human steps before it copied);
    diff shows the summary changed, as a table and as JSON."""
    parent = completed_run(hello_root)
    components = hello_root / "products" / "hello_world" / "components.py"
    components.write_text(
        components.read_text(encoding="utf-8").replace("Summarise for", "Brief for"), "utf-8"
    )
    forked = master("fork", parent, "--at", "summary", "--by", "ben", cwd=hello_root)
    assert forked.returncode == 0, forked.stderr
    assert f"forked {parent} at 'summary'" in forked.stdout
    assert "completed" in forked.stdout and "Brief for" in forked.stdout
    child = run_id(forked.stdout.split("\n", 1)[1])

    table = master("diff", parent, child, cwd=hello_root)
    assert table.returncode == 0, table.stderr
    assert "$.summary" in table.stdout and "summary" in table.stdout

    as_json = master("diff", parent, child, "--format", "json", cwd=hello_root)
    assert as_json.returncode == 0, as_json.stderr
    data = json.loads(as_json.stdout)
    assert (data["run_a"], data["run_b"]) == (parent, child)
    rows = {row["step_id"]: row for row in data["steps"]}
    assert list(rows) == ["echo", "review", "audience", "summary"]
    assert rows["echo"]["copied_b"] and not rows["echo"]["output_changed"]
    assert rows["summary"]["output_changed"]
    assert rows["summary"]["changed_paths"] == ["$.summary"]


def test_fork_with_an_input_and_a_refused_model_from_the_command_line(hello_root: Path) -> None:
    """--input changes an input of the steps run again (the fork pauses at the approval it
    asks again); an unknown --model fails with one line naming it and writes nothing."""
    parent = completed_run(hello_root)
    forked = master("fork", parent, "--at", "echo", "--input", "text=changed", cwd=hello_root)
    assert forked.returncode == 0, forked.stderr
    assert "waiting_approval" in forked.stdout and "changed" in forked.stdout
    refused = master("fork", parent, "--at", "summary", "--model", "nope", cwd=hello_root)
    assert refused.returncode == 1
    assert refused.stderr.strip().count("\n") == 0 and "nope" in refused.stderr
    runs = master("runs", cwd=hello_root)
    assert runs.stdout.count("hello_world") == 2
