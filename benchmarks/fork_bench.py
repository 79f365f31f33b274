"""Forking is copying: fork N completed runs at their last step, with a fake model.

    python -m benchmarks.fork_bench [--runs 1000] [--repeats 3]

A ``tool -> agent (fake model) -> tool`` flow; N runs are made, then each is forked at its
last step (``publish``): the two steps before it are copied, ``publish`` runs again. Each
fork is timed in three phases, the same calls ``Run.fork`` makes:

* ``read+plan``: load the parent and check its upstream against the flow (``plan_fork``);
* ``copy``: build the new run with its copied steps and their trace (``fork_context``);
* ``execute``: the engine runs ``publish`` and commits — the first commit writes the new
  run row, the copied steps and their trace with the step's start, in one transaction.

Reported: forks/s, the share of each phase, and the full run of the same flow beside it
(what running the copied steps again would cost). Medians over ``--repeats`` rounds, each
on a fresh store.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import textwrap
import time
from pathlib import Path

import master_sdk as ms
from master_sdk.forks.copying import fork_context
from master_sdk.forks.planning import plan_fork

COMPONENTS = """
from pydantic import BaseModel

from master_sdk.authoring import AgentContext, AgentOutput, agent, tool


class Cleaned(BaseModel):
    text: str


@tool
def clean(text: str) -> Cleaned:
    return Cleaned(text=text.strip())


class Summary(AgentOutput):
    summary: str


@agent(model="default")
def summarizer(ctx: AgentContext, text: str) -> Summary:
    return Summary(summary=ctx.complete("Summarise: " + text).text)


class Published(BaseModel):
    url: str


@tool
def publish(summary: str) -> Published:
    return Published(url="https://example.org/" + str(len(summary)))
"""

FLOW = """
id: report
inputs: {type: object, properties: {text: {type: string}}, required: [text]}
steps:
  - {id: clean, type: tool, tool: clean, input: {text: "{{ inputs.text }}"}}
  - {id: summary, type: agent, agent: summarizer, input: {text: "{{ steps.clean.output.text }}"}}
  - {id: publish, type: tool, tool: publish, input: {summary: "{{ steps.summary.output.summary }}"}}
"""


def make_project(root: Path) -> Path:
    """A project with product ``bench`` (flow ``report``) and the fake model."""
    product = root / "products" / "bench"
    (product / "flows").mkdir(parents=True)
    (root / "configs").mkdir()
    (product / "manifest.yaml").write_text("name: bench\nversion: '1'\n", encoding="utf-8")
    (product / "components.py").write_text(COMPONENTS, encoding="utf-8")
    (product / "flows" / "report.yaml").write_text(textwrap.dedent(FLOW), encoding="utf-8")
    (root / "configs" / "models.yaml").write_text(
        "models:\n  default: {provider: fake}\n", encoding="utf-8"
    )
    return root


def one_round(runs: int) -> dict[str, float]:
    """Make ``runs`` runs, then fork each at ``publish``; seconds per phase."""
    with tempfile.TemporaryDirectory() as folder:
        root = make_project(Path(folder))
        with ms.Workbench.open(root) as wb:
            started = time.perf_counter()
            ids = [wb.run("bench/report", {"text": f"case {i}"}).id for i in range(runs)]
            full = time.perf_counter() - started
            flow = wb.catalog.flow("bench/report")
            plan_s = copy_s = exec_s = 0.0
            for run_id in ids:
                t0 = time.perf_counter()
                parent, steps = wb.store.load(run_id)
                plan = plan_fork(flow, parent, steps, "publish")
                t1 = time.perf_counter()
                ctx = fork_context(flow, plan, parent.inputs, by="bench", scrub=wb.redact)
                t2 = time.perf_counter()
                wb.engine.advance(ctx)
                t3 = time.perf_counter()
                assert ctx.run.status == "completed"
                plan_s += t1 - t0
                copy_s += t2 - t1
                exec_s += t3 - t2
            assert len(wb.runs()) == 2 * runs
    return {"full_runs": full, "read_plan": plan_s, "copy": copy_s, "execute": exec_s}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    rounds = [one_round(args.runs) for _ in range(args.repeats)]
    med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    forks = med["read_plan"] + med["copy"] + med["execute"]
    n = args.runs
    print(f"{n} runs, {args.repeats} rounds (medians), fake model, WAL + synchronous=FULL")
    print(f"full runs (3 steps executed): {n / med['full_runs']:8.1f} runs/s "
          f"{1000 * med['full_runs'] / n:6.3f} ms/run")  # fmt: skip
    print(f"forks at the last step:       {n / forks:8.1f} forks/s "
          f"{1000 * forks / n:6.3f} ms/fork")  # fmt: skip
    for key in ("read_plan", "copy", "execute"):
        print(f"  {key:10s} {1000 * med[key] / n:6.3f} ms/fork  {100 * med[key] / forks:5.1f} %")
    copying = med["read_plan"] + med["copy"]
    print(f"copying (read+plan+copy) per fork: {1000 * copying / n:.3f} ms; "
          f"a full run: {1000 * med['full_runs'] / n:.3f} ms")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
