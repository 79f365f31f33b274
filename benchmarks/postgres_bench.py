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

    .venv/bin/python -m benchmarks.postgres_bench [RUNS] [ROUNDS]

Prints one JSON object: for the flow, medians over ROUNDS rounds of RUNS runs a side (the
sides take turns within each round), each side's CPU per run (client process and server
backend) and the median of the per-round ratios; for the writers, 1, 2, 4 and 8 processes
of RUNS runs each (after a few untimed runs), medians of 3; the load average throughout.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
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


@contextmanager
def master_side(root: Path, url: str) -> Iterator[Callable[[int], Any]]:
    wb = open_workbench(root, url)  # type: ignore[arg-type]  # a store name
    try:
        yield lambda i: one_run(wb, i)
    finally:
        wb.close()


@contextmanager
def langgraph_side(url: str, durability: str | None) -> Iterator[Callable[[int], Any]]:
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

        yield one


SIDES = ("master_sdk", "langgraph_async", "langgraph_sync")


def compare(root: Path, server: Any, n: int, rounds: int) -> dict[str, Any]:
    """The three sides, each on its own database of one server and opened once, take turns:
    ``rounds`` rounds of ``n`` runs each, so a change in the machine's load falls on all
    three alike. Medians over rounds, and the median of the per-round ratios."""
    samples: dict[str, list[dict[str, float]]] = {side: [] for side in SIDES}
    with ExitStack() as stack:
        urls = {side: server.fresh_database() for side in SIDES}
        ones = {
            "master_sdk": stack.enter_context(master_side(root, urls["master_sdk"])),
            "langgraph_async": stack.enter_context(langgraph_side(urls["langgraph_async"], None)),
            "langgraph_sync": stack.enter_context(langgraph_side(urls["langgraph_sync"], "sync")),
        }
        for side in SIDES:  # warm: imports, prepared statements, trace name codes
            for i in range(10):
                ones[side](-1 - i)
        for r in range(rounds):
            for side in SIDES:
                samples[side].append(
                    _timed(urls[side], n, lambda i, s=side, base=r * n: ones[s](base + i))
                )
    out: dict[str, Any] = {}
    for side, got in samples.items():
        out[side] = {k: statistics.median(s[k] for s in got) for k in got[0]}
        out[side]["all_runs_per_s"] = [round(s["runs_per_s"], 1) for s in got]
    for peer in ("langgraph_async", "langgraph_sync"):
        out[f"ratio_vs_{peer}"] = statistics.median(
            ours["runs_per_s"] / theirs["runs_per_s"]
            for ours, theirs in zip(samples["master_sdk"], samples[peer], strict=True)
        )
    return out


def _writer(root: str, url: str, n: int, first: int, gate: Any, out: Any) -> None:
    wb = open_workbench(Path(root), url)  # type: ignore[arg-type]
    errors = 0
    for k in range(5):  # untimed: product loading, prepared statements, trace name codes
        one_run(wb, -1 - first - k)
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
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 9
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
            result["load_between"] = os.getloadavg()
            scaling = {}
            for processes in (1, 2, 4, 8):
                samples = [
                    writers_runs_per_s(root, server.fresh_database(), processes, n)
                    for _ in range(3)
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
