"""The durable three-step flow on PostgreSQL: master_sdk vs LangGraph's ``PostgresSaver``,
and 1, 2, 4 and 8 master_sdk writer processes on one database.

Both sides run on the same throwaway PostgreSQL 15 server (``tests/support/postgres.py``:
``initdb`` in a temporary folder, loopback TCP, default durability: ``fsync`` off in that
test cluster, ``synchronous_commit`` on), the same flow (``echo`` tool -> approval ->
``summary`` with the same deterministic fake model), each run started, paused, loaded back
and approved. master_sdk keeps its full trace, the approval audit and every step's output.

    .venv/bin/python -m benchmarks.postgres_bench [RUNS] [REPEATS]

Prints one JSON object (medians of REPEATS measurements).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.master_sdk_flow import make_project, one_run, open_workbench
from tests.support import postgres


def master_runs_per_s(root: Path, url: str, n: int) -> float:
    wb = open_workbench(root, url)  # type: ignore[arg-type]  # a store name
    try:
        one_run(wb, -1)
        began = time.perf_counter()
        for i in range(n):
            one_run(wb, i)
        return n / (time.perf_counter() - began)
    finally:
        wb.close()


def langgraph_runs_per_s(url: str, n: int) -> float:
    from langgraph.checkpoint.postgres import PostgresSaver

    from benchmarks.peers import run_text
    from benchmarks.peers.langgraph_flow import build_graph, resume, start

    with PostgresSaver.from_conn_string(url) as saver:
        saver.setup()
        graph = build_graph(saver)  # type: ignore[arg-type]  # any checkpointer
        start(graph, "warm", run_text(-1), None)
        resume(graph, "warm", run_text(-1), None)
        began = time.perf_counter()
        for i in range(n):
            text = run_text(i)
            start(graph, f"t{i}", text, None)
            resume(graph, f"t{i}", text, None)
        return n / (time.perf_counter() - began)


def _writer(root: str, url: str, n: int, first: int, gate: Any, out: Any) -> None:
    wb = open_workbench(Path(root), url)  # type: ignore[arg-type]
    errors = 0
    gate.wait()
    for i in range(first, first + n):
        try:
            one_run(wb, i)
        except Exception:  # counted: the benchmark reports errors
            errors += 1
    wb.close()
    out.put(errors)


def writers_runs_per_s(root: Path, url: str, processes: int, n_each: int) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    gate = ctx.Barrier(processes + 1)
    out = ctx.Queue()
    procs = [
        ctx.Process(target=_writer, args=(str(root), url, n_each, p * n_each, gate, out))
        for p in range(processes)
    ]
    for p in procs:
        p.start()
    gate.wait()
    began = time.perf_counter()
    errors = sum(out.get(timeout=600) for _ in procs)
    seconds = time.perf_counter() - began
    for p in procs:
        p.join()
    return {"runs_per_s": processes * n_each / seconds, "errors": errors}


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    server = postgres.server()
    result: dict[str, Any] = {"runs": n, "repeats": repeats}
    try:
        with tempfile.TemporaryDirectory() as folder:
            root = make_project(Path(folder) / "project")
            ours = [master_runs_per_s(root, server.fresh_database(), n) for _ in range(repeats)]
            theirs = [langgraph_runs_per_s(server.fresh_database(), n) for _ in range(repeats)]
            result["master_sdk_runs_per_s"] = statistics.median(ours)
            result["langgraph_postgres_saver_runs_per_s"] = statistics.median(theirs)
            result["ratio"] = (
                result["master_sdk_runs_per_s"] / result["langgraph_postgres_saver_runs_per_s"]
            )
            result["all"] = {"master_sdk": ours, "langgraph": theirs}
            scaling = {}
            for processes in (1, 2, 4, 8):
                samples = [
                    writers_runs_per_s(
                        root, server.fresh_database(), processes, max(1, n // processes)
                    )
                    for _ in range(repeats)
                ]
                scaling[processes] = {
                    "runs_per_s": statistics.median(s["runs_per_s"] for s in samples),
                    "errors": sum(s["errors"] for s in samples),
                }
            result["writers"] = scaling
    finally:
        postgres.stop()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
