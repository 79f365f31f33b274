"""master_sdk's sections beside the rows: many writers, cold approve, import time, bytes per
run after 1,000 runs, and trace frames of 1,000,000 events.

Every measurement that involves a process start runs in a fresh interpreter, the way a user
would pay for it. Run as ``python -m benchmarks.master_sections worker ...`` it is one of the
many-writers processes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.cold_resume import child_env, import_time_us, time_once
from benchmarks.harness import Stats, sqlite_store_bytes
from benchmarks.master_sdk_flow import make_project, one_run, open_workbench

MANY_WRITERS = "master-writers"
COLD_APPROVE = "master-cold"
BYTES = "master-bytes"
TRACE_FRAMES = "master-trace-frames"
SECTIONS = (MANY_WRITERS, COLD_APPROVE, BYTES, TRACE_FRAMES)

_POLL_S = 0.005


# --- many writers ------------------------------------------------------------------------


class LockMeter:
    """Time this process holds SQLite's write lock: from ``BEGIN IMMEDIATE`` succeeding to
    the transaction's function returning with the lock released.

    Wraps the store's ``_acquire`` and the function that runs one transaction under the
    lock (``_written`` where the store syncs after releasing it, ``_write`` in versions
    that sync inside ``COMMIT``), so the same meter measures either version of the store.
    Where writers queue on a side lock (``_writers``), the lock is held until that is
    released: what ``_written`` does after it (a checkpoint) is not counted.
    """

    def __init__(self, store: Any) -> None:
        self.held_s = 0.0
        self.transactions = 0
        self._got = 0.0
        acquire = store._acquire
        name = "_written" if hasattr(store, "_written") else "_write"
        transaction = getattr(store, name)

        def timed_acquire(conn: Any) -> None:
            acquire(conn)
            self._got = time.perf_counter()

        def timed_transaction(*args: Any, **kwargs: Any) -> Any:
            self._got = 0.0
            try:
                return transaction(*args, **kwargs)
            finally:
                self._held()

        store._acquire = timed_acquire
        setattr(store, name, timed_transaction)
        writers = getattr(store, "_writers", None)
        if writers is not None:
            release = writers.release

            def timed_release() -> None:
                release()
                self._held()

            writers.release = timed_release

    def _held(self) -> None:
        """The lock was released: count the time since it was taken (once)."""
        if self._got:
            self.held_s += time.perf_counter() - self._got
            self.transactions += 1
            self._got = 0.0


def worker(root: Path, store: Path, n_runs: int, offset: int, go: Path) -> dict[str, Any]:
    """One writer: open the store, say ready, wait for ``go``, run ``n_runs`` runs."""
    wb = open_workbench(root, store)
    one_run(wb, offset - 1)  # warm: imports, compiled flow, prepared statements
    meter = LockMeter(wb.store)
    print("ready", flush=True)
    while not go.exists():
        time.sleep(_POLL_S)
    errors: list[str] = []
    waits = getattr(getattr(wb.store, "_writers", None), "waits", 0)
    started = time.time()
    cpu = time.process_time()
    done = 0
    for index in range(n_runs):
        try:
            one_run(wb, offset + index)
            done += 1
        except Exception as exc:  # counted and reported, never hidden
            errors.append(f"{type(exc).__name__}: {exc}")
    ended = time.time()
    cpu = time.process_time() - cpu
    waits = getattr(getattr(wb.store, "_writers", None), "waits", 0) - waits
    wb.close()
    return {
        "done": done,
        "errors": errors,
        "start": started,
        "end": ended,
        "lock_ms_per_run": meter.held_s * 1000 / max(done, 1),
        "transactions_per_run": meter.transactions / max(done, 1),
        "cpu_ms_per_run": cpu * 1000 / max(done, 1),
        "queued_per_run": waits / max(done, 1),
    }


@dataclass(frozen=True)
class WritersResult:
    """Aggregate throughput of ``processes`` writers sharing one store."""

    processes: int
    runs_per_s: Stats
    errors: int
    runs: int
    lock_ms_per_run: Stats
    """Time one process held the write lock per run (median over processes and reps)."""
    cpu_ms_per_run: Stats
    """CPU time of one process per run, all its threads (median over processes and reps)."""
    queued_per_run: Stats
    """How many times per run a process found the write lock taken and waited for it in
    the kernel (0 for versions of the store that poll)."""

    def to_json(self) -> dict[str, Any]:
        """JSON-ready data."""
        return {
            "processes": self.processes,
            "runs_per_s": self.runs_per_s.to_json(),
            "errors": self.errors,
            "runs": self.runs,
            "lock_ms_per_run": self.lock_ms_per_run.to_json(),
            "cpu_ms_per_run": self.cpu_ms_per_run.to_json(),
            "queued_per_run": self.queued_per_run.to_json(),
        }


def _writers_once(
    workdir: Path, processes: int, n_runs: int
) -> tuple[float, int, int, list[dict[str, Any]]]:
    root = make_project(workdir / "project")
    store = workdir / "shared.sqlite3"
    go = workdir / "go"
    env = child_env()
    children = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks.master_sections",
                "worker",
                str(root),
                str(store),
                str(n_runs),
                str(index * 1_000_000),
                str(go),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for index in range(processes)
    ]
    for child in children:
        assert child.stdout is not None
        line = child.stdout.readline().strip()
        if line != "ready":
            raise RuntimeError(
                f"writer did not start: {line} {child.stderr.read() if child.stderr else ''}"
            )
    go.touch()
    results = []
    for child in children:
        out, err = child.communicate(timeout=600)
        if child.returncode != 0:
            raise RuntimeError(f"writer failed: {err[-2000:]}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    wall = max(r["end"] for r in results) - min(r["start"] for r in results)
    done = sum(r["done"] for r in results)
    errors = sum(len(r["errors"]) for r in results)
    return done / wall, errors, done, results


def measure_writers(
    workdir: Path, *, counts: tuple[int, ...] = (1, 2, 4), n_runs: int = 150, repeat: int = 3
) -> list[WritersResult]:
    """Aggregate runs/s of 1, 2 and 4 processes on one store file (interleaved repetitions)."""
    rates: dict[int, list[float]] = {count: [] for count in counts}
    locks: dict[int, list[float]] = {count: [] for count in counts}
    cpus: dict[int, list[float]] = {count: [] for count in counts}
    queued: dict[int, list[float]] = {count: [] for count in counts}
    errors = dict.fromkeys(counts, 0)
    runs = dict.fromkeys(counts, 0)
    for rep in range(repeat):
        for count in counts:
            where = workdir / f"writers-{count}-{rep}"
            where.mkdir(parents=True)
            rate, failed, done, results = _writers_once(where, count, n_runs)
            held = [r["lock_ms_per_run"] for r in results]
            rates[count].append(rate)
            locks[count].extend(held)
            cpus[count].extend(r.get("cpu_ms_per_run", 0.0) for r in results)
            queued[count].extend(r.get("queued_per_run", 0.0) for r in results)
            errors[count] += failed
            runs[count] += done
            print(
                f"  {count} writer(s) #{rep + 1}: {rate:,.1f} runs/s, {failed} errors, "
                f"write lock held {Stats.of(held).median:.2f} ms/run, "
                f"CPU {Stats.of(cpus[count][-count:]).median:.2f} ms/run",
                file=sys.stderr,
                flush=True,
            )
    return [
        WritersResult(
            c,
            Stats.of(rates[c]),
            errors[c],
            runs[c],
            Stats.of(locks[c]),
            Stats.of(cpus[c]),
            Stats.of(queued[c]),
        )
        for c in counts
    ]


def format_writers(results: list[WritersResult]) -> str:
    """The many-writers table with the ratio to one process."""
    base = next((r.runs_per_s.median for r in results if r.processes == 1), None)
    lines = []
    for r in results:
        ratio = f"  {r.runs_per_s.median / base:.2f}x one process" if base else ""
        lines.append(
            f"  {r.processes} process(es)  {r.runs_per_s.median:>8,.1f} runs/s "
            f"({r.runs_per_s.min:,.1f}-{r.runs_per_s.max:,.1f})  {r.errors} errors in "
            f"{r.runs:,} runs{ratio}  write lock held {r.lock_ms_per_run.median:.2f} ms/run"
            f"  CPU {r.cpu_ms_per_run.median:.2f} ms/run  queued {r.queued_per_run.median:.1f}"
            "/run"
        )
    return "\n".join(lines)


# --- cold approve and import time --------------------------------------------------------

COLD_MODELS = "models:\n  default: {provider: fake}\n"
# a fresh process opening the workbench (as a notebook's first cell does), then exiting
OPEN_WORKBENCH = (
    "import sys, master_sdk as ms; ms.Workbench.open(sys.argv[1], store=sys.argv[2]).close()"
)


def measure_cold_approve(workdir: Path, *, runs: int = 5) -> dict[str, Any]:
    """``master approve RUN`` in a fresh process, finishing a paused run (fake model
    configured, as a user's project would have it); plus ``import master_sdk`` time."""
    import master_sdk as ms

    root = make_project(workdir / "project")
    (root / "configs" / "models.yaml").write_text(COLD_MODELS, encoding="utf-8")
    store = workdir / "cold.sqlite3"
    wb = ms.Workbench.open(root, store=store)
    paused = [wb.run("bench/durable", inputs={"text": f"cold {i}"}).id for i in range(runs + 1)]
    wb.close()
    master = str(Path(sys.executable).with_name("master"))
    command = [master] if Path(master).exists() else [sys.executable, "-m", "master_sdk.cli"]
    env = child_env()
    # an installed program has its bytecode (and Python writes it on first use): a
    # PYTHONDONTWRITEBYTECODE in the calling shell would time compiling instead
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    times = []
    for index, run_id in enumerate(paused):
        argv = [*command, "--root", str(root), "--store", str(store), "approve", run_id]
        elapsed = time_once(argv, env=env)
        if index > 0:  # the first writes the bytecode caches an installed program has
            times.append(elapsed)
    wb = ms.Workbench.open(root, store=store)
    finished = [wb.get_run(run_id).status for run_id in paused]
    wb.close()
    if set(finished) != {"completed"}:
        raise AssertionError(f"cold approvals did not complete the runs: {finished}")
    python_start = [time_once([sys.executable, "-c", "pass"], env=env) for _ in range(runs)]
    opening = [
        time_once([sys.executable, "-c", OPEN_WORKBENCH, str(root), str(store)], env=env)
        for _ in range(runs + 1)
    ][1:]
    imports = import_time_us("master_sdk", runs=3, env=env)
    return {
        "approve_s": Stats.of(times).to_json(),
        "workbench_open_s": Stats.of(opening).to_json(),
        "python_start_s": Stats.of(python_start).to_json(),
        "import_master_sdk_us": imports.to_json(),
        "argv": command,
    }


def format_cold(result: dict[str, Any]) -> str:
    """The cold approve lines."""
    approve = result["approve_s"]
    start = result["python_start_s"]
    imports = result["import_master_sdk_us"]
    return "\n".join(
        [
            f"  master approve RUN (fresh process, finishes the run)  median "
            f"{approve['median']:.3f} s ({approve['min']:.3f}-{approve['max']:.3f}), "
            f"{approve['n']} runs",
            f"  Workbench.open() (fresh process, open and close)      median "
            f"{result['workbench_open_s']['median']:.3f} s "
            f"({result['workbench_open_s']['min']:.3f}-{result['workbench_open_s']['max']:.3f})",
            f"  python -c pass                                        median "
            f"{start['median']:.3f} s",
            f"  import master_sdk (-X importtime, cumulative)          median "
            f"{imports['median'] / 1e6:.3f} s ({imports['min'] / 1e6:.3f}-"
            f"{imports['max'] / 1e6:.3f})",
        ]
    )


# --- bytes per run --------------------------------------------------------------------


def measure_bytes(workdir: Path, *, n_runs: int = 1000) -> dict[str, Any]:
    """Store bytes per completed run after ``n_runs`` runs, full trace kept (WAL folded in)."""
    root = make_project(workdir / "project")
    store = workdir / "bytes.sqlite3"
    wb = open_workbench(root, store)
    try:
        for index in range(n_runs):
            one_run(wb, index)
        conn = wb.store.conn
        total = sqlite_store_bytes(conn, store)
        tables = {
            name: conn.execute(f"SELECT count(*) FROM {name}").fetchone()[0]  # noqa: S608  # constant names
            for name in ("runs", "steps", "trace_chunks", "approvals")
        }
        tables["trace"] = wb.store.count_events()  # events (a trace_chunks row per commit)
    finally:
        wb.close()
    return {"runs": n_runs, "store_bytes": total, "bytes_per_run": total / n_runs, "rows": tables}


# --- trace frames ----------------------------------------------------------------------


def measure_trace_frames(
    workdir: Path, *, events: int = 1_000_000, repeat: int = 3
) -> dict[str, Any]:
    """``wb.traces()`` against ``pandas.read_sql`` on 1,000,000 events, each in a fresh process."""
    from benchmarks import trace_frames

    workdir.mkdir(parents=True, exist_ok=True)
    store = workdir / "traces.sqlite3"
    trace_frames.fill(store, events)
    trace_frames.fill_rows(trace_frames.baseline_path(store), events)
    got: dict[str, list[dict[str, float]]] = {name: [] for name in trace_frames.MEASURED}
    for _ in range(repeat):
        for name, what in trace_frames.MEASURED.items():
            got[name].append(trace_frames.measure(what, store))
    return {
        name: {
            "s": Stats.of([g["s"] for g in values]).to_json(),
            "cpu_s": Stats.of([g["cpu"] for g in values]).to_json(),
            "peak_rss_mib": Stats.of([g["hwm"] for g in values]).to_json(),
            "rows": values[0]["rows"],
        }
        for name, values in got.items()
    }


def format_trace_frames(result: dict[str, Any]) -> str:
    """The trace-frames lines."""
    return "\n".join(
        f"  {name:<16} median {r['s']['median']:.3f} s ({r['s']['min']:.3f}-{r['s']['max']:.3f}), "
        f"CPU {r['cpu_s']['median']:.3f} s, peak RSS {r['peak_rss_mib']['median']:.0f} MiB, "
        f"{int(r['rows']):,} rows"
        for name, r in result.items()
    )


if __name__ == "__main__":
    if len(sys.argv) == 7 and sys.argv[1] == "worker":
        _, _, root, store, n_runs, offset, go = sys.argv
        print(json.dumps(worker(Path(root), Path(store), int(n_runs), int(offset), Path(go))))
    else:
        raise SystemExit(
            "usage: python -m benchmarks.master_sections worker ROOT STORE N OFFSET GO"
        )
