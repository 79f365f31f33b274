"""A 10,000-case experiment on PostgreSQL beside the same on SQLite.

``wb.evaluate`` over N cases of ``prepare`` (tool) -> ``classify`` (agent; the fake model
sleeps ``--latency`` per call) -> ``tag`` (tool), ``--concurrency`` cases in flight
(``benchmarks/experiments_flow.py``, as in ``benchmarks/experiments_bench.py``), every
case a durable run with its full trace; once on a SQLite file (``synchronous=FULL``, group
commit) and once on a fresh database of a throwaway PostgreSQL server started here the way
the tests start theirs (``tests/support/postgres.py``: loopback TCP, ``fsync`` off). Each
row runs in a fresh process; the two stores take turns, ``--repeats`` times.

    .venv/bin/python -m benchmarks.postgres_experiments [--cases 10000] [--concurrency 64]

Reports per row cases/s, client CPU per case, commits per case (and how many of them were
synced), for PostgreSQL the server's CPU per case and the connections the pool opened, and
the load average; medians over the repeats. Writes
``benchmarks/results/postgres-experiments-<host>-<date>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.experiments_flow import write_project

STORES = ("sqlite", "postgresql")


class _Commits:
    """A commit hook counting commits and the synced ones."""

    def __init__(self) -> None:
        self.commits = self.synced = 0

    def before_commit(self, commit: Any) -> None:
        self.commits += 1
        self.synced += bool(commit.sync)

    def after_commit(self, commit: Any) -> None:
        return None


def _server_cpu_s(url: str) -> tuple[int, float]:
    """The server processes serving ``url``'s database and their CPU seconds so far."""
    from benchmarks.pg_anatomy import server_pids

    pids = server_pids(url)
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return len(pids), total / os.sysconf("SC_CLK_TCK")


def row(work: Path, store: str, n: int, concurrency: int, latency: float) -> dict[str, Any]:
    """One experiment of ``n`` cases on ``store`` (a SQLite path or a PostgreSQL URL)."""
    import master_sdk as ms
    from benchmarks.experiments_bench import _cases, _logging_fake

    root = work / "project"
    if not root.exists():
        write_project(root)
    fake = _logging_fake(None, latency)
    wb = ms.Workbench.open(root, store=store, providers={"default": fake})
    commits = _Commits()
    wb.store.hooks.append(commits)
    postgresql = store.startswith("postgresql://")
    cpu0, wall0 = time.process_time(), time.perf_counter()
    exp = wb.evaluate(
        "bench/classify", _cases(n), name="bench", concurrency=concurrency, progress=False
    )
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    statuses = exp.results["status"].value_counts()
    out: dict[str, Any] = {
        "cases": n,
        "wall_s": wall,
        "cases_per_s": n / wall,
        "client_cpu_ms_per_case": cpu / n * 1000,
        "commits_per_case": commits.commits / n,
        "synced_commits_per_case": commits.synced / n,
        "completed": int(statuses.get("completed", 0)),
        "failed": int(statuses.get("failed", 0)),
        "model_calls": fake.calls,
        "status": exp.status,
    }
    if postgresql:
        # the database is fresh: its server processes were all started for this row
        connections, server_s = _server_cpu_s(store)
        out["server_cpu_ms_per_case"] = server_s / n * 1000
        out["connections"] = connections
    wb.close()
    return out


def _spawn(store: str, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    from benchmarks.experiments_bench import spawn_row

    load = os.getloadavg()[0]
    result = spawn_row("benchmarks.postgres_experiments", store, work, args)
    result["load_1m"] = [round(load, 2), round(os.getloadavg()[0], 2)]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--workdir")
    parser.add_argument("--output")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        out = row(Path(args.workdir), args.child, args.cases, args.concurrency, args.latency)
        print(json.dumps(out))
        return
    from tests.support import postgres

    server = postgres.server()
    report: dict[str, Any] = {
        "host": socket.gethostname(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "cases": args.cases,
        "concurrency": args.concurrency,
        "latency_s": args.latency,
        "latency_bound_cases_per_s": args.concurrency / args.latency,
        "load_before": [round(x, 2) for x in os.getloadavg()],
        "rows": {store: [] for store in STORES},
    }
    try:
        with tempfile.TemporaryDirectory(prefix="bench-pgexp-") as scratch:
            for r in range(args.repeats):
                for kind in STORES if r % 2 == 0 else STORES[::-1]:
                    work = Path(scratch) / f"{kind}-{r}"
                    work.mkdir()
                    store = (
                        server.fresh_database()
                        if kind == "postgresql"
                        else str(work / "runs.sqlite3")
                    )
                    got = _spawn(store, work, args)
                    report["rows"][kind].append(got)
                    print(f"{kind}: {json.dumps(got)}", file=sys.stderr, flush=True)
    finally:
        postgres.stop()
    for kind, got in report["rows"].items():
        report[kind] = {
            key: statistics.median(g[key] for g in got)
            for key in got[0]
            if isinstance(got[0][key], int | float) and not isinstance(got[0][key], bool)
        }
    report["postgresql_over_sqlite"] = (
        report["postgresql"]["cases_per_s"] / report["sqlite"]["cases_per_s"]
    )
    report["load_after"] = [round(x, 2) for x in os.getloadavg()]
    text = json.dumps(report, indent=1)
    print(text)
    day = datetime.now(UTC).date().isoformat()
    target = Path(
        args.output
        or Path(__file__).parent
        / "results"
        / f"postgres-experiments-{socket.gethostname()}-{day}.json"
    )
    target.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
