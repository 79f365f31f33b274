"""A product whose every side effect leaves a line in a file, and ways to run it elsewhere.

Crash and concurrency tests need to count what *really* happened across processes that
die: each tool of the ``ledger`` product appends a line to the ledger file named in its
input before returning, and :class:`LedgerProvider` appends ``model`` for every model
call. A line written by a process killed a moment later stays in the file (it is in the
kernel's page cache), so counting lines counts invocations.

:func:`spawn` starts ``tests/support/durability_driver.py`` as a real subprocess with
``sys.executable``; :func:`wait_for` polls a condition with a deadline instead of sleeping.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from master_sdk.models.providers.fake import FakeProvider
from master_sdk.models.types import ModelRequest, ModelResponse

REPO = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).with_name("durability_driver.py")

LEDGER_COMPONENTS = '''
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from pydantic import BaseModel

from master_sdk.authoring import AgentContext, AgentOutput, ToolContext, agent, tool


class Marked(BaseModel):
    name: str


class Keyed(BaseModel):
    name: str
    key: str


def _append(ledger: str, line: str) -> None:
    with open(ledger, "a", encoding="utf-8") as handle:
        handle.write(line + "\\n")


def _wait(gate: str) -> None:
    deadline = time.monotonic() + 60
    while not Path(gate).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gate {gate} never opened")
        time.sleep(0.005)


@tool
def mark(ledger: str, name: str) -> Marked:
    """Not idempotent: every call is one more line."""
    _append(ledger, name)
    return Marked(name=name)


@tool(idempotent=True)
def mark_keyed(ledger: str, name: str, ctx: ToolContext) -> Keyed:
    """Idempotent: records the idempotency key and attempt it was given."""
    _append(ledger, f"{name} key={ctx.idempotency_key} attempt={ctx.attempt}")
    return Keyed(name=name, key=ctx.idempotency_key)


@tool
def gated(ledger: str, name: str, gate: str) -> Marked:
    """Records that it started, then waits until the gate file exists."""
    _append(ledger, name)
    _wait(gate)
    return Marked(name=name)


@tool(idempotent=True)
def gated_keyed(ledger: str, name: str, gate: str, ctx: ToolContext) -> Keyed:
    """The idempotent twin of ``gated``."""
    _append(ledger, f"{name} key={ctx.idempotency_key} attempt={ctx.attempt}")
    _wait(gate)
    return Keyed(name=name, key=ctx.idempotency_key)


@tool(idempotent=True)
def fatal(ledger: str, name: str, ctx: ToolContext) -> Marked:
    """Kills its own process, like a tool that crashes the kernel every time."""
    _append(ledger, f"{name} key={ctx.idempotency_key} attempt={ctx.attempt}")
    os.kill(os.getpid(), signal.SIGKILL)
    return Marked(name=name)


@tool(idempotent=True)
def halt(ledger: str, name: str) -> Marked:
    """Stops like a user pressing the notebook's interrupt button."""
    _append(ledger, name)
    raise KeyboardInterrupt


class Summary(AgentOutput):
    summary: str


@agent(model="default")
def summarizer(ctx: AgentContext, text: str) -> Summary:
    return Summary(summary=ctx.complete(f"Summarise: {text}").text)
'''

LEDGER_FLOW = """
id: ledger
inputs:
  type: object
  properties: {ledger: {type: string}}
  required: [ledger]
steps:
  - {id: first, type: tool, tool: mark, input: {ledger: "{{ inputs.ledger }}", name: first}}
  - {id: second, type: tool, tool: mark_keyed,
     input: {ledger: "{{ inputs.ledger }}", name: second}}
  - id: review
    type: hitl
    prompt: Go on?
    show: "{{ steps.first.output }}"
  - {id: third, type: tool, tool: mark, input: {ledger: "{{ inputs.ledger }}", name: third}}
  - id: ask
    type: user_input
    prompt: For whom?
    schema:
      type: object
      properties: {audience: {type: string, minLength: 1}}
      required: [audience]
  - {id: summary, type: agent, agent: summarizer, input: {text: "{{ steps.ask.output.audience }}"}}
  - {id: last, type: tool, tool: mark_keyed, input: {ledger: "{{ inputs.ledger }}", name: last}}
output:
  first: "{{ steps.first.output }}"
  second: "{{ steps.second.output }}"
  review: "{{ steps.review.output.approved }}"
  third: "{{ steps.third.output }}"
  audience: "{{ steps.ask.output.audience }}"
  summary: "{{ steps.summary.output }}"
  last: "{{ steps.last.output }}"
"""

GATED_FLOW = """
id: gated
inputs:
  type: object
  properties: {ledger: {type: string}, gate: {type: string}}
  required: [ledger, gate]
steps:
  - {id: before, type: tool, tool: mark, input: {ledger: "{{ inputs.ledger }}", name: before}}
  - id: slow
    type: tool
    tool: "{{TOOL}}"
    input: {ledger: "{{ inputs.ledger }}", name: slow, gate: "{{ inputs.gate }}"}
  - {id: after, type: tool, tool: mark, input: {ledger: "{{ inputs.ledger }}", name: after}}
output: "{{ steps.slow.output }}"
"""

FATAL_FLOW = """
id: fatal
inputs:
  type: object
  properties: {ledger: {type: string}}
  required: [ledger]
steps:
  - {id: before, type: tool, tool: mark, input: {ledger: "{{ inputs.ledger }}", name: before}}
  - {id: boom, type: tool, tool: fatal, input: {ledger: "{{ inputs.ledger }}", name: boom}}
"""

HALT_FLOW = """
id: halt
inputs:
  type: object
  properties: {ledger: {type: string}}
  required: [ledger]
steps:
  - {id: stop, type: tool, tool: halt, input: {ledger: "{{ inputs.ledger }}", name: stop}}
"""

TWO_STEP_FLOW = """
id: two
inputs:
  type: object
  properties: {ledger: {type: string}}
  required: [ledger]
steps:
  - {id: a, type: tool, tool: mark, input: {ledger: "{{ inputs.ledger }}", name: a}}
  - {id: b, type: tool, tool: mark, input: {ledger: "{{ inputs.ledger }}", name: b}}
"""

PAUSE_FLOW = """
id: pause
inputs:
  type: object
  properties: {ledger: {type: string}}
  required: [ledger]
steps:
  - id: review
    type: hitl
    prompt: Approve?
  - {id: after, type: tool, tool: mark, input: {ledger: "{{ inputs.ledger }}", name: after}}
  - id: ask
    type: user_input
    prompt: Say something
    schema: {type: object, properties: {say: {type: string}}, required: [say]}
  - {id: done, type: tool, tool: mark, input: {ledger: "{{ inputs.ledger }}", name: done}}
"""


class LedgerProvider(FakeProvider):
    """The fake model, appending ``model`` to a ledger file for every call it answers."""

    def __init__(self, ledger: Path) -> None:
        super().__init__()
        self.ledger = ledger

    def complete(self, request: ModelRequest) -> ModelResponse:
        """Record the call, then answer like :class:`FakeProvider`."""
        with self.ledger.open("a", encoding="utf-8") as handle:
            handle.write("model\n")
        return super().complete(request)


class DyingProvider(LedgerProvider):
    """Records the request in the ledger, then ends its process at once (``os._exit``):
    the request was sent, its answer never seen by anyone."""

    def complete(self, request: ModelRequest) -> ModelResponse:
        """Record the call, then die like ``kill -9`` before answering."""
        with self.ledger.open("a", encoding="utf-8") as handle:
            handle.write("model\n")
        os._exit(86)


def make_ledger_project(root: Path, *, app: str = "", policy: str = "") -> Path:
    """A project folder with the ``ledger`` product (flows ledger, gated, gated_keyed,
    fatal, halt, two, pause); ``app`` / ``policy`` go to configs/app.yaml / policy.yaml."""
    product = root / "products" / "ledger"
    (product / "flows").mkdir(parents=True)
    (root / "configs").mkdir()
    (product / "manifest.yaml").write_text("name: ledger\nversion: '1.0'\n", encoding="utf-8")
    (product / "components.py").write_text(LEDGER_COMPONENTS, encoding="utf-8")
    flows = {
        "ledger": LEDGER_FLOW,
        "gated": GATED_FLOW.replace("{{TOOL}}", "gated"),
        "gated_keyed": GATED_FLOW.replace("{{TOOL}}", "gated_keyed").replace(
            "id: gated\n", "id: gated_keyed\n"
        ),
        "fatal": FATAL_FLOW,
        "halt": HALT_FLOW,
        "two": TWO_STEP_FLOW,
        "pause": PAUSE_FLOW,
    }
    for name, text in flows.items():
        (product / "flows" / f"{name}.yaml").write_text(textwrap.dedent(text), encoding="utf-8")
    if app:
        (root / "configs" / "app.yaml").write_text(textwrap.dedent(app), encoding="utf-8")
    if policy:
        (root / "configs" / "policy.yaml").write_text(textwrap.dedent(policy), encoding="utf-8")
    return root


def copy_hello_project(root: Path) -> Path:
    """A copy of the repository's products/ and configs/ (the hello_world product)."""
    shutil.copytree(REPO / "products", root / "products")
    shutil.copytree(REPO / "configs", root / "configs")
    return root


def lines(ledger: Path) -> list[str]:
    """The ledger's lines (empty when nothing was recorded yet)."""
    if not ledger.exists():
        return []
    return ledger.read_text(encoding="utf-8").splitlines()


def tally(ledger: Path) -> Counter[str]:
    """How many times each tool step (its first word) and the model were invoked."""
    return Counter(line.split(" ", 1)[0] for line in lines(ledger))


def driver_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a driver: this checkout importable, no inherited MASTER_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MASTER_")}
    env["PYTHONPATH"] = str(REPO)
    env.update(extra or {})
    return env


def spawn(
    *args: str | Path,
    env: Mapping[str, str] | None = None,
    stdin: int | None = subprocess.DEVNULL,
) -> subprocess.Popen[str]:
    """Start the driver in a new process: ``python durability_driver.py ARGS``."""
    return subprocess.Popen(
        [sys.executable, str(DRIVER), *map(str, args)],
        env=driver_env(env),
        cwd=REPO,
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_driver(
    *args: str | Path, env: Mapping[str, str] | None = None, timeout: float = 60
) -> tuple[int, dict[str, Any] | None, str]:
    """Run the driver to its end: ``(exit code, last JSON line of stdout or None, stderr)``."""
    proc = spawn(*args, env=env)
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, last_json(out), err


def last_json(text: str) -> dict[str, Any] | None:
    """The last line of ``text`` that is a JSON object."""
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            value: dict[str, Any] = json.loads(line)
            return value
    return None


def wait_for(
    condition: Callable[[], bool], *, timeout: float = 30, what: str = "condition"
) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.005)


def all_exit(procs: Sequence[subprocess.Popen[str]], timeout: float = 120) -> list[str]:
    """Wait for every process; their stdout texts (stderr is appended on failure)."""
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=timeout)
        outputs.append(out if proc.returncode == 0 else f"{out}\n[exit {proc.returncode}]\n{err}")
    return outputs


def abandon_mid_step(
    wb: Any, ref: str, inputs: Mapping[str, Any], *, ledger: Path, gate: Path, step: str
) -> str:
    """Leave a run as a failed commit does: ``ref`` runs in a thread until its gated step
    ``step`` has started (the ledger shows it), another process takes the store's write
    lock, the gate opens, and the step's result commit finds the store locked beyond the
    busy timeout (configure a short one), so the workbench gives the run up (StoreBusy).
    The lock is then released. Returns the run id; the step ran once and its result is not
    stored."""
    import threading

    store = Path(wb.store_info()["path"])
    errors: list[BaseException] = []

    def execute() -> None:
        try:
            wb.run(ref, dict(inputs))
        except BaseException as exc:  # the StoreBusy this is about; checked below
            errors.append(exc)

    thread = threading.Thread(target=execute)
    thread.start()
    holder: subprocess.Popen[str] | None = None
    try:
        wait_for(lambda: any(line.startswith(step) for line in lines(ledger)), what=step)
        (run_id, _owner) = wb.store.find_runs(status="running")[0]
        holder = spawn("hold-write", store, stdin=subprocess.PIPE)
        assert holder.stdout is not None
        assert json.loads(holder.stdout.readline()).get("held") == "write"
        gate.touch()
        thread.join(60)
    finally:
        gate.touch()
        if holder is not None:
            holder.communicate("\n", timeout=30)
        thread.join(60)
    from master_sdk.errors import StoreBusy

    assert len(errors) == 1 and isinstance(errors[0], StoreBusy), errors
    return str(run_id)
