"""Timing, repetition, statistics, the printed table and the JSON report.

A *row* is one system measured on the benchmark flow. Its measure function has the signature
:data:`Measure`: ``(workdir: Path, n_runs: int) -> RunSample``. It gets a fresh, empty
directory of its own, sets its store up there (untimed), runs ``n_runs`` complete runs of the
flow, times them with :func:`time_runs`, and returns a :class:`RunSample`. The harness calls it
once per repetition and derives every figure of the table from the samples, so a new system
(master_sdk included) is added by writing one such function and listing it in a :class:`Row`.
"""

from __future__ import annotations

import gc
import json
import math
import os
import platform
import socket
import sqlite3
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, NamedTuple

from benchmarks.peers import STEPS_PER_RUN

JSON_SCHEMA_VERSION = 1
PEER_DISTRIBUTIONS = (
    "langgraph",
    "langgraph-checkpoint",
    "langgraph-checkpoint-sqlite",
    "langchain-core",
    "apache-burr",
    "master-sdk",
)
# Tracing switches that would make LangChain/LangGraph send runs to a remote service; unset
# so no peer is measured with telemetry on. Burr removed its telemetry (burr.telemetry is
# a no-op stub since the ASF move) and has no tracker unless one is configured.
TELEMETRY_ENV = (
    "LANGSMITH_TRACING",
    "LANGSMITH_TRACING_V2",
    "LANGCHAIN_TRACING",
    "LANGCHAIN_TRACING_V2",
)


@dataclass(frozen=True)
class RunSample:
    """What one repetition of one row measured.

    Attributes:
        latencies_s: one entry per run, seconds from the run's start to its completion,
            the pause and the resume from the store included.
        wall_s: seconds for all the runs, loop overhead included; ``n_runs / wall_s`` is the
            throughput.
        cpu_s: CPU seconds the process spent over the runs, if measured.
        counters: optional numbers about the store, e.g. ``bytes_per_run`` or
            ``commits_per_run`` (keys in :data:`COUNTER_COLUMNS` are shown in the table).
        facts: optional strings about the configuration, e.g. ``journal_mode``.
    """

    latencies_s: tuple[float, ...]
    wall_s: float
    cpu_s: float | None = None
    counters: Mapping[str, float] = field(default_factory=dict)
    facts: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        timed: Timed,
        counters: Mapping[str, float] | None = None,
        facts: Mapping[str, str] | None = None,
    ) -> RunSample:
        """A sample from :func:`time_runs`' result and the row's own counters and facts."""
        return cls(timed.latencies_s, timed.wall_s, timed.cpu_s, counters or {}, facts or {})

    @property
    def n_runs(self) -> int:
        """How many runs the sample holds."""
        return len(self.latencies_s)

    def to_json(self) -> dict[str, Any]:
        """The sample as JSON-ready data, raw latencies included."""
        return {
            "n_runs": self.n_runs,
            "wall_s": self.wall_s,
            "cpu_s": self.cpu_s,
            "latencies_s": list(self.latencies_s),
            "counters": dict(self.counters),
            "facts": dict(self.facts),
        }


Measure = Callable[[Path, int], RunSample]
"""``(workdir, n_runs) -> RunSample``: runs the flow ``n_runs`` times in a fresh ``workdir``."""


@dataclass(frozen=True)
class Row:
    """One system measured on the benchmark flow.

    Attributes:
        name: short unique key, used by ``--only`` and in the JSON (``langgraph-default``).
        title: what the table shows (``LangGraph + SqliteSaver, durability=async``).
        measure: the measure function.
        persisted: what the system keeps in its store after a run, in a sentence.
        steps_per_run: steps of the flow, the divisor of ms/step.
    """

    name: str
    title: str
    measure: Measure
    persisted: str
    steps_per_run: int = STEPS_PER_RUN


@dataclass(frozen=True)
class Stats:
    """Summary of a list of numbers (the unit is the caller's)."""

    n: int
    median: float
    min: float
    max: float
    mean: float
    p50: float
    p99: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Stats:
        """Summarises ``values``, which must not be empty.

        Example:
            >>> Stats.of([3.0, 1.0, 2.0]).median
            2.0
        """
        if not values:
            raise ValueError("cannot summarise an empty list of values")
        return cls(
            n=len(values),
            median=statistics.median(values),
            min=min(values),
            max=max(values),
            mean=statistics.fmean(values),
            p50=percentile(values, 50),
            p99=percentile(values, 99),
        )

    def to_json(self) -> dict[str, float]:
        """The summary as JSON-ready data."""
        return {
            "n": self.n,
            "median": self.median,
            "min": self.min,
            "max": self.max,
            "mean": self.mean,
            "p50": self.p50,
            "p99": self.p99,
        }


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile with linear interpolation between ranks (numpy's default).

    Example:
        >>> percentile([1.0, 2.0, 3.0, 4.0], 50)
        2.5
    """
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


class Timed(NamedTuple):
    """What :func:`time_runs` measured."""

    latencies_s: tuple[float, ...]
    wall_s: float
    cpu_s: float


def time_runs(n_runs: int, run_once: Callable[[int], object]) -> Timed:
    """Calls ``run_once(i)`` for ``i`` in ``range(n_runs)``, timing each call and the whole loop.

    ``cpu_s`` is the CPU time of the whole process over the loop (every thread, so work a
    peer hands to a background thread counts); time spent waiting on the disk is not in it.
    """
    latencies: list[float] = []
    clock = time.perf_counter
    cpu_start = time.process_time()
    wall_start = clock()
    for index in range(n_runs):
        start = clock()
        run_once(index)
        latencies.append(clock() - start)
    wall = clock() - wall_start
    return Timed(tuple(latencies), wall, time.process_time() - cpu_start)


@dataclass(frozen=True)
class RowResult:
    """Every repetition of one row, and the figures derived from them."""

    row: Row
    samples: tuple[RunSample, ...]

    @property
    def runs_per_s(self) -> Stats:
        """Throughput of each repetition: ``n_runs / wall_s``."""
        return Stats.of([s.n_runs / s.wall_s for s in self.samples])

    @property
    def ms_per_step(self) -> Stats:
        """Milliseconds per step of each repetition: ``wall_s / (n_runs * steps_per_run)``."""
        steps = self.row.steps_per_run
        return Stats.of([1000.0 * s.wall_s / (s.n_runs * steps) for s in self.samples])

    @property
    def cpu_ms_per_run(self) -> Stats | None:
        """CPU milliseconds per run of each repetition that measured CPU time."""
        values = [1000.0 * s.cpu_s / s.n_runs for s in self.samples if s.cpu_s is not None]
        return Stats.of(values) if values else None

    @property
    def latency_ms(self) -> Stats:
        """Per-run latency in milliseconds, pooled over every repetition."""
        return Stats.of([1000.0 * lat for s in self.samples for lat in s.latencies_s])

    def counter(self, key: str) -> float | None:
        """The median of ``key`` over the repetitions that reported it, else ``None``."""
        values = [s.counters[key] for s in self.samples if key in s.counters]
        return statistics.median(values) if values else None

    def to_json(self) -> dict[str, Any]:
        """The row, its derived statistics and its raw samples as JSON-ready data."""
        keys = sorted({k for s in self.samples for k in s.counters})
        facts = {k: v for s in self.samples for k, v in s.facts.items()}
        return {
            "name": self.row.name,
            "title": self.row.title,
            "persisted": self.row.persisted,
            "steps_per_run": self.row.steps_per_run,
            "runs_per_s": self.runs_per_s.to_json(),
            "ms_per_step": self.ms_per_step.to_json(),
            "latency_ms": self.latency_ms.to_json(),
            "cpu_ms_per_run": cpu.to_json() if (cpu := self.cpu_ms_per_run) else None,
            "counters_median": {k: self.counter(k) for k in keys},
            "facts": facts,
            "samples": [s.to_json() for s in self.samples],
        }


def measure_rows(
    rows: Sequence[Row],
    workdir: Path,
    n_runs: int,
    repeat: int,
    *,
    on_sample: Callable[[Row, int, RunSample], None] | None = None,
) -> list[RowResult]:
    """Measures every row ``repeat`` times, interleaved, each time in a fresh directory.

    Repetitions are interleaved (A B C, A B C, ...) rather than grouped, so that a slow
    moment of a shared machine spreads over every row instead of sinking one.
    """
    if n_runs < 1 or repeat < 1:
        raise ValueError("n_runs and repeat must be at least 1")
    collected: dict[str, list[RunSample]] = {row.name: [] for row in rows}
    for rep in range(repeat):
        for row in rows:
            target = workdir / f"{row.name}-{rep}"
            target.mkdir(parents=True, exist_ok=False)
            # Collect the previous row's cyclic garbage now, in this thread: otherwise a later
            # row pays for it inside its timed loop, or a finaliser (Burr's persister closes
            # its connection in __del__) runs in another row's worker thread and fails.
            gc.collect()
            sample = row.measure(target, n_runs)
            if sample.n_runs != n_runs:
                raise RuntimeError(f"{row.name} returned {sample.n_runs} runs, not {n_runs}")
            collected[row.name].append(sample)
            if on_sample is not None:
                on_sample(row, rep, sample)
    return [RowResult(row, tuple(collected[row.name])) for row in rows]


# --- SQLite store helpers shared by the SQLite-backed rows ------------------------------


def sqlite_store_bytes(conn: sqlite3.Connection, db_path: Path) -> int:
    """Bytes the store occupies on disk once its write-ahead log is folded in.

    Runs ``PRAGMA wal_checkpoint(TRUNCATE)`` (a no-op outside WAL mode), then adds the sizes
    of the database file and of its ``-wal`` and ``-journal`` files when present. The
    ``-shm`` file is an index rebuilt from the log, not data, and is left out.
    """
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    total = 0
    for suffix in ("", "-wal", "-journal"):
        path = db_path.with_name(db_path.name + suffix)
        if path.exists():
            total += path.stat().st_size
    return total


@dataclass
class StatementCount:
    """Statements a connection ran while :func:`count_statements` was active."""

    statements: int = 0
    commits: int = 0
    relaxed: int = 0
    """Commits made with the safety level lowered to NORMAL for them alone (no fsync)."""


@contextmanager
def count_statements(conn: sqlite3.Connection) -> Iterator[StatementCount]:
    """Counts the statements, and the ``COMMIT`` statements, that ``conn`` executes.

    Uses the connection's trace callback, which costs time: use it on an untimed run only.
    Commits implied by a statement run outside a transaction are not seen; the peers measured
    here write inside explicit transactions (the ``sqlite3`` module opens them).
    """
    count = StatementCount()

    def trace(statement: str) -> None:
        count.statements += 1
        text = statement.lstrip().upper()
        if text.startswith(("COMMIT", "END")):
            count.commits += 1
        elif " ".join(text.split()) == "PRAGMA SYNCHRONOUS = NORMAL":
            count.relaxed += 1

    conn.set_trace_callback(trace)
    try:
        yield count
    finally:
        conn.set_trace_callback(None)


def sqlite_pragmas(conn: sqlite3.Connection) -> dict[str, str]:
    """The connection's journal mode and synchronous level, as SQLite reports them."""
    journal = conn.execute("PRAGMA journal_mode").fetchone()[0]
    level = int(conn.execute("PRAGMA synchronous").fetchone()[0])
    names = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
    return {"journal_mode": str(journal).upper(), "synchronous": names.get(level, str(level))}


# --- environment and machine ------------------------------------------------------------


def quiet_telemetry(environ: MutableMapping[str, str]) -> list[str]:
    """Removes the peers' tracing switches from ``environ``; returns the names it removed."""
    removed = [name for name in TELEMETRY_ENV if name in environ]
    for name in removed:
        del environ[name]
    return removed


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _filesystem_of(path: Path) -> str:
    """The type of the filesystem holding ``path`` (``ext4``, ``tmpfs``...), from /proc/mounts."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return "unknown"
    resolved = str(path.resolve())
    best, kind = "", "unknown"
    for line in mounts:
        parts = line.split()
        if len(parts) < 3:
            continue
        point = parts[1]
        inside = resolved == point or resolved.startswith(point.rstrip("/") + "/")
        if inside and len(point) > len(best):
            best, kind = point, parts[2]
    return kind


def package_versions(names: Sequence[str] = PEER_DISTRIBUTIONS) -> dict[str, str | None]:
    """Installed versions of the given distributions; ``None`` for those not installed."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def machine_info(workdir: Path) -> dict[str, Any]:
    """Where the figures were taken: host, CPU, Python, SQLite, packages, workdir filesystem."""
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "sqlite": sqlite3.sqlite_version,
        "packages": package_versions(),
        "workdir_filesystem": _filesystem_of(workdir),
    }


# --- output -------------------------------------------------------------------------------


def result_path(results_dir: Path, *, now: datetime, hostname: str, quick: bool) -> Path:
    """``<results_dir>/<hostname>-<YYYY-MM-DD>.json`` (``-quick`` before ``.json`` for smoke runs).

    Example:
        >>> result_path(Path("r"), now=datetime(2025, 1, 2, tzinfo=UTC), hostname="h",
        ...             quick=False).name
        'h-2025-01-02.json'
    """
    suffix = "-quick" if quick else ""
    return results_dir / f"{hostname}-{now.date().isoformat()}{suffix}.json"


def write_json(path: Path, report: Mapping[str, Any]) -> None:
    """Writes ``report`` to ``path`` atomically (a ``.tmp`` file renamed into place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    tmp.replace(path)


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(tz=UTC)


COUNTER_COLUMNS = (
    ("commits_per_run", "commits/run", "{:.0f}"),
    ("statements_per_run", "stmts/run", "{:.0f}"),
    ("bytes_per_run", "KB/run", "{:.1f}"),
)


def _format_counter(result: RowResult, key: str, pattern: str) -> str:
    value = result.counter(key)
    if value is None:
        return "-"
    if key == "bytes_per_run":
        value = value / 1000.0
    return pattern.format(value)


def format_table(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    """Aligns ``body`` under ``header``: the first column left, the others right."""
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]

    def render(line: Sequence[str]) -> str:
        cells = [
            cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i])
            for i, cell in enumerate(line)
        ]
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([render(header), rule, *(render(line) for line in body)])


def format_rows(results: Sequence[RowResult]) -> str:
    """The main table: one line per row, medians over repetitions, pooled latency percentiles."""
    header = ["row", "runs/s median (min-max)", "ms/step", "p50 ms", "p99 ms", "CPU ms/run"]
    header += [label for _, label, _ in COUNTER_COLUMNS]
    body = []
    for result in results:
        rate = result.runs_per_s
        latency = result.latency_ms
        line = [
            result.row.name,
            f"{rate.median:,.1f} ({rate.min:,.1f}-{rate.max:,.1f})",
            f"{result.ms_per_step.median:.2f}",
            f"{latency.p50:.2f}",
            f"{latency.p99:.2f}",
            f"{cpu.median:.2f}" if (cpu := result.cpu_ms_per_run) else "-",
        ]
        line += [_format_counter(result, key, pattern) for key, _, pattern in COUNTER_COLUMNS]
        body.append(line)
    return format_table(header, body)


def ratios(results: Sequence[RowResult], baselines: Sequence[str]) -> list[tuple[str, str, float]]:
    """``(row, baseline, median runs/s of row / median runs/s of baseline)`` for each pair
    whose rows are both present, baselines in the given order, rows in table order.

    A pair already given the other way round (``b / a`` after ``a / b``) is left out.
    """
    by_name = {r.row.name: r for r in results}
    found: list[tuple[str, str, float]] = []
    seen: set[frozenset[str]] = set()
    for base in baselines:
        if base not in by_name:
            continue
        base_rate = by_name[base].runs_per_s.median
        for result in results:
            pair = frozenset((result.row.name, base))
            if result.row.name == base or pair in seen:
                continue
            seen.add(pair)
            found.append((result.row.name, base, result.runs_per_s.median / base_rate))
    return found


def format_ratios(found: Sequence[tuple[str, str, float]]) -> str:
    """One line per ratio, ``a / b = 8.90x``."""
    width = max((len(f"{a} / {b}") for a, b, _ in found), default=0)
    return "\n".join(f"  {f'{a} / {b}'.ljust(width)} = {value:,.2f}x" for a, b, value in found)
