"""Experiments on threads vs on Ray (a local 2-CPU cluster), on PostgreSQL.

    .venv/bin/python -m benchmarks.ray_bench [--cases 10000] [--repeats 3] [--concurrency 32]

The flow of ``benchmarks/experiments_bench.py`` (``prepare`` tool -> ``classify`` agent, the
fake model sleeping ``--latency`` per call -> ``tag`` tool), every case a durable run with
its full trace, on a throwaway PostgreSQL server (``tests/support/postgres.py``), a fresh
database per measurement. Figures (medians of ``--repeats``):

* ``ray_init_s``: ``ray.init(num_cpus=2)`` of a local cluster, once (the first evaluate
  with ``ray_address=None`` pays it; later ones reuse the cluster).
* ``pool_start_s``: a Ray pass's wall time less the span of its runs (first start to last
  end): the workers starting (each Ray actor imports master_sdk, opens the store, loads the
  product, checks the flow hash) and the last results written; paid by every
  ``evaluate``/``resume`` on Ray.
* ``threads_cases_per_s``: cases over the wall time; ``ray_cases_per_s``: cases over the
  span of the runs (without the start-up), and ``ray_wall_s`` with it.
* ``per_case_overhead_ms``: ``1/ray_rate - 1/threads_rate`` (what Ray adds per case here).
* ``break_even_cases``: the case count above which Ray's whole wall time is below threads'
  (None when Ray is not faster per case on this machine).
* ``task_per_case_ms`` vs ``actor_per_case_ms``: one case as a Ray *task* that loads the
  workbench itself, against one case on an actor that loaded it once (why the backend uses
  actors).
* ``rtt_ms``: one empty actor call round trip (Ray's own floor).

The machine is shared: the load average is printed with the figures.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.experiments_flow import case_text, write_project


def _cases(n: int) -> list[dict[str, Any]]:
    return [{"case_key": f"c{i}", "text": case_text(i)} for i in range(n)]


def _open(root: Path, url: str, latency: float) -> Any:
    import master_sdk as ms
    from master_sdk.models.providers.fake import FakeProvider

    fake = FakeProvider(latency_s=latency)
    return ms.Workbench.open(root, store=url, providers={"default": fake})


def one_pass(root: Path, url: str, n: int, *, backend: str, concurrency: int,
             latency: float) -> dict[str, Any]:  # fmt: skip
    """One experiment of ``n`` cases; returns its wall time and how it ended."""
    wb = _open(root, url, latency)
    try:
        began = time.perf_counter()
        exp = wb.evaluate("bench/classify", _cases(n), name=f"{backend}-{n}",
                          concurrency=concurrency, backend=backend, progress=False)  # fmt: skip
        wall = time.perf_counter() - began
        counts = exp.results["status"].value_counts()
        runs = exp.runs()
        # from the first run's start to the last run's end: the pass without start-up
        span = (runs["updated_at"].max() - runs["created_at"].min()).total_seconds()
        return {"wall_s": wall, "span_s": span, "completed": int(counts.get("completed", 0)),
                "status": exp.status}  # fmt: skip
    finally:
        wb.close()


def _task_case(settings: Any, latency: float, text: str) -> str:
    """One case as a plain Ray task: load the workbench, run the case, close."""
    from master_sdk.models.providers.fake import FakeProvider
    from master_sdk.workbench import Workbench

    wb = Workbench(settings, providers={"default": FakeProvider(latency_s=latency)})
    try:
        return str(wb.run("bench/classify", {"text": text}).status)
    finally:
        wb.close()


def tasks_vs_actors(root: Path, url: str, k: int, latency: float) -> dict[str, float]:
    """Per-case time of ``k`` cases as tasks (2 at a time) and on 2 actors (1 each)."""
    import ray

    wb = _open(root, url, latency)
    try:
        settings = wb.settings.model_copy(
            update={"app": wb.settings.app.model_copy(update={"store": url})}
        )
    finally:
        wb.close()
    task = ray.remote(num_cpus=1)(_task_case)
    ray.get([task.remote(settings, latency, "warm") for _ in range(2)])  # worker processes up
    began = time.perf_counter()
    statuses = ray.get([task.remote(settings, latency, case_text(i)) for i in range(k)])
    task_ms = (time.perf_counter() - began) / k * 1000
    assert set(statuses) == {"completed"}, statuses
    out = one_pass(root, url, k, backend="ray", concurrency=2, latency=latency)
    assert out["completed"] == k, out
    return {"task_per_case_ms": task_ms, "actor_per_case_ms": out["span_s"] / k * 1000}


def rtt_ms() -> float:
    import ray

    @ray.remote(num_cpus=0)
    class Echo:
        def ping(self) -> int:
            return 1

    echo = Echo.remote()  # type: ignore[attr-defined]  # made by ray.remote
    ray.get(echo.ping.remote())
    began = time.perf_counter()
    for _ in range(200):
        ray.get(echo.ping.remote())
    took = (time.perf_counter() - began) / 200 * 1000
    ray.kill(echo)
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--tasks", type=int, default=40, help="cases in the tasks-vs-actors row")
    args = parser.parse_args()

    import ray

    from master_sdk.experiments.ray_backend import start_local
    from tests.support import postgres

    server = postgres.server()
    work = Path(tempfile.mkdtemp(prefix="ray-bench-"))
    root = write_project(work / "proj")
    try:
        began = time.perf_counter()
        start_local(ray, num_cpus=2, include_dashboard=False,
                    object_store_memory=100 * 1024 * 1024, log_to_driver=False,
                    logging_level=logging.WARNING,
                    runtime_env={"env_vars": {"PYTHONPATH": str(Path.cwd())}})  # fmt: skip
        init_s = time.perf_counter() - began
        n, c, lat = args.cases, args.concurrency, args.latency
        threads_runs, ray_runs = [], []
        for _ in range(args.repeats):
            threads_runs.append(one_pass(root, server.fresh_database(), n, backend="threads",
                                         concurrency=c, latency=lat))  # fmt: skip
            ray_runs.append(one_pass(root, server.fresh_database(), n, backend="ray",
                                     concurrency=c, latency=lat))  # fmt: skip
        # Ray's pass: start-up (workers loading the project) + the span of its runs
        pool_s = statistics.median(r["wall_s"] - r["span_s"] for r in ray_runs)
        threads_wall = statistics.median(r["wall_s"] for r in threads_runs)
        ray_wall = statistics.median(r["wall_s"] for r in ray_runs)
        threads_rate = n / threads_wall
        ray_rate = n / statistics.median(r["span_s"] for r in ray_runs)
        overhead_ms = (1 / ray_rate - 1 / threads_rate) * 1000
        break_even = (
            None if ray_rate <= threads_rate
            else round(pool_s / (1 / threads_rate - 1 / ray_rate))
        )  # fmt: skip
        cpus = 2
        per_worker = ray_rate / cpus
        mix = tasks_vs_actors(root, server.fresh_database(), args.tasks, lat)
        out = {
            "cases": n, "repeats": args.repeats, "concurrency": c, "latency_s": lat,
            "store": "postgresql (throwaway server on this machine)",
            "ray_init_s": round(init_s, 2), "pool_start_s": round(pool_s, 2),
            "threads_wall_s": round(threads_wall, 2), "ray_wall_s": round(ray_wall, 2),
            "threads_cases_per_s": round(threads_rate, 1), "ray_cases_per_s": round(ray_rate, 1),
            "per_case_overhead_ms": round(overhead_ms, 2), "break_even_cases": break_even,
            "ray_cases_per_s_per_worker": round(per_worker, 1),
            "on_paper_8_machines_x_2_workers_cases_per_s": round(per_worker * 16, 1),
            **{k: round(v, 1) for k, v in mix.items()},
            "rtt_ms": round(rtt_ms(), 3),
            "statuses": sorted({r["status"] for r in threads_runs + ray_runs}),
            "completed": [r["completed"] for r in threads_runs + ray_runs],
            "loadavg": [round(x, 2) for x in os.getloadavg()],
        }  # fmt: skip
        print(json.dumps(out, indent=1))
    finally:
        ray.shutdown()
        postgres.stop()


if __name__ == "__main__":
    main()
