"""Bulk approval: 1,000 paused runs approved at once, their remaining step a fake-model
agent; runs/s with the continuation in the kernel and with ``master work`` in a second
process.

* **kernel**: ``wb.decide(ids, "approve")`` — each decision committed, then each run
  continued in the same process (what the inbox does, in its background thread).
* **worker**: ``wb.decide(ids, "approve", proceed=False)`` records the decisions only
  (decisions/s), then ``master work --once`` in a new process continues them; its wall
  time includes starting Python and opening the workbench, measured alone on an empty
  pass and reported beside it.
* **one at a time**: the same two kernel figures with ``workers=1`` (each decision and
  each continuation waits for its own synced commit), for comparison with the default,
  where a batch's commits share syncs (``master_sdk/review/decisions.py``).

Usage::

    python benchmarks/review_bulk.py [--runs 1000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import master_sdk as ms  # noqa: E402  # after the path fix above
from master_sdk.review.decisions import continue_runs, decide_runs  # noqa: E402

FLOW = """
id: approve_agent
inputs: {type: object, properties: {text: {type: string}}, required: [text]}
steps:
  - {id: echo, type: tool, tool: echo, input: {text: "{{ inputs.text }}"}}
  - id: review
    type: hitl
    prompt: Summarise this text?
    show: "{{ steps.echo.output }}"
  - id: summary
    type: agent
    agent: summarizer
    input: {text: "{{ steps.echo.output.text }}", audience: everyone}
"""


def paused(wb: ms.Workbench, n: int) -> list[str]:
    return [wb.run("hello_world/approve_agent", {"text": f"case {i}"}).id for i in range(n)]


def work_once(folder: Path, store: Path) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MASTER_")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    started = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "master_sdk.cli",
            "--root",
            str(folder),
            "--store",
            str(store),
            "work",
            "--once",
        ],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    n = args.runs
    folder = Path(tempfile.mkdtemp(prefix="review-bulk-"))
    results: dict[str, list[float]] = {
        "kernel": [],
        "decide_only": [],
        "worker": [],
        "start": [],
        "kernel_serial": [],
        "decide_only_serial": [],
    }
    try:
        shutil.copytree(REPO_ROOT / "products", folder / "products")
        shutil.copytree(REPO_ROOT / "configs", folder / "configs")
        flows = folder / "products" / "hello_world" / "flows"
        (flows / "approve_agent.yaml").write_text(FLOW, encoding="utf-8")
        for rep in range(args.repeat):
            store = folder / f"kernel{rep}.sqlite3"
            with ms.Workbench.open(folder, store=store) as wb:
                ids = paused(wb, n)
                t = time.perf_counter()
                out = wb.decide(ids, "approve", comment="bulk", by="ana")
                results["kernel"].append(n / (time.perf_counter() - t))
                assert set(out["status"]) == {"completed"}, out["status"].value_counts()
            store = folder / f"worker{rep}.sqlite3"
            with ms.Workbench.open(folder, store=store) as wb:
                ids = paused(wb, n)
                t = time.perf_counter()
                wb.decide(ids, "approve", comment="bulk", by="ana", proceed=False)
                results["decide_only"].append(n / (time.perf_counter() - t))
            results["worker"].append(n / work_once(folder, store))
            store = folder / f"serial{rep}.sqlite3"
            with ms.Workbench.open(folder, store=store) as wb:
                ids = paused(wb, n)
                t = time.perf_counter()
                decide_runs(wb, ids, "approve", comment="bulk", by="ana", workers=1)
                decided = time.perf_counter() - t
                continue_runs(wb, ids, workers=1)
                results["decide_only_serial"].append(n / decided)
                results["kernel_serial"].append(n / (time.perf_counter() - t))
                assert set(wb.runs()["status"].astype(str)) == {"completed"}
            results["start"].append(work_once(folder, store))  # nothing left: start-up alone
            with ms.Workbench.open(folder, store=store) as wb:
                assert set(wb.runs()["status"].astype(str)) == {"completed"}
            print(
                f"rep {rep + 1}: kernel {results['kernel'][-1]:.0f} runs/s, decisions only "
                f"{results['decide_only'][-1]:.0f}/s, master work {results['worker'][-1]:.0f} "
                f"runs/s (empty pass {results['start'][-1]:.2f} s); one at a time: kernel "
                f"{results['kernel_serial'][-1]:.0f} runs/s, decisions only "
                f"{results['decide_only_serial'][-1]:.0f}/s",
                file=sys.stderr,
            )
        med = {k: statistics.median(v) for k, v in results.items()}
        print(
            f"bulk approval of {n} runs (echo -> approval -> fake-model agent), medians of "
            f"{args.repeat}"
        )
        print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print(
            f"decide + continue in the kernel: {med['kernel']:.0f} runs/s "
            f"(one at a time: {med['kernel_serial']:.0f})"
        )
        print(
            f"decisions only (proceed=False):  {med['decide_only']:.0f} decisions/s "
            f"(one at a time: {med['decide_only_serial']:.0f})"
        )
        print(
            f"master work --once, 2nd process: {med['worker']:.0f} runs/s wall "
            f"(incl. {med['start']:.2f} s start-up; "
            f"{n / max(1e-9, n / med['worker'] - med['start']):.0f} runs/s without it)"
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
