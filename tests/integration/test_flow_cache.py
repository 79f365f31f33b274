"""The flow cache, in real subprocesses running ``master approve``: a warm process resumes
without pydantic or the product's code and leaves the same run as a cold one; an edit to a
flow, a tool or a policy file between two processes is seen by the second; a broken file
still gives its error naming file, flow, step and field.

Each test gives its processes their own ``-X pycache_prefix``, where the library keeps its
caches, so tests share nothing with each other or with the installed library's caches.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import master_sdk as ms
from master_sdk.config.loader import load_settings_source
from master_sdk.errors import FlowChanged
from master_sdk.memory.records import RunRow
from master_sdk.products.fingerprint import Fingerprinter
from master_sdk.products.flow_cache import FlowCache, Record, flow_of, from_plain, to_plain

START = """
import sys, master_sdk as ms
wb = ms.Workbench.open(".")
print(" ".join(wb.run("hello_world/greet", inputs={"text": f"cached {i}"}).id
               for i in range(int(sys.argv[1]))))
wb.close()
"""

# `master approve RUN [flags]` in this process, then what it imported, as JSON on stderr
APPROVE = """
import json, sys
from master_sdk.cli import main
try:
    code = main(["--root", ".", "approve", *sys.argv[1:]])
except SystemExit as exc:
    code = exc.code
# the product catalog (which imports the products' components) was never built
print(json.dumps({"code": code, "pydantic": "pydantic" in sys.modules,
                  "product": "master_sdk.products.loader" in sys.modules}), file=sys.stderr)
"""

# the run as the user sees it afterwards
SHOW = """
import json, sys, master_sdk as ms
wb = ms.Workbench.open(".")
run = wb.get_run(sys.argv[1], recover=False)
trace = run.trace()
print(json.dumps({"status": str(run.status), "waiting": run.waiting_for,
                  "events": list(trace["event"]), "steps": list(trace["step_id"].fillna(""))}))
wb.close()
"""


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MASTER_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _python(root: Path, prefix: Path, script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-X", f"pycache_prefix={prefix}", "-c", script, *args],
        cwd=root,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _start(root: Path, prefix: Path, count: int) -> list[str]:
    done = _python(root, prefix, START, str(count))
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def _approve(root: Path, prefix: Path, *args: str) -> tuple[dict[str, Any], str, str]:
    """What ``master approve`` imported and its exit code, its stdout and its stderr."""
    done = _python(root, prefix, APPROVE, *args)
    *messages, last = done.stderr.strip().splitlines()
    return json.loads(last), done.stdout, "\n".join(messages)


def _show(root: Path, prefix: Path, run_id: str) -> dict[str, Any]:
    done = _python(root, prefix, SHOW, run_id)
    assert done.returncode == 0, done.stderr
    shown: dict[str, Any] = json.loads(done.stdout)
    return shown


@pytest.fixture
def prefix(tmp_path: Path) -> Path:
    return tmp_path / "pycache"


def test_a_warm_approve_needs_no_pydantic_nor_the_product_and_ends_the_same(
    hello_root: Path, prefix: Path
) -> None:
    """The first approve compiles the flow (pydantic, the product's components) and keeps
    it; the next ones resume from the cache without either, and each run is left exactly
    as the cold one was: paused at the audience step, the same trace."""
    first, second, third = _start(hello_root, prefix, 3)
    cold, cold_out, _ = _approve(hello_root, prefix, first)
    assert cold == {"code": 0, "pydantic": True, "product": True}
    warm, warm_out, _ = _approve(hello_root, prefix, second)
    assert warm == {"code": 0, "pydantic": False, "product": False}
    assert warm_out.replace(second, first) == cold_out
    assert "waiting at step 'audience'" in warm_out
    assert _show(hello_root, prefix, second) == _show(hello_root, prefix, first)
    # and a run goes on from there: the agent step loads the product when it runs
    assert _approve(hello_root, prefix, third)[0] == warm
    script = """
import sys, master_sdk as ms
wb = ms.Workbench.open(".")
run = wb.get_run(sys.argv[1], recover=False)
run.submit({"audience": "the board"})
print(run.status, sorted(run.output))
wb.close()
"""
    done = _python(hello_root, prefix, script, third)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["completed", "['audience',", "'summary']"]


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")


@pytest.mark.parametrize(
    ("relative", "old", "new", "changed"),
    [
        (
            "products/hello_world/flows/greet.yaml",
            "Who is the summary for?",
            "Who reads it?",
            "Who reads it?",
        ),
        (
            "products/hello_world/components.py",
            '"""Return the text unchanged."""',
            '"""Return the text, unchanged."""',
            "Who is the summary for?",
        ),
        (
            "products/hello_world/config/product.yaml",
            "max_steps: 20",
            "max_steps: 19",
            "Who is the summary for?",
        ),
    ],
)
def test_an_edit_between_two_processes_is_seen(
    hello_root: Path, prefix: Path, relative: str, old: str, new: str, changed: str
) -> None:
    """A flow, tool or product policy file edited after a process cached the flow: the
    next approve sees the change (the run was pinned to the old files, so it is refused
    until the change is allowed) and then continues on the new files."""
    first, second = _start(hello_root, prefix, 2)
    assert _approve(hello_root, prefix, first)[0]["code"] == 0  # caches the flow
    _edit(hello_root / relative, old, new)
    refused, _, message = _approve(hello_root, prefix, second)
    assert refused["code"] == 1
    assert "changed since run" in message and "allow_flow_change" in message
    allowed, out, _ = _approve(hello_root, prefix, second, "--allow-flow-change")
    assert allowed["code"] == 0, out
    assert changed in out


def test_a_platform_policy_edit_between_two_processes_is_applied(
    hello_root: Path, prefix: Path
) -> None:
    """configs/policy.yaml turned four_eyes on after a process cached the flow: the next
    approve by the person who started the run is refused, as without any cache."""
    first, second = _start(hello_root, prefix, 2)
    assert _approve(hello_root, prefix, first)[0]["code"] == 0
    policy = hello_root / "configs" / "policy.yaml"
    _edit(policy, "max_recoveries: 3", "max_recoveries: 3\n  four_eyes: true")
    refused, out, message = _approve(hello_root, prefix, second)
    assert refused["code"] == 1, out
    assert "four_eyes" in message


def test_a_broken_flow_file_is_reported_after_the_cache(hello_root: Path, prefix: Path) -> None:
    """A flow file broken after a process cached it: the next process reports the file,
    flow, step and field, as a process without the cache does."""
    first, second = _start(hello_root, prefix, 2)
    assert _approve(hello_root, prefix, first)[0]["code"] == 0
    flow = hello_root / "products" / "hello_world" / "flows" / "greet.yaml"
    _edit(flow, "type: user_input", "type: user_inptu")
    broken, _, message = _approve(hello_root, prefix, second)
    assert broken["code"] == 1
    _, _, cold_message = _approve(hello_root, prefix.with_name("cold"), second)
    assert message == cold_message
    assert "greet.yaml" in message and "audience" in message and "type" in message


def test_a_cached_flow_holds_what_the_compiled_flow_holds(hello_root: Path, tmp_path: Path) -> None:
    """hello_world compiled from its files and read back from the cache: the same steps,
    templates, policy, hashes and allow-lists; only the tools and agents are left out."""
    source = load_settings_source(hello_root)
    assert source.key is not None
    with ms.Workbench.open(hello_root) as wb:
        run = wb.run("hello_world/greet", inputs={"text": "compare"})
        row = wb.store.load(run.id)[0]
        assert isinstance(row, RunRow)
        full = flow_of(wb, row)  # compiled (nothing cached yet under tmp_path's key)
        assert full.full is None
        product = wb.catalog.product("hello_world")
        cache = FlowCache(source.key, path=tmp_path / "flows")
        cache.remember_platform(wb.settings)
        cache.remember(full, folder=product.path.resolve(), flows_dir=product.flows_dir)
        reader = FlowCache(source.key, path=tmp_path / "flows")
        light = reader.flow("hello_world/greet", lambda: full)
        assert light is not None
        assert reader.flow("hello_world/greet", lambda: full) is light  # same files
        assert light.full is not None and light.full() is full
        for name in ("product", "id", "file", "flow_hash", "product_version", "source"):
            assert getattr(light, name) == getattr(full, name), name
        assert light.index == full.index
        assert dict(light.model_aliases) == dict(full.model_aliases)
        assert light.allow == full.allow
        assert to_plain(full.policy) == _replain(light.policy)
        assert to_plain(full.spec) == _replain(light.spec)
        scope = {
            "inputs": {"text": "hi"},
            "steps": {"echo": {"output": {"text": "hi"}, "status": "completed"}},
            "run": {"id": "r", "product": "hello_world", "flow": "greet"},
        }
        for mine, theirs in zip(light.steps, full.steps, strict=True):
            for name in ("index", "id", "type", "name", "model", "reject_to", "schema"):
                assert getattr(mine, name) == getattr(theirs, name), (mine.id, name)
            assert mine.output_fields == theirs.output_fields
            assert mine.tool is None and mine.agent is None
            for name in ("when", "input", "show"):
                a, b = getattr(mine, name), getattr(theirs, name)
                assert (a is None) == (b is None), (mine.id, name)
                if a is not None and b is not None:
                    assert a.refs == b.refs and a.dynamic == b.dynamic
                    if mine.id == "echo" or name == "show":
                        assert a.render(scope) == b.render(scope)
        # a flow file edited since: no cached flow
        flow_file = Path(full.file)
        flow_file.write_text(flow_file.read_text(encoding="utf-8") + "\n# edited\n", "utf-8")
        assert (
            FlowCache(source.key, path=tmp_path / "flows").flow("hello_world/greet", lambda: full)
            is None
        )


def _replain(value: Any) -> Any:
    """A :class:`Record` tree back as :func:`to_plain` data."""
    if isinstance(value, Record):
        return ["r", {k: _replain(v) for k, v in value._fields.items()}]
    if isinstance(value, dict):
        return ["d", {k: _replain(v) for k, v in value.items()}]
    if isinstance(value, list):
        return ["l", [_replain(v) for v in value]]
    return value


def test_a_record_reads_like_the_model_and_cannot_be_changed() -> None:
    import copy

    record = from_plain(["r", {"max_steps": 3, "approvers": ["d", {"*": ["l", ["ana"]]}]}])
    assert isinstance(record, Record)
    assert record.max_steps == 3 and record.approvers == {"*": ["ana"]}
    assert getattr(record, "prompt", "") == ""
    with pytest.raises(AttributeError):
        record.max_steps = 4
    assert copy.deepcopy(record).approvers == {"*": ["ana"]}


def test_tagged_data_of_another_shape_is_refused() -> None:
    assert from_plain(["d", {"a": ["l", [1, "x", None]]}]) == {"a": [1, "x", None]}
    for bad in (["x", {}], ["r", []], [1, 2, 3], {"a": 1}, ["l"]):
        with pytest.raises(ValueError, match="not tagged data"):
            from_plain(bad)
    with pytest.raises(TypeError):
        to_plain({"a": object()})


def test_another_library_version_never_uses_the_cached_flows(
    hello_root: Path, prefix: Path
) -> None:
    """Flows cached by this version are not read by another: it compiles them again."""
    first, second = _start(hello_root, prefix, 2)
    assert _approve(hello_root, prefix, first)[0]["pydantic"] is True
    other = APPROVE.replace(
        "from master_sdk.cli import main",
        "import master_sdk\n"
        "master_sdk.__version__ = '0.0.0-other'\n"
        "from master_sdk.cli import main",
    )
    done = _python(hello_root, prefix, other, second)
    assert json.loads(done.stderr.strip().splitlines()[-1]) == {
        "code": 0,
        "pydantic": True,
        "product": True,
    }


def test_the_oldest_entry_files_go_beyond_the_limit(
    hello_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cache keeps at most MAX_FILES entry files: writing more removes the oldest."""
    import master_sdk.products.flow_cache as flow_cache

    monkeypatch.setattr(flow_cache, "MAX_FILES", 8)
    folder = tmp_path / "flows"
    cache = FlowCache("settings", path=folder)
    past = time.time_ns() - 100 * 10**9
    for index in range(12):
        cache._put(f"entry:{index}", {"n": index})
        written = cache._file(f"entry:{index}").path
        if written.exists():  # one second apart, oldest first (file times are coarse)
            os.utime(written, ns=(past + index * 10**9, past + index * 10**9))
    left = sorted(folder.glob("*.json"))
    assert 6 <= len(left) <= 8
    assert cache._file("entry:11").path in left
    assert cache._file("entry:0").path not in left


TWICE = """id: twice
description: Ask first, then echo, then ask again.
inputs:
  type: object
  properties:
    text: {type: string}
  required: [text]
steps:
  - id: review
    type: hitl
    prompt: "Echo it?"
  - id: echo
    type: tool
    tool: echo
    input: {text: "{{ inputs.text }}"}
  - id: audience
    type: user_input
    prompt: "Who is it for?"
    schema:
      type: object
      properties:
        audience: {type: string}
      required: [audience]
"""


def test_a_tool_step_after_a_cached_resume_runs_the_product_tool(
    hello_root: Path, prefix: Path
) -> None:
    """An approve from the cache that goes on into a tool step loads the product then and
    runs its tool: the run ends as after a cold approve."""
    (hello_root / "products" / "hello_world" / "flows" / "twice.yaml").write_text(TWICE, "utf-8")
    start = START.replace("hello_world/greet", "hello_world/twice")
    done = _python(hello_root, prefix, start, "2")
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.split()
    assert _approve(hello_root, prefix, first)[0]["code"] == 0  # compiles, caches
    warm, out, _ = _approve(hello_root, prefix, second)
    assert warm == {"code": 0, "pydantic": True, "product": True}  # the tool needed them
    assert "waiting at step 'audience'" in out
    assert _show(hello_root, prefix, second) == _show(hello_root, prefix, first)
    steps = _python(
        hello_root,
        prefix,
        "import sys, json, master_sdk as ms\n"
        "wb = ms.Workbench.open('.')\n"
        "print(json.dumps(wb.get_run(sys.argv[1]).steps()['output'].tolist()))\n"
        "wb.close()\n",
        second,
    )
    assert steps.returncode == 0, steps.stderr
    assert {"text": "cached 1"} in json.loads(steps.stdout)


def test_resuming_in_a_notebook_looks_at_the_product_files_once_per_call(
    hello_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``wb.get_run`` in a workbench that already compiled and remembered the run's flow
    checks the product's files once (they may have changed since the last call), not a
    second time to remember a flow it remembered; an edit is still seen by the next call."""
    source = load_settings_source(hello_root)
    assert source.key is not None
    with ms.Workbench.open(hello_root) as wb:
        wb._flow_cache = FlowCache(source.key, path=tmp_path / "flows")
        run = wb.run("hello_world/greet", inputs={"text": "once"})
        assert wb.get_run(run.id).status == "waiting_approval"  # compiled and remembered
        checks: list[Path] = []
        real = Fingerprinter.of

        def counted(self: Fingerprinter, folder: Path, flows_dir: Path | None) -> Any:
            checks.append(folder)
            return real(self, folder, flows_dir)

        monkeypatch.setattr(Fingerprinter, "of", counted)
        again = wb.get_run(run.id)
        assert again.status == "waiting_approval"
        assert len(checks) == 1, checks
        # a tool edited in place: the next call loads the product again and remembers the
        # flow compiled from it
        before = wb.catalog.flow("hello_world/greet")
        components = hello_root / "products" / "hello_world" / "components.py"
        components.write_text(components.read_text("utf-8") + "\n# edited\n", "utf-8")
        edited = wb.get_run(run.id)
        flow = wb.catalog.flow("hello_world/greet")
        assert flow is not before
        assert wb._flow_cache.remembers(flow, wb.settings)
        # the run started on the code before the edit: refused unless the change is allowed
        with pytest.raises(FlowChanged):
            edited.approve(by="ana")
        edited.approve(by="ana", allow_flow_change=True)
        assert edited.status == "waiting_input"
