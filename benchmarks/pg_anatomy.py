"""Where a run's time goes on PostgreSQL: what one run asks of the server, and how long
each side's processes ran and waited for a CPU.

* :class:`TurnProxy`: a loopback proxy between a client and the server counting *turns*,
  the times the conversation changes direction (a client that sends, then waits for the
  answer, makes two). A round trip the client waits for is one client turn; statements
  sent together in one pipeline are one turn however many they are.
* :func:`statement_log`: the server logs every statement of one database with its
  duration (``log_min_duration_statement = 0`` for that database only) and this counts
  them and sums their server-side execution times.
* :class:`Sched`: CPU time and run-queue wait (time runnable but not running, from Linux
  ``/proc/<pid>/schedstat``) of this process and of the server processes serving a
  database. The client's CPU counts every thread (``time.process_time``); its wait counts
  the threads alive at the end (LangGraph runs nodes on short-lived threads, whose wait is
  not counted). On a loaded machine the wait is what a blocking round trip costs beyond the
  server's own work: both the server process (woken by the query) and the client (woken by
  the answer) wait for a CPU.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


class TurnProxy:
    """Counts the client's turns (bursts of bytes to the server after an answer) and the
    server's, over every connection made through it (a :class:`~tests.support.relay.Relay`
    watching what it forwards)."""

    def __init__(self) -> None:
        self.client_turns = 0
        self.server_turns = 0
        self._lock = threading.Lock()
        # per connection: whether the client spoke last (the server "spoke" first, so the
        # first client bytes are a turn)
        self._client_last: dict[int, bool] = {}

    def _observe(self, number: int, from_client: bool, data: bytes) -> None:
        with self._lock:
            if self._client_last.get(number, False) is not from_client:
                self._client_last[number] = from_client
                if from_client:
                    self.client_turns += 1
                else:
                    self.server_turns += 1

    @contextmanager
    def serve(self, url: str) -> Iterator[str]:
        """A URL reaching ``url``'s server (on loopback) through this proxy."""
        from tests.support.relay import Relay

        parts = urlsplit(url)
        with Relay(int(parts.port or 5432), observe=self._observe) as relay:
            yield (
                f"postgresql://{parts.username}@127.0.0.1:{relay.port}{parts.path}"
                "?sslmode=disable&gssencmode=disable"
            )


_EXECUTED = re.compile(r"duration: ([0-9.]+) ms  (?:execute [^:]*|statement):")


@dataclass
class LogMark:
    path: Path
    offset: int

    def statements(self) -> tuple[int, float]:
        """Statements logged since the mark and their summed execution time (ms)."""
        with self.path.open(errors="replace") as f:
            f.seek(self.offset)
            found = _EXECUTED.findall(f.read())
        return len(found), sum(float(ms) for ms in found)


def log_every_statement(admin_url: str, database: str) -> None:
    """Make the server log each statement of ``database`` with its duration (new sessions)."""
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{database}" SET log_min_duration_statement = 0')


def statement_log(log: Path) -> LogMark:
    """A mark at the end of the server's log file."""
    return LogMark(log, log.stat().st_size)


def _schedstat(path: str) -> tuple[int, int]:
    try:
        cpu, wait, _ = Path(path).read_text().split()
    except (OSError, ValueError):
        return 0, 0
    return int(cpu), int(wait)


def client_sched() -> tuple[int, int]:
    """CPU ns and run-queue wait ns of every thread of this process so far."""
    cpu = wait = 0
    for task in os.listdir("/proc/self/task"):
        c, w = _schedstat(f"/proc/self/task/{task}/schedstat")
        cpu, wait = cpu + c, wait + w
    return cpu, wait


def server_pids(url: str) -> list[int]:
    """The server processes serving ``url``'s database (other than the asking one)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        return [
            int(r[0])
            for r in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid()"
            )
        ]


def server_sched(pids: list[int]) -> tuple[int, int]:
    cpu = wait = 0
    for pid in pids:
        c, w = _schedstat(f"/proc/{pid}/schedstat")
        cpu, wait = cpu + c, wait + w
    return cpu, wait


def write_transactions(url: str) -> int:
    """The next transaction id to be assigned: write transactions between two reads of it
    (reads assign none, and this read assigns none)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint"
        ).fetchone()
    assert row is not None  # a SELECT of one value
    return int(row[0])


class Sched:
    """CPU and run-queue wait of this process and of ``url``'s server processes, from
    :meth:`start` to :meth:`stop` (milliseconds)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.pids: list[int] = []
        self._c0 = self._s0 = (0, 0)
        self._cpu0 = 0.0

    def start(self) -> None:
        self.pids = server_pids(self.url)
        self._c0, self._s0 = client_sched(), server_sched(self.pids)
        self._cpu0 = time.process_time()

    def stop(self, per: int) -> dict[str, Any]:
        c1, s1 = client_sched(), server_sched(self.pids)
        ms = 1e6 * per
        return {
            "client_cpu_ms": (time.process_time() - self._cpu0) * 1e3 / per,
            "client_runqueue_wait_ms": (c1[1] - self._c0[1]) / ms,
            "server_cpu_ms": (s1[0] - self._s0[0]) / ms,
            "server_runqueue_wait_ms": (s1[1] - self._s0[1]) / ms,
        }
