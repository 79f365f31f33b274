"""``master serve`` under load on loopback, beside the same operations through the Python
API.

A real server (``master serve``, a subprocess, 4 executor threads) on SQLite and, with
``--postgres``, on a throwaway PostgreSQL (``tests/support/postgres.py``). One asyncio
client process (keep-alive HTTP/1.1 connections written by hand, so the load generator
stays cheap) runs POLLERS clients polling ``GET /api/v1/runs/{id}`` (one paused run,
steps included unless ``--no-steps``) and APPROVERS clients approving different paused runs
(``POST /api/v1/runs/{id}/approve``: the decision is committed in the request, the run is
continued by the executor) for SECONDS. Then, with the server stopped, the same two
operations through the Python API from 8 threads: ``wb.get_run(id)`` with its steps
frame (what the GET returns), and a decision ``wb.resume(id, "approve", proceed=False)``
(what the POST commits; continuation apart).

    .venv/bin/python -m benchmarks.http_bench [--seconds 8] [--pollers 200]
        [--approvers 50] [--repeats 3] [--postgres]

Prints one JSON object: per store and operation, requests/s, p50 and p99 latency in ms
(medians over the repeats), and the load average. The client and the server share the
machine's cores, so the HTTP figures include the client's own cost.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import master_sdk as ms
from tests.support.server import TOKENS, make_server_project, running_server

PYTHON_THREADS = 8


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _summary(latencies: list[float], seconds: float, errors: int = 0) -> dict[str, float]:
    return {
        "requests_per_s": round(len(latencies) / seconds, 1),
        "p50_ms": round(_percentile(latencies, 0.50) * 1000, 2),
        "p99_ms": round(_percentile(latencies, 0.99) * 1000, 2),
        "count": len(latencies),
        "errors": errors,
    }


def prepare(root: Path, store: str, n: int) -> tuple[str, list[str]]:
    """One run to poll and ``n`` runs paused for approval (started by sam)."""
    with ms.Workbench.open(root, store=store) as wb:
        poll = wb.run("hello_world/greet", {"text": "polled"}, by="sam").id
        return poll, [wb.run("hello_world/greet", {"text": f"r{i}"}, by="sam").id
                      for i in range(n)]  # fmt: skip


class _Connection:
    """One keep-alive HTTP/1.1 connection spoken by hand: the load generator must cost
    less than the server it measures (httpx's async pool slows down past ~50 connections
    on this machine, where 16 threads with one sync client each reach 10x more)."""

    def __init__(self, host: str, port: int, token: str) -> None:
        self.host, self.port = host, port
        self.auth = f"Authorization: Bearer {token}\r\n"
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes = b"") -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{self.auth}"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        assert self.reader is not None
        status_line = await self.reader.readline()
        if not status_line:
            self.writer = None
            raise ConnectionError("closed")
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _sep, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
        await self.reader.readexactly(length)
        return int(status_line.split()[1])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def _http_load(
    url: str, poll_id: str, to_approve: list[str], *, seconds: float, pollers: int,
    approvers: int, steps: bool,
) -> dict[str, Any]:  # fmt: skip
    host, port = url.removeprefix("http://").rsplit(":", 1)
    token = TOKENS["rita"]
    poll_path = f"/api/v1/runs/{poll_id}?steps={'true' if steps else 'false'}"
    gets: list[float] = []
    posts: list[float] = []
    errors = {"get": 0, "approve": 0}
    queue = list(reversed(to_approve))
    connections = [_Connection(host, int(port), token) for _ in range(pollers + approvers)]
    for conn in connections:  # connected and warm before the clock starts
        await conn.request("GET", "/api/v1/me")
    deadline = time.perf_counter() + seconds

    async def poll(conn: _Connection) -> None:
        while time.perf_counter() < deadline:
            began = time.perf_counter()
            try:
                status = await conn.request("GET", poll_path)
            except (ConnectionError, asyncio.IncompleteReadError):
                errors["get"] += 1
                continue
            if status == 200:
                gets.append(time.perf_counter() - began)
            else:
                errors["get"] += 1

    async def approve(conn: _Connection) -> None:
        while time.perf_counter() < deadline and queue:
            run_id = queue.pop()
            began = time.perf_counter()
            try:
                status = await conn.request("POST", f"/api/v1/runs/{run_id}/approve", b"{}")
            except (ConnectionError, asyncio.IncompleteReadError):
                errors["approve"] += 1
                continue
            if status == 202:
                posts.append(time.perf_counter() - began)
            else:
                errors["approve"] += 1

    began = time.perf_counter()
    await asyncio.gather(*(poll(c) for c in connections[:pollers]),
                         *(approve(c) for c in connections[pollers:]))  # fmt: skip
    elapsed = time.perf_counter() - began
    for conn in connections:
        conn.close()
    return {
        "get_run": _summary(gets, elapsed, errors["get"]),
        "approve": _summary(posts, elapsed, errors["approve"]),
        "approvals_left_in_queue": len(queue),
    }


def _python_load(root: Path, store: str, poll_id: str, to_approve: list[str],
                 seconds: float, steps: bool) -> dict[str, Any]:  # fmt: skip
    gets: list[float] = []
    decisions: list[float] = []
    queue = list(reversed(to_approve))
    lock = threading.Lock()
    with ms.Workbench.open(root, store=store) as wb:
        deadline = time.perf_counter() + seconds

        def poll() -> None:
            while time.perf_counter() < deadline:
                began = time.perf_counter()
                run = wb.get_run(poll_id, recover=False)
                run.waiting_for  # noqa: B018  # read as the view reads it
                if steps:
                    run.steps()
                gets.append(time.perf_counter() - began)

        def decide() -> None:
            while time.perf_counter() < deadline:
                with lock:
                    if not queue:
                        return
                    run_id = queue.pop()
                began = time.perf_counter()
                wb.resume(run_id, "approve", by="rita", proceed=False)
                decisions.append(time.perf_counter() - began)

        def timed(kind: Any) -> dict[str, float]:
            nonlocal deadline
            deadline = time.perf_counter() + seconds
            threads = [threading.Thread(target=kind) for _ in range(PYTHON_THREADS)]
            began = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            return {"elapsed": time.perf_counter() - began}

        get_time = timed(poll)["elapsed"]
        decide_time = timed(decide)["elapsed"]
    return {"get_run": _summary(gets, get_time), "decide": _summary(decisions, decide_time)}


def measure(store_kind: str, store: str, root: Path, args: argparse.Namespace) -> dict[str, Any]:
    """One repeat on one store: the HTTP load, then the Python API on fresh runs."""
    wanted = args.approvers * 40
    poll_id, to_approve = prepare(root, store, wanted)
    with running_server(root, Path(store) if store_kind == "sqlite" else Path("x"),
                        "--workers", "4", "--work-interval", "0") if store_kind == "sqlite" \
            else _pg_server(root, store) as server:  # fmt: skip
        http = asyncio.run(_http_load(server.url, poll_id, to_approve, seconds=args.seconds,
                                      pollers=args.pollers, approvers=args.approvers,
                                      steps=not args.no_steps))  # fmt: skip
    poll_id, to_approve = prepare(root, store, wanted)
    python = _python_load(root, store, poll_id, to_approve, args.seconds, not args.no_steps)
    return {"http": http, "python": python}


def _pg_server(root: Path, url: str) -> Any:
    """``master serve --store postgresql://...``."""
    from contextlib import contextmanager

    from tests.support import server as support

    @contextmanager
    def run() -> Any:
        original = support.serve_command

        def command(root: Path, _store: Path, port: int, *extra: str) -> list[str]:
            line = original(root, Path("unused"), port, *extra)
            line[line.index("--store") + 1] = url
            return line

        support.serve_command = command  # type: ignore[assignment]  # one bench process
        try:
            with support.running_server(root, Path("unused"), "--workers", "4",
                                        "--work-interval", "0") as srv:  # fmt: skip
                yield srv
        finally:
            support.serve_command = original  # type: ignore[assignment]

    return run()


def _median(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-leaf medians of the repeats' nested figures."""
    first = samples[0]
    if isinstance(first, dict):
        return {k: _median([s[k] for s in samples]) for k in first}
    return statistics.median(samples)  # type: ignore[return-value]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--pollers", type=int, default=200)
    parser.add_argument("--approvers", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--postgres", action="store_true", help="also on PostgreSQL")
    parser.add_argument("--no-steps", action="store_true",
                        help="poll ?steps=false (status, output, waiting_for only)")  # fmt: skip
    args = parser.parse_args(argv)
    out: dict[str, Any] = {
        "pollers": args.pollers,
        "approvers": args.approvers,
        "seconds": args.seconds,
        "python_threads": PYTHON_THREADS,
        "get_with_steps": not args.no_steps,
        "load_average_before": os.getloadavg(),
    }
    kinds = ["sqlite"] + (["postgresql"] if args.postgres else [])
    for kind in kinds:
        samples = []
        for repeat in range(args.repeats):
            with tempfile.TemporaryDirectory() as tmp:
                root = make_server_project(Path(tmp) / "project")
                if kind == "sqlite":
                    store = str(Path(tmp) / "store.sqlite3")
                else:
                    from tests.support import postgres

                    store = postgres.fresh_url()
                samples.append(measure(kind, store, root, args))
                print(f"{kind} repeat {repeat + 1}: {json.dumps(samples[-1])}", file=sys.stderr)
        out[kind] = _median(samples)
    out["load_average_after"] = os.getloadavg()
    print(json.dumps(out, indent=1))
    if args.postgres:
        from tests.support import postgres

        postgres.stop()


if __name__ == "__main__":
    main()
