"""What the synced commits cost a run, and what many runs in flight in one process gain.

``python -m benchmarks.sync_cost [--runs 1000] [--repeat 5] [--threads 1,2,4,8,16,64]``

Part one runs the benchmark flow (``master_sdk_flow.py``: start -> pause -> load ->
approve -> completed, full trace) in one thread with ``synchronous: FULL`` (the default:
a run's pause and its end are synced, two ``fdatasync`` of the log per run) and with
``NORMAL`` (the same code and the same writes, no sync), alternated in one process, fresh
stores each time. The difference is what the two syncs cost a run on this disk: the time
spent inside ``fdatasync`` (timed around each call) and the CPU the process spends more
after waking from it. Whatever else is cut from a run, a FULL run cannot take less than
its syncs.

Part two runs the same flow from N threads on one workbench (N runs in flight), FULL:
runs/s, CPU per run, context switches per run and log syncs per run, so the gain of
sharing syncs (group commit) can be read against the cost of the threads taking turns
with the interpreter.
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.harness import Stats
from benchmarks.master_sdk_flow import make_project, one_run, open_workbench

WARM_UP = 30


@dataclass(frozen=True)
class Sample:
    """One timed batch of runs."""

    runs: int
    wall_s: float
    user_s: float
    system_s: float
    switches: int
    """Voluntary context switches of the process (it slept: a sync, a lock, a wait)."""
    syncs: int
    sync_s: list[float]
    """Seconds inside each ``fdatasync`` of the log."""

    def per_run_ms(self, seconds: float) -> float:
        return seconds * 1000 / self.runs


class _SyncClock:
    """Times every ``fdatasync`` the store makes on its log (``syncing.py`` calls
    ``os.fdatasync`` through its module's ``os``)."""

    def __init__(self) -> None:
        from master_sdk.memory.sqlite import syncing

        self._module = syncing
        self.times: list[float] = []

    def __enter__(self) -> _SyncClock:
        real = os.fdatasync
        times = self.times

        def timed(fd: int) -> None:
            started = time.perf_counter()
            try:
                real(fd)
            finally:
                times.append(time.perf_counter() - started)

        setattr(self._module, "os", _OsWith(timed))  # noqa: B010  # not an export of it
        return self

    def __exit__(self, *exc: object) -> None:
        setattr(self._module, "os", os)  # noqa: B010


class _OsWith:
    """``os`` with ``fdatasync`` replaced."""

    def __init__(self, fdatasync: Callable[[int], None]) -> None:
        self.fdatasync = fdatasync

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)


def batch(workdir: Path, runs: int, *, synchronous: str, threads: int = 1) -> Sample:
    """``runs`` runs of the flow on a fresh store, from ``threads`` threads at once."""
    root = make_project(workdir / "project", synchronous=synchronous)
    wb = open_workbench(root, workdir / "runs.sqlite3")
    try:
        for index in range(WARM_UP):
            one_run(wb, -1 - index)
        errors: list[BaseException] = []
        start = threading.Barrier(threads + 1)

        def work(first: int) -> None:
            start.wait()
            try:
                for index in range(first, runs, threads):
                    one_run(wb, index)
            except BaseException as exc:  # reported after the batch
                errors.append(exc)

        workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
        for worker in workers:
            worker.start()
        gc.collect()
        syncs_before = wb.store.log_syncs
        with _SyncClock() as clock:
            usage = resource.getrusage(resource.RUSAGE_SELF)
            began = time.perf_counter()
            start.wait()
            for worker in workers:
                worker.join()
            wall = time.perf_counter() - began
            after = resource.getrusage(resource.RUSAGE_SELF)
        if errors:
            raise errors[0]
        return Sample(
            runs=runs,
            wall_s=wall,
            user_s=after.ru_utime - usage.ru_utime,
            system_s=after.ru_stime - usage.ru_stime,
            switches=after.ru_nvcsw - usage.ru_nvcsw,
            syncs=wb.store.log_syncs - syncs_before,
            sync_s=list(clock.times),
        )
    finally:
        wb.close()


def _median(samples: Sequence[Sample], value: Callable[[Sample], float]) -> float:
    return Stats.of([value(s) for s in samples]).median


def sync_cost(runs: int, repeat: int) -> str:
    """Part one: FULL against NORMAL, alternated; the lines to print."""
    found: dict[str, list[Sample]] = {"FULL": [], "NORMAL": []}
    with tempfile.TemporaryDirectory(prefix="sync-cost-") as tmp:
        for rep in range(repeat):
            for level in found:
                where = Path(tmp) / f"{level}-{rep}"
                where.mkdir()
                found[level].append(batch(where, runs, synchronous=level))
    lines = [
        f"One thread, {runs} runs x {repeat} (medians), the same flow and writes:",
        "  synchronous  runs/s   wall ms/run  user ms/run  sys ms/run  sleeps/run  "
        "syncs/run  ms per sync",
    ]
    for level, samples in found.items():
        syncs = [t for s in samples for t in s.sync_s]
        lines.append(
            f"  {level:<11}  {_median(samples, lambda s: s.runs / s.wall_s):>6,.0f}"
            f"  {_median(samples, lambda s: s.per_run_ms(s.wall_s)):>11.3f}"
            f"  {_median(samples, lambda s: s.per_run_ms(s.user_s)):>11.3f}"
            f"  {_median(samples, lambda s: s.per_run_ms(s.system_s)):>10.3f}"
            f"  {_median(samples, lambda s: s.switches / s.runs):>10.1f}"
            f"  {_median(samples, lambda s: s.syncs / s.runs):>9.2f}"
            f"  {Stats.of(syncs).median * 1000 if syncs else 0.0:>11.3f}"
        )
    full, normal = found["FULL"], found["NORMAL"]

    def more(value: Callable[[Sample], float]) -> float:
        return _median(full, value) - _median(normal, value)

    wall = more(lambda s: s.per_run_ms(s.wall_s))
    inside = _median(full, lambda s: s.per_run_ms(sum(s.sync_s)))
    user = more(lambda s: s.per_run_ms(s.user_s))
    lines += [
        f"  the syncs cost a run {wall:.3f} ms: {inside:.3f} ms inside fdatasync and "
        f"{wall - inside:.3f} ms more outside it ({user:+.3f} ms of user time: the same "
        "Python runs slower after each sleep)",
        f"  a FULL run cannot be shorter than its syncs: at most "
        f"{1000 / inside if inside else float('inf'):,.0f} runs/s with no other work at all",
    ]
    return "\n".join(lines)


def in_flight(runs: int, repeat: int, counts: Sequence[int]) -> str:
    """Part two: N threads on one workbench, FULL; the lines to print."""
    lines = [
        f"Runs in flight in one process (threads on one workbench, FULL), {runs} runs x "
        f"{repeat} (medians):",
        "  in flight  runs/s  CPU ms/run (user + sys)  sleeps/run  syncs/run",
    ]
    with tempfile.TemporaryDirectory(prefix="in-flight-") as tmp:
        found: dict[int, list[Sample]] = {n: [] for n in counts}
        for rep in range(repeat):
            for n in counts:
                where = Path(tmp) / f"{n}-{rep}"
                where.mkdir()
                found[n].append(batch(where, runs, synchronous="FULL", threads=n))
    for n, samples in found.items():
        lines.append(
            f"  {n:>9}  {_median(samples, lambda s: s.runs / s.wall_s):>6,.0f}"
            f"  {_median(samples, lambda s: s.per_run_ms(s.user_s + s.system_s)):>11.2f}"
            f" ({_median(samples, lambda s: s.per_run_ms(s.user_s)):.2f} + "
            f"{_median(samples, lambda s: s.per_run_ms(s.system_s)):.2f})"
            f"  {_median(samples, lambda s: s.switches / s.runs):>10.1f}"
            f"  {_median(samples, lambda s: s.syncs / s.runs):>9.2f}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sync_cost", description=__doc__)
    parser.add_argument("--runs", type=int, default=1000, help="runs per batch (default 1000)")
    parser.add_argument("--repeat", type=int, default=5, help="batches of each (default 5)")
    parser.add_argument(
        "--threads",
        default="1,2,4,8,16,64",
        help="runs in flight for part two, comma-separated ('' skips it)",
    )
    args = parser.parse_args(argv)
    load = os.getloadavg()[0]
    print(sync_cost(args.runs, args.repeat), flush=True)
    counts = [int(n) for n in args.threads.split(",") if n.strip()]
    if counts:
        print(in_flight(args.runs, args.repeat, counts), flush=True)
    print(f"load average {load:.2f} -> {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
