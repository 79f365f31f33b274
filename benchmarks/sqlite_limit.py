"""The physical limit: how many durable single-row commits SQLite makes here per second.

Every system measured keeps its runs in SQLite, and a durable step costs at least one
commit. This measures the floor under all of them on the benchmark's own disk: a fresh
database in the benchmark's work directory, one ``INSERT`` of one small row per
transaction, ``BEGIN``/``COMMIT`` issued explicitly.

- WAL + ``synchronous=FULL``: the WAL is synced on every commit; durable against power loss.
- WAL + ``synchronous=NORMAL``: synced only at checkpoints; a commit survives a process crash
  but the last ones may be lost on power loss.
- rollback journal (``DELETE``) + ``synchronous=FULL``: SQLite's default, and what Burr's
  ``SQLitePersister`` runs in as shipped; shown to explain that row.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.harness import Stats

PAYLOAD = "x" * 200
"""Row payload: about the size of one small step record."""


@dataclass(frozen=True)
class CommitConfig:
    """One journal mode and synchronous level to measure."""

    name: str
    journal_mode: str
    synchronous: str


CONFIGS = (
    CommitConfig("wal-full", "WAL", "FULL"),
    CommitConfig("wal-normal", "WAL", "NORMAL"),
    CommitConfig("delete-full", "DELETE", "FULL"),
)


def commit_rate(db_path: Path, config: CommitConfig, commits: int) -> float:
    """Commits per second of ``commits`` single-row transactions on a fresh ``db_path``.

    The database, its schema and its pragmas are set up before the clock starts.
    """
    if db_path.exists():
        raise FileExistsError(f"{db_path} exists; the measurement needs a fresh file")
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        mode = conn.execute(f"PRAGMA journal_mode={config.journal_mode}").fetchone()[0]
        if str(mode).upper() != config.journal_mode:
            raise RuntimeError(f"SQLite refused journal_mode={config.journal_mode}: {mode}")
        conn.execute(f"PRAGMA synchronous={config.synchronous}")
        conn.execute("CREATE TABLE commits (id INTEGER PRIMARY KEY, at REAL, payload TEXT)")
        insert = "INSERT INTO commits (at, payload) VALUES (?, ?)"
        clock = time.perf_counter
        start = clock()
        for _ in range(commits):
            conn.execute("BEGIN")
            conn.execute(insert, (clock(), PAYLOAD))
            conn.execute("COMMIT")
        elapsed = clock() - start
        stored = conn.execute("SELECT COUNT(*) FROM commits").fetchone()[0]
    finally:
        conn.close()
    if stored != commits:
        raise RuntimeError(f"expected {commits} rows, found {stored}")
    return commits / elapsed


@dataclass(frozen=True)
class LimitResult:
    """Commits per second of one configuration over several repetitions."""

    config: CommitConfig
    commits: int
    rates: tuple[float, ...]

    @property
    def stats(self) -> Stats:
        """Summary of the repetitions' commits/s."""
        return Stats.of(self.rates)

    def to_json(self) -> dict[str, Any]:
        """The result as JSON-ready data."""
        return {
            "name": self.config.name,
            "journal_mode": self.config.journal_mode,
            "synchronous": self.config.synchronous,
            "commits": self.commits,
            "commits_per_s": self.stats.to_json(),
            "rates": list(self.rates),
        }


def measure_sqlite_limit(
    workdir: Path, *, commits: int = 2000, repeat: int = 3
) -> list[LimitResult]:
    """Measures every configuration of :data:`CONFIGS` ``repeat`` times, interleaved."""
    if commits < 1 or repeat < 1:
        raise ValueError("commits and repeat must be at least 1")
    rates: dict[str, list[float]] = {c.name: [] for c in CONFIGS}
    for rep in range(repeat):
        for config in CONFIGS:
            rates[config.name].append(
                commit_rate(workdir / f"limit-{config.name}-{rep}.sqlite3", config, commits)
            )
    return [LimitResult(c, commits, tuple(rates[c.name])) for c in CONFIGS]


def commit_ceiling(
    results: list[LimitResult], journal_mode: str, synchronous: str, commits_per_run: float
) -> float | None:
    """Runs/s a system making ``commits_per_run`` commits per run could reach at most on this
    disk, from the measured median commit rate of the same journal mode and synchronous
    level; ``None`` if that configuration was not measured."""
    for result in results:
        config = result.config
        if (config.journal_mode, config.synchronous) == (journal_mode.upper(), synchronous):
            return result.stats.median / commits_per_run
    return None


def format_limit(results: list[LimitResult]) -> str:
    """One line per configuration: median commits/s (min-max) and ms per commit."""
    lines = []
    for result in results:
        stats = result.stats
        label = f"{result.config.journal_mode} synchronous={result.config.synchronous}"
        lines.append(
            f"  {label:<28} {stats.median:>10,.0f} commits/s "
            f"({stats.min:,.0f}-{stats.max:,.0f})  {1000.0 / stats.median:.3f} ms/commit"
        )
    return "\n".join(lines)
