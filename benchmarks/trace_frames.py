"""How long ``wb.traces()`` takes, and how much memory it needs, on a store of 1,000,000 events.

The store is filled straight through its SQLite schema (a benchmark may; the library never
does): ``hello_world/greet`` runs with the event mix the engine writes — most runs completed
(16 events), some paused at the approval or the input, some rejected. Each measurement runs
in a fresh process so that peak RSS (``VmHWM``) belongs to that measurement alone. The store
keeps a run's events as one ``trace_chunks`` row per commit, as the engine writes them. The
baseline is ``pandas.read_sql`` over ``sqlite3``, in the same conditions, of the same events
stored one row per event in a table of thirteen columns (the layout of store schema version
1), in a second file beside the store (``<name>.rows.sqlite3``).

Usage::

    python benchmarks/trace_frames.py                 # 1,000,000 events, 5 repetitions
    python benchmarks/trace_frames.py --events 100000 --repeat 3 --keep /tmp/traces.sqlite3

Prints one line per repetition to stderr and a summary table (median, min, max) to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from master_sdk.memory.chunks import INSERT_CHUNK, attrs_text, pack  # noqa: E402  # after the path fix above
from master_sdk.memory.schema import PAGE_SIZE, SCHEMA_V1, ensure_schema  # noqa: E402
from master_sdk.tracing.events import (  # noqa: E402
    EVENT_CODE,
    STATUS_CODE,
    STEP_TYPE_CODE,
    EventRow,
)

USERS = ("ana", "ben", "chloe", "dev")
AUDIENCES = ("the board", "engineers", "sales", "everyone")

# (event, step_id, step_type, name, status) of a completed hello_world/greet run, as traced.
COMPLETED: tuple[tuple[str, str | None, str | None, str | None, str | None], ...] = (
    ("run_started", None, None, None, None),
    ("step_started", "echo", "tool", "echo", None),
    ("tool_called", "echo", "tool", "echo", "ok"),
    ("step_completed", "echo", "tool", "echo", "completed"),
    ("step_started", "review", "hitl", "review", None),
    ("approval_requested", "review", "hitl", "review", "waiting_approval"),
    ("approval_decided", "review", "hitl", "review", "approved"),
    ("step_completed", "review", "hitl", "review", "completed"),
    ("step_started", "audience", "user_input", "audience", None),
    ("input_requested", "audience", "user_input", "audience", "waiting_input"),
    ("input_received", "audience", "user_input", "audience", None),
    ("step_completed", "audience", "user_input", "audience", "completed"),
    ("step_started", "summary", "agent", "summarizer", None),
    ("model_called", "summary", "agent", "default", "ok"),
    ("step_completed", "summary", "agent", "summarizer", "completed"),
    ("run_completed", None, None, None, "completed"),
)
WAITING_APPROVAL = COMPLETED[:6]
WAITING_INPUT = COMPLETED[:10]
REJECTED = (
    *COMPLETED[:6],
    ("approval_decided", "review", "hitl", "review", "rejected"),
    ("step_completed", "review", "hitl", "review", "rejected"),
    ("run_rejected", "review", None, None, "rejected"),
)
# (final status, events, share of runs)
MIX = (
    ("completed", COMPLETED, 0.85),
    ("waiting_approval", WAITING_APPROVAL, 0.06),
    ("waiting_input", WAITING_INPUT, 0.05),
    ("rejected", REJECTED, 0.04),
)


def _attrs(event: str, rng: random.Random) -> str | None:
    user = rng.choice(USERS)
    if event == "run_started" or event == "approval_decided":
        return json.dumps({"by": user}, separators=(",", ":"))
    if event == "input_received":
        return json.dumps({"by": user, "bytes": rng.randint(18, 40)}, separators=(",", ":"))
    if event == "model_called":
        return '{"model":"default","provider":"fake"}'
    return None


# The events the engine commits together (a completed run's five commits: start, pause
# at the approval, approval, input, end); a run that stops early ends its last chunk there.
COMMIT_ENDS = (2, 6, 10, 13)


def _events(events: tuple[Any, ...], start_us: int, rng: random.Random) -> Iterator[EventRow]:
    ts = start_us
    for seq, (event, step_id, step_type, name, status) in enumerate(events, start=1):
        ts += rng.randint(5, 2_000)
        duration = tokens_in = tokens_out = cost = None
        if event == "tool_called":
            duration = rng.uniform(0.01, 0.05)
        elif event == "model_called":
            duration = rng.uniform(0.02, 900.0)
            tokens_in, tokens_out, cost = rng.randint(8, 60), rng.randint(10, 200), 0.0
        elif event == "step_completed" and step_type in ("tool", "agent"):
            duration = rng.uniform(0.1, 950.0)
        yield (
            seq,
            ts,
            EVENT_CODE[event],
            step_id,
            None if step_type is None else STEP_TYPE_CODE[step_type],
            name,
            None if status is None else STATUS_CODE[status],
            duration,
            tokens_in,
            tokens_out,
            cost,
            _attrs(event, rng),
        )


def _chunks(pk: int, rows: list[EventRow], codes: dict[str, int]) -> Iterator[tuple[Any, ...]]:
    """The ``trace_chunks`` rows of one run: one per commit, as the store writes them."""
    ends = [end for end in COMMIT_ENDS if end < len(rows)] + [len(rows)]
    start = 0
    for end in ends:
        part = rows[start:end]
        yield (pk, part[0][0], len(part), *pack(part, codes), attrs_text(part, _json))
        start = end


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _generate(n_events: int, seed: int) -> Iterator[tuple[tuple[Any, ...], list[EventRow]]]:
    """``(runs row, events)`` of each run, until ``n_events`` events (the same every time)."""
    rng = random.Random(seed)
    statuses = [m[0] for m in MIX]
    weights = [m[2] for m in MIX]
    shapes = {m[0]: m[1] for m in MIX}
    start = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
    written = 0
    pk = 0
    while written < n_events:
        pk += 1
        status = rng.choices(statuses, weights)[0]
        events = shapes[status][: n_events - written]
        created = start + pk * 1_500_000
        rows = list(_events(events, created, rng))
        written += len(rows)
        done = status == "completed"
        run = (
            pk,
            f"{rng.getrandbits(128):032x}",
            "hello_world",
            "greet",
            status,
            4,
            4 if done else 1,
            created,
            rows[-1][1],
            "06f7a5a8e9820cde",
            "1.0.0",
            rng.choice(USERS),
            4 if done else 2,
            1,
            1 if done else 0,
            sum(r[8] or 0 for r in rows),
            sum(r[9] or 0 for r in rows),
            0.0,
            '{"text":"Hello"}',
            json.dumps({"summary": "[fake] ...", "audience": rng.choice(AUDIENCES)})
            if done
            else None,
            json.dumps({"seq": len(rows)}),
        )
        yield run, rows


_INSERT_RUN = (
    "INSERT INTO runs (pk, run_id, product, flow, status, version, cursor, created_us, "
    "updated_us, flow_hash, product_version, created_by, steps_used, tool_calls, "
    "model_calls, tokens_in, tokens_out, cost_usd, inputs, output, state) "
    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)


def _open(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")  # as the store creates its files
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = OFF")
    return conn


def _close(conn: sqlite3.Connection) -> None:
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def fill(path: Path, n_events: int, *, seed: int = 7) -> int:
    """Create a store at ``path`` holding ``n_events`` trace events; return the run count."""
    conn = _open(path)
    ensure_schema(conn, path=str(path))
    conn.execute("BEGIN")
    names = sorted({e[i] for e in COMPLETED for i in (1, 3) if e[i] is not None})
    conn.executemany("INSERT INTO trace_names (text) VALUES (?)", [(n,) for n in names])
    codes = dict(conn.execute("SELECT text, code FROM trace_names"))
    runs: list[tuple[Any, ...]] = []
    chunks: list[tuple[Any, ...]] = []
    for run, rows in _generate(n_events, seed):
        runs.append(run)
        chunks.extend(_chunks(run[0], rows, codes))
        if len(chunks) >= 50_000:
            conn.executemany(INSERT_CHUNK, chunks)
            chunks.clear()
    conn.executemany(INSERT_CHUNK, chunks)
    conn.executemany(_INSERT_RUN, runs)
    _close(conn)
    return len(runs)


def baseline_path(store: Path) -> Path:
    """Where the ``pandas.read_sql`` baseline's table of the same events is kept."""
    return store.with_name(f"{store.stem}.rows{store.suffix}")


def fill_rows(path: Path, n_events: int, *, seed: int = 7) -> int:
    """The events of :func:`fill` (same seed, same events) one row each in a ``trace`` table
    of thirteen columns (the layout of store schema version 1), for ``pandas.read_sql``."""
    conn = _open(path)
    conn.execute("BEGIN")
    for statement in SCHEMA_V1.split(";"):
        if statement.strip():
            conn.execute(statement)
    n_runs = 0
    for run, rows in _generate(n_events, seed):
        n_runs += 1
        conn.execute(_INSERT_RUN, run)
        conn.executemany(
            "INSERT INTO trace VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            [(run[0], *r[:11], None if r[11] is None else _json(r[11])) for r in rows],
        )
    _close(conn)
    return n_runs


# The child: one measurement of ``wb.traces()`` or of ``pandas.read_sql``; it prints one JSON
# line: wall and CPU seconds, rows, peak RSS (VmHWM) and RSS just before the call, in MiB.
# CPU time is reported beside wall time because a shared machine makes wall time noisy.
# What every child script begins with: its imports and the ``rss`` reader.
CHILD_START = """
import json, sys, time

def rss(key):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(key):
                return int(line.split()[1]) / 1024
"""
CHILD = """
root, store, what = sys.argv[1:4]
import pandas as pd
if what == "traces":
    import master_sdk as ms
    wb = ms.Workbench.open(root, store=store)
    wb.traces(run_id="-")  # import the frames module: not measured
    before = rss("VmRSS")
    t0, c0 = time.perf_counter(), time.process_time()
    frame = wb.traces()
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    assert str(frame["ts"].dtype) == "datetime64[us, UTC]", frame.dtypes
else:
    import sqlite3
    conn = sqlite3.connect(store)
    before = rss("VmRSS")
    t0, c0 = time.perf_counter(), time.process_time()
    frame = pd.read_sql("SELECT * FROM trace ORDER BY run_pk, seq", conn)  # a row per event
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
result = {"s": seconds, "cpu": cpu, "rows": len(frame), "hwm": rss("VmHWM"), "before": before}
print(json.dumps(result))
"""
MEASURED = {"wb.traces()": "traces", "pandas.read_sql": "read_sql"}


def measure(what: str, store: Path) -> dict[str, float]:
    """Run one measurement (``traces`` of ``store``, or ``read_sql`` of its baseline table,
    :func:`baseline_path`) in a fresh interpreter."""
    target = store if what == "traces" else baseline_path(store)
    return run_child(CHILD, str(target), what)


def run_child(script: str, target: str, what: str) -> dict[str, float]:
    """Run a child ``script`` after :data:`CHILD_START` (``python -c``, with the repository
    on the path and ``REPO_ROOT target what`` as its arguments); the JSON line it prints
    last."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", CHILD_START + script, str(REPO_ROOT), target, what],
        check=False,
        capture_output=True,
        text=True,
        env=env,
    )
    if done.returncode != 0:
        raise SystemExit(f"the {what} measurement failed:\n{done.stderr}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--keep", type=Path, help="fill (or reuse) this store file (and its baseline beside it)"
    )
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="trace-frames-") as tmp:
        store = args.keep or Path(tmp) / "traces.sqlite3"
        for path, filler in ((store, fill), (baseline_path(store), fill_rows)):
            if not path.exists():
                t0 = time.perf_counter()
                n_runs = filler(path, args.events)
                print(
                    f"filled {path}: {args.events:,} events, {n_runs:,} runs "
                    f"in {time.perf_counter() - t0:.1f} s",
                    file=sys.stderr,
                )
        rows: dict[str, list[dict[str, float]]] = {name: [] for name in MEASURED}
        for i in range(args.repeat):
            for name, what in MEASURED.items():
                got = measure(what, store)
                rows[name].append(got)
                print(
                    f"#{i + 1} {name}: {got['s']:.3f} s (CPU {got['cpu']:.3f} s), "
                    f"{int(got['rows']):,} rows, "
                    f"peak RSS {got['hwm']:.0f} MiB (before the call {got['before']:.0f} MiB)",
                    file=sys.stderr,
                )
    print(
        f"{'what':<18} {'median s':>9} {'min s':>7} {'max s':>7} {'CPU s':>7} "
        f"{'peak RSS MiB':>13} {'RSS before':>11}"
    )
    for name, got in rows.items():
        seconds = [g["s"] for g in got]
        print(
            f"{name:<18} {statistics.median(seconds):>9.3f} {min(seconds):>7.3f} "
            f"{max(seconds):>7.3f} {statistics.median(g['cpu'] for g in got):>7.3f} "
            f"{statistics.median(g['hwm'] for g in got):>13.0f} "
            f"{statistics.median(g['before'] for g in got):>11.0f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
