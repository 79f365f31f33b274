"""The durable three-step flow on PostgreSQL: master_sdk vs LangGraph's ``PostgresSaver``,
one after the other and from N threads, and 1, 2, 4 and 8 master_sdk writer processes on
one database.

Every side runs on the same throwaway PostgreSQL server, started here the way the tests
start theirs (``tests/support/postgres.py``: ``initdb`` in a temporary folder, loopback
TCP, ``fsync`` off and ``synchronous_commit`` on, for every side alike), the same flow
(``echo`` tool -> approval -> ``summary`` with the same deterministic fake model), each run
started, paused, loaded back and approved. master_sdk keeps its full trace, the approval
audit and every step's output. LangGraph runs with its default durability (``"async"``:
checkpoints written by a background thread while the graph goes on) and with
``durability="sync"`` (each checkpoint written before the next step, as master_sdk does).

Sections of the output:

* ``anatomy``: what one run asks of the server, per side (untimed, through a counting
  proxy, ``benchmarks/pg_anatomy.py``): client turns (round trips waited for), statements
  and their summed server execution time, write transactions, synced commits.
* ``flow``: sequential. Each side on its own database, opened once; the sides take turns
  within each round (``ROUNDS`` rounds of ``RUNS`` runs), so a change in the machine's load
  touches all. Medians of runs/s, per run the CPU and the run-queue wait (time runnable but
  not given a CPU) of the client and of its server processes, and the median of the
  per-round ratios.
* ``threads``: concurrent. ``--threads`` threads on ONE master_sdk Workbench (its
  connection pool) beside ``--threads`` threads on one ``PostgresSaver`` over a psycopg
  ``ConnectionPool`` of as many connections (the documented way to share a saver), each
  thread its own runs; taking turns, medians.
* ``writers``: 1, 2, 4 and 8 processes, one Workbench each, ``RUNS`` runs each after a few
  untimed ones; aggregate runs/s (medians of 3) and errors. Started from this process they
  share its session's CPU share (Linux autogroup); ``--writer-sessions`` gives each a
  session of its own, as kernels started by Jupyter or processes on other hosts have.

    .venv/bin/python -m benchmarks.postgres_bench [--runs 50] [--rounds 9] [--threads 8]
        [--only SECTION] [--writer-sessions]

Prints one JSON object (with the load average before, between and after the sections) and
writes it to ``benchmarks/results/postgres-<host>-<date>.json`` (``--output`` to change).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import socket
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import pg_anatomy
from benchmarks.master_sdk_flow import make_project, one_run, open_workbench
from tests.support import postgres

One = Callable[[int], Any]


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


class _SyncCount:
    """A commit hook counting master_sdk's synced and relaxed commits."""

    def __init__(self) -> None:
        self.synced = self.relaxed = 0

    def before_commit(self, commit: Any) -> None:
        if commit.sync:
            self.synced += 1
        else:
            self.relaxed += 1

    def after_commit(self, commit: Any) -> None:
        return None


@contextmanager
def master_side(root: Path, url: str, hook: Any = None) -> Iterator[One]:
    wb = open_workbench(root, url)  # type: ignore[arg-type]  # a store name
    if hook is not None:
        wb.store.hooks.append(hook)
    try:
        yield lambda i: one_run(wb, i)
    finally:
        wb.close()


@contextmanager
def langgraph_side(url: str, durability: str | None, pool_size: int = 0) -> Iterator[One]:
    """LangGraph's flow on a ``PostgresSaver``: one connection (``from_conn_string``), or
    a ``ConnectionPool`` of ``pool_size`` connections shared by threads."""
    from langgraph.checkpoint.postgres import PostgresSaver

    from benchmarks.peers import run_text
    from benchmarks.peers.langgraph_flow import build_graph, resume, start

    with ExitStack() as stack:
        if pool_size:
            from psycopg.rows import dict_row
            from psycopg_pool import ConnectionPool

            pool = stack.enter_context(
                ConnectionPool(
                    url,
                    min_size=pool_size,
                    max_size=pool_size,
                    kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
                )
            )
            saver = PostgresSaver(pool)  # type: ignore[arg-type]  # a pool of dict-row conns
        else:
            saver = stack.enter_context(PostgresSaver.from_conn_string(url))
        saver.setup()
        graph = build_graph(saver)  # type: ignore[arg-type]  # any checkpointer

        def one(i: int) -> None:
            text = run_text(i)
            start(graph, f"t{i}", text, durability)  # type: ignore[arg-type]
            resume(graph, f"t{i}", text, durability)  # type: ignore[arg-type]

        yield one


SIDES = ("master_sdk", "langgraph_async", "langgraph_sync")
DURABILITY = {"langgraph_async": None, "langgraph_sync": "sync"}


def _open(stack: ExitStack, side: str, root: Path, url: str, **kw: Any) -> One:
    if side == "master_sdk":
        return stack.enter_context(master_side(root, url, kw.get("hook")))
    return stack.enter_context(langgraph_side(url, DURABILITY[side], kw.get("pool_size", 0)))


# ----------------------------------------------------------------------------- anatomy


def anatomy(root: Path, server: Any, n: int = 30) -> dict[str, Any]:
    """Per side, what one run asks of the server (see the module docstring)."""
    out: dict[str, Any] = {}
    for side in SIDES:
        url = server.fresh_database()
        pg_anatomy.log_every_statement(server.url(), url.rsplit("/", 1)[1])
        proxy = pg_anatomy.TurnProxy()
        hook = _SyncCount()
        with ExitStack() as stack:
            via = stack.enter_context(proxy.serve(url))
            one = _open(stack, side, root, via, hook=hook)
            for i in range(10):
                one(-1 - i)
            time.sleep(0.3)  # LangGraph async: let the warm-up's background writes land
            turns, xid0 = proxy.client_turns, pg_anatomy.write_transactions(url)
            hook.synced = hook.relaxed = 0
            mark = pg_anatomy.statement_log(server.folder / "log")
            for i in range(n):
                one(i)
            time.sleep(0.3)
            statements, exec_ms = mark.statements()
            writes = pg_anatomy.write_transactions(url) - xid0
            row = {
                "round_trips_per_run": (proxy.client_turns - turns) / n,
                "statements_per_run": statements / n,
                "server_execution_ms_per_run": exec_ms / n,
                "write_transactions_per_run": writes / n,
            }
            if side == "master_sdk":
                row["synced_commits_per_run"] = hook.synced / n
                row["relaxed_commits_per_run"] = hook.relaxed / n
            else:  # every commit waits for its WAL flush (synchronous_commit on)
                row["synced_commits_per_run"] = writes / n
            out[side] = row
    return out


# ----------------------------------------------------------------------------- timed


def _shifted(one: One, base: int) -> One:
    return lambda i: one(base + i)


def _turns(r: int) -> list[str]:
    """The order of the sides in round ``r``: each goes first in turn."""
    k = r % len(SIDES)
    return [*SIDES[k:], *SIDES[:k]]


def _timed(url: str, n: int, one: One) -> dict[str, float]:
    sched = pg_anatomy.Sched(url)
    sched.start()
    began = time.perf_counter()
    for i in range(n):
        one(i)
    wall = time.perf_counter() - began
    return {"runs_per_s": n / wall, "wall_ms_per_run": wall / n * 1e3, **sched.stop(n)}


def _summarise(samples: dict[str, list[dict[str, float]]], ours: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for side, got in samples.items():
        out[side] = {k: statistics.median(s[k] for s in got) for k in got[0]}
        out[side]["all_runs_per_s"] = [round(s["runs_per_s"], 1) for s in got]
    for peer in samples:
        if peer != ours:
            out[f"ratio_vs_{peer}"] = statistics.median(
                a["runs_per_s"] / b["runs_per_s"]
                for a, b in zip(samples[ours], samples[peer], strict=True)
            )
    return out


def compare(root: Path, server: Any, n: int, rounds: int) -> dict[str, Any]:
    """Sequential: the three sides take turns, ``rounds`` rounds of ``n`` runs each."""
    samples: dict[str, list[dict[str, float]]] = {side: [] for side in SIDES}
    with ExitStack() as stack:
        urls = {side: server.fresh_database() for side in SIDES}
        ones = {side: _open(stack, side, root, urls[side]) for side in SIDES}
        for side in SIDES:  # warm: imports, prepared statements, trace name codes
            for i in range(10):
                ones[side](-1 - i)
        for r in range(rounds):
            for side in _turns(r):
                samples[side].append(_timed(urls[side], n, _shifted(ones[side], r * n)))
    return _summarise(samples, "master_sdk")


def _threaded(url: str, one: One, threads: int, n: int, base: int) -> dict[str, float]:
    """``n`` runs shared by ``threads`` threads released together; errors are counted."""
    errors: list[BaseException] = []
    gate = threading.Barrier(threads + 1)

    def work(k: int) -> None:
        gate.wait()
        for i in range(k, n, threads):
            try:
                one(base + i)
            except Exception as exc:  # counted: the benchmark reports errors
                errors.append(exc)

    pool = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    sched = pg_anatomy.Sched(url)
    sched.start()
    began = time.perf_counter()
    gate.wait()
    for t in pool:
        t.join()
    wall = time.perf_counter() - began
    if errors:
        raise RuntimeError(f"{len(errors)} of {n} runs failed, first: {errors[0]!r}")
    got = sched.stop(n)
    del got["client_runqueue_wait_ms"]  # the threads have ended: their wait is not counted
    return {"runs_per_s": n / wall, **got}


def compare_threads(root: Path, server: Any, threads: int, n: int, rounds: int) -> dict[str, Any]:
    """Concurrent: ``threads`` threads on one Workbench beside ``threads`` threads on one
    pooled ``PostgresSaver`` (both durabilities), taking turns; ``n`` runs a round."""
    samples: dict[str, list[dict[str, float]]] = {side: [] for side in SIDES}
    with ExitStack() as stack:
        urls = {side: server.fresh_database() for side in SIDES}
        ones = {side: _open(stack, side, root, urls[side], pool_size=threads) for side in SIDES}
        for side in SIDES:
            _threaded(urls[side], ones[side], threads, 2 * threads, -10_000)
        for r in range(rounds):
            for side in _turns(r):
                samples[side].append(_threaded(urls[side], ones[side], threads, n, r * n))
    out = _summarise(samples, "master_sdk")
    out["threads"] = threads
    return out


# ----------------------------------------------------------------------------- writers


def _writer(root: str, url: str, n: int, first: int, gate: Any, out: Any, session: bool) -> None:
    if session:  # a session of its own, as a kernel Jupyter starts or another host
        os.setsid()
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


def writers_runs_per_s(
    root: Path, url: str, processes: int, n_each: int, sessions: bool = False
) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    gate = ctx.Barrier(processes + 1)
    out = ctx.Queue()
    procs = [
        ctx.Process(target=_writer, args=(str(root), url, n_each, p * n_each, gate, out, sessions))
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


def writers(root: Path, server: Any, n: int, sessions: bool = False) -> dict[str, Any]:
    scaling: dict[str, Any] = {}
    for processes in (1, 2, 4, 8):
        samples = [
            writers_runs_per_s(root, server.fresh_database(), processes, n, sessions)
            for _ in range(3)
        ]
        scaling[str(processes)] = {
            "runs_per_s": statistics.median(s["runs_per_s"] for s in samples),
            "all_runs_per_s": [round(s["runs_per_s"], 1) for s in samples],
            "errors": sum(s["errors"] for s in samples),
            "load": _load(),
        }
    one = scaling["1"]["runs_per_s"]
    for row in scaling.values():
        row["speed_up"] = row["runs_per_s"] / one
    return scaling


# ----------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument(
        "--only", action="append", choices=("anatomy", "flow", "threads", "writers"), default=[]
    )
    parser.add_argument(
        "--writer-sessions",
        action="store_true",
        help="each writer process in a session of its own (Linux gives each session, not "
        "each process, a share of a CPU: autogroup)",
    )
    parser.add_argument("--output")
    args = parser.parse_args()
    sections = args.only or ["anatomy", "flow", "threads", "writers"]
    server = postgres.server()
    result: dict[str, Any] = {
        "host": socket.gethostname(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "runs": args.runs,
        "rounds": args.rounds,
        "server": "PostgreSQL test cluster (fsync=off, synchronous_commit=on), loopback TCP",
        "load_before": _load(),
    }
    try:
        with tempfile.TemporaryDirectory() as folder:
            root = make_project(Path(folder) / "project")
            if "anatomy" in sections:
                result["anatomy"] = anatomy(root, server)
            if "flow" in sections:
                result["flow"] = compare(root, server, args.runs, args.rounds)
                result["load_after_flow"] = _load()
            if "threads" in sections:
                result["threads"] = compare_threads(
                    root, server, args.threads, args.runs * 2, max(3, args.rounds // 2)
                )
                result["load_after_threads"] = _load()
            if "writers" in sections:
                result["writers"] = writers(root, server, args.runs, args.writer_sessions)
                result["writer_sessions"] = args.writer_sessions
    finally:
        postgres.stop()
    result["load_after"] = _load()
    text = json.dumps(result, indent=2)
    print(text)
    day = datetime.now(UTC).date().isoformat()
    target = Path(
        args.output
        or Path(__file__).parent / "results" / f"postgres-{socket.gethostname()}-{day}.json"
    )
    target.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
