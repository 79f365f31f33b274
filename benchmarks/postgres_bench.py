"""The durable three-step flow on PostgreSQL: master_sdk vs LangGraph's ``PostgresSaver``,
and 1, 2, 4 and 8 master_sdk writer processes on one database.

Both sides run on the same throwaway PostgreSQL server (``tests/support/postgres.py``:
``initdb`` in a temporary folder, loopback TCP; that test cluster runs with ``fsync`` off
and ``synchronous_commit`` on, for both sides alike), the same flow (``echo`` tool ->
approval -> ``summary`` with the same deterministic fake model), each run started, paused,
loaded back and approved. master_sdk keeps its full trace, the approval audit and every
step's output. LangGraph runs with its default durability (``"async"``: checkpoints are
written by a background thread while the graph goes on) and with ``durability="sync"``
(each checkpoint written before the next step, as master_sdk always does). The three are
measured in turn within each repetition, so a change in the machine's load touches all.

    .venv/bin/python -m benchmarks.postgres_bench [RUNS] [REPEATS]

Prints one JSON object: medians of REPEATS measurements, each side's CPU per run (client
process and server backend), and the load average before and after.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.master_sdk_flow import make_project, one_run, open_workbench
from tests.support import postgres


def _backend_cpu_s(url: str) -> tuple[list[int], float]:
    """The server processes serving ``url``'s database (other than the asking one) and
    their CPU seconds so far (Linux ``/proc``)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        pids = [
            int(r[0])
            for r in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid()"
            )
        ]
    return pids, _cpu_of(pids)


def _cpu_of(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def _timed(url: str, n: int, one: Any) -> dict[str, float]:
    pids, server_before = _backend_cpu_s(url)
    cpu = time.process_time()
    began = time.perf_counter()
    for i in range(n):
        one(i)
    wall = time.perf_counter() - began
    return {
        "runs_per_s": n / wall,
        "client_cpu_ms_per_run": (time.process_time() - cpu) / n * 1e3,
        "server_cpu_ms_per_run": (_cpu_of(pids) - server_before) / n * 1e3,
    }


def master_runs(root: Path, url: str, n: int) -> dict[str, float]:
    wb = open_workbench(root, url)  # type: ignore[arg-type]  # a store name
    try:
        for i in range(10):  # warm: prepared statements, trace name codes
            one_run(wb, -1 - i)
        return _timed(url, n, lambda i: one_run(wb, i))
    finally:
        wb.close()


def langgraph_runs(url: str, n: int, durability: str | None) -> dict[str, float]:
    from langgraph.checkpoint.postgres import PostgresSaver

    from benchmarks.peers import run_text
    from benchmarks.peers.langgraph_flow import build_graph, resume, start

    with PostgresSaver.from_conn_string(url) as saver:
        saver.setup()
        graph = build_graph(saver)  # type: ignore[arg-type]  # any checkpointer

        def one(i: int) -> None:
            text = run_text(i)
            start(graph, f"t{i}", text, durability)  # type: ignore[arg-type]
            resume(graph, f"t{i}", text, durability)  # type: ignore[arg-type]

        for i in range(10):
            one(-1 - i)
        return _timed(url, n, one)


SIDES = ("master_sdk", "langgraph_async", "langgraph_sync")


def compare(root: Path, server: Any, n: int, repeats: int) -> dict[str, Any]:
    """The three sides in turn, ``repeats`` times; medians and every sample."""
    samples: dict[str, list[dict[str, float]]] = {side: [] for side in SIDES}
    for _ in range(repeats):
        samples["master_sdk"].append(master_runs(root, server.fresh_database(), n))
        samples["langgraph_async"].append(langgraph_runs(server.fresh_database(), n, None))
        samples["langgraph_sync"].append(langgraph_runs(server.fresh_database(), n, "sync"))
    out: dict[str, Any] = {}
    for side, got in samples.items():
        out[side] = {k: statistics.median(s[k] for s in got) for k in got[0]}
        out[side]["all_runs_per_s"] = [round(s["runs_per_s"], 1) for s in got]
    ours = out["master_sdk"]["runs_per_s"]
    out["ratio_vs_langgraph_async"] = ours / out["langgraph_async"]["runs_per_s"]
    out["ratio_vs_langgraph_sync"] = ours / out["langgraph_sync"]["runs_per_s"]
    return out


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
    result: dict[str, Any] = {
        "runs": n,
        "repeats": repeats,
        "server": "PostgreSQL test cluster (fsync=off, synchronous_commit=on), loopback TCP",
        "load_before": os.getloadavg(),
    }
    try:
        with tempfile.TemporaryDirectory() as folder:
            root = make_project(Path(folder) / "project")
            result["flow"] = compare(root, server, n, repeats)
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
    result["load_after"] = os.getloadavg()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
