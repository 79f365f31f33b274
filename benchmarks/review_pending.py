"""How long ``wb.pending()`` takes over a large store, and how long the inbox takes to render.

The store holds ``--runs`` runs (default 100,000) of ``hello_world/greet``, ``--waiting`` of
them (default 10,000) paused at the approval with a ``show:`` value, the rest completed;
1,000 of the waiting runs carry an experiment tag, so ``wb.inbox(experiment="bench")``
renders 1,000 items (paged). The store is filled through the store's own import
(``write_runs``, one transaction), not by running the flows.

Usage::

    python benchmarks/review_pending.py [--runs 100000] [--waiting 10000] [--repeat 5]

Prints each repetition to stderr and medians to stdout.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import master_sdk as ms  # noqa: E402  # after the path fix above
from master_sdk.memory.sqlite import SQLiteStore  # noqa: E402
from master_sdk.memory.store import FlowSource, RunRecord, StoredRun  # noqa: E402


def fill(path: Path, runs: int, waiting: int, flow_hash: str, version: str) -> None:
    """``runs`` runs, every ``runs // waiting``-th one paused at the approval."""
    store = SQLiteStore(path)
    t0 = 1_767_225_600_000_000
    step = max(1, runs // waiting)
    batch: list[StoredRun] = []
    paused = 0
    for i in range(runs):
        at = t0 + i * 1_000_000
        wait = i % step == 0 and paused < waiting
        state: dict[str, object] = {"seq": 6}
        if wait:
            state["pending"] = {
                "step": "review",
                "kind": "hitl",
                "since_us": at,
                "show": {"text": f"case {i}: please check the numbers for region {i % 17}"},
            }
            if paused < 1000:
                state["experiment"] = {"name": "bench", "case": str(i)}
            paused += 1
        run = RunRecord(
            run_id=f"{i:032x}",
            product="hello_world",
            flow="greet",
            status="waiting_approval" if wait else "completed",
            version=3,
            cursor=1 if wait else 4,
            created_us=at,
            updated_us=at,
            flow_hash=flow_hash,
            product_version=version,
            created_by=("ana", "ben", "chloe")[i % 3],
            inputs={"text": f"case {i}"},
            state=state,
        )
        batch.append(StoredRun(run, [], [], [], []))
    store.write_runs(batch, [FlowSource(flow_hash, "hello_world", "greet", version, "")])
    store.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--waiting", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="review-bench-"))
    try:
        shutil.copytree(REPO_ROOT / "products", folder / "products")
        shutil.copytree(REPO_ROOT / "configs", folder / "configs")
        store = folder / "store.sqlite3"
        with ms.Workbench.open(folder, store=folder / "probe.sqlite3") as probe:
            flow = probe.run("hello_world/greet", inputs={"text": "x"})
            flow_hash = probe.store.load(flow.id)[0].flow_hash
            version = probe.store.load(flow.id)[0].product_version
        started = time.perf_counter()
        fill(store, args.runs, args.waiting, flow_hash, version)
        print(f"filled {args.runs} runs in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        wb = ms.Workbench.open(folder, store=store)
        wb.pending(kind="approval")  # compiles the flow once, warms the page cache
        timings: dict[str, list[float]] = {"pending": [], "inbox_1000": [], "inbox_all": []}
        for i in range(args.repeat):
            t = time.perf_counter()
            frame = wb.pending()
            timings["pending"].append(time.perf_counter() - t)
            assert len(frame) == args.waiting, len(frame)
            t = time.perf_counter()
            inbox = wb.inbox(experiment="bench")
            timings["inbox_1000"].append(time.perf_counter() - t)
            assert len(inbox.frame) == 1000
            t = time.perf_counter()
            inbox = wb.inbox()
            timings["inbox_all"].append(time.perf_counter() - t)
            print(
                f"rep {i + 1}: "
                + ", ".join(f"{k} {v[-1] * 1000:.0f} ms" for k, v in timings.items()),
                file=sys.stderr,
            )
        wb.close()
        print(f"store: {args.runs} runs, {args.waiting} waiting; medians of {args.repeat}")
        med = {k: statistics.median(v) * 1000 for k, v in timings.items()}
        print(f"wb.pending() ({args.waiting} rows): {med['pending']:.0f} ms")
        print(f"wb.inbox(), 1,000 items, first page: {med['inbox_1000']:.0f} ms")
        print(f"wb.inbox(), {args.waiting} items, first page: {med['inbox_all']:.0f} ms")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
