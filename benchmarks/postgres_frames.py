"""How long ``wb.traces()`` takes, and how much memory it needs, on a PostgreSQL store of
1,000,000 trace events — the events of ``benchmarks/trace_frames.py`` (same generator,
same seed, the engine's commit blocks), written straight into the store's tables.

The store reads a frame's blocks with one ``COPY (SELECT ...) TO STDOUT (FORMAT binary)``
(``memory/postgres/traces.py``). Measured beside it, on the same server in the same run:

- ``rows (fetchall)``: the blocks read by an ordinary binary-format ``SELECT`` (one Python
  tuple per block, psycopg's C row loader), the store's way before COPY;
- ``pandas.read_sql``: the same events one row per event in a table of thirteen columns
  (a row-per-event layout), read by ``pandas.read_sql`` over psycopg.

Each measurement runs in a fresh process, so that peak RSS (``VmHWM``) is its own. The
server is the tests' throwaway one (``tests/support/postgres.py``) unless ``--url`` names
another (a database it may create tables in).

Usage::

    python benchmarks/postgres_frames.py                      # 1,000,000 events, 5 runs
    python benchmarks/postgres_frames.py --events 100000 --repeat 3

Prints one line per measurement to stderr, then a summary table (median, min, max, CPU
seconds, peak RSS) and the load average to stdout.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.trace_frames import (  # noqa: E402
    COMPLETED,
    _chunks,
    _generate,
    _json,
    run_child,
)

RUN_COLUMNS = (
    "pk, run_id, product, flow, status, version, cursor, created_us, updated_us, flow_hash, "
    "product_version, created_by, steps_used, tool_calls, model_calls, tokens_in, "
    "tokens_out, cost_usd, inputs, output, state"
)
ROWS_TABLE = """
CREATE TABLE trace_rows (
    run_pk bigint, seq integer, ts_us bigint, event smallint, step_id text,
    step_type smallint, name text, status smallint, duration_ms double precision,
    tokens_in bigint, tokens_out bigint, cost_usd double precision, attrs text
)
"""


def fill(url: str, n_events: int, *, seed: int = 7) -> int:
    """Make the store's tables in the database of ``url`` and fill them with ``n_events``
    events (COPY ... FROM STDIN), and the row-per-event table beside them; the run count."""
    import psycopg

    from master_sdk.memory.postgres import PostgresStore

    PostgresStore(url).close()  # the store's schema
    n_runs = 0
    with psycopg.connect(url) as conn:
        names = sorted({e[i] for e in COMPLETED for i in (1, 3) if e[i] is not None})
        conn.execute(
            "INSERT INTO trace_names (text) SELECT unnest(%s::text[]) ON CONFLICT DO NOTHING",
            (names,),
        )
        codes = {str(t): int(c) for c, t in conn.execute("SELECT code, text FROM trace_names")}
        conn.execute(ROWS_TABLE)
        with conn.cursor() as cur:
            with cur.copy(f"COPY runs ({RUN_COLUMNS}) FROM STDIN") as copy:
                for run, _rows in _generate(n_events, seed):
                    n_runs += 1
                    copy.write_row(run)
            with cur.copy("COPY trace_blocks (run_pk, n, data, metrics, attrs) FROM STDIN") as copy:
                for run, rows in _generate(n_events, seed):
                    for pk, _first, n, data, metrics, attrs in _chunks(run[0], rows, codes):
                        copy.write_row((pk, n, data, metrics, attrs))
            with cur.copy("COPY trace_rows FROM STDIN") as copy:
                for run, rows in _generate(n_events, seed):
                    for r in rows:
                        copy.write_row((run[0], *r[:11], None if r[11] is None else _json(r[11])))
        conn.execute("SELECT setval('runs_pk_seq', (SELECT max(pk) FROM runs))")
        conn.execute("ANALYZE")
    return n_runs


# The child: one measurement; prints one JSON line: wall and CPU seconds, rows, peak RSS
# (VmHWM) and RSS just before the call, in MiB.
CHILD = """
root, url, what = sys.argv[1:4]
import os
import pandas as pd
import psycopg

TICK = os.sysconf("SC_CLK_TCK")
watch = psycopg.connect(url, autocommit=True)
database = url.rsplit("/", 1)[1]


def server_cpu():
    # CPU seconds used so far by each of the database's other backends (/proc: same machine)
    used = {}
    pids = watch.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
        (database,),
    ).fetchall()
    for (pid,) in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            used[pid] = (int(fields[11]) + int(fields[12])) / TICK
        except OSError:
            pass
    return used


def server_delta(before):
    # a backend that ended in between is not counted; one that began counts whole
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in server_cpu().items())

if what in ("copy", "fetchall"):
    import master_sdk as ms
    from master_sdk.memory.postgres import traces
    if what == "fetchall":
        traces.read_blocks = traces.fetch_blocks  # the ordinary SELECT instead of COPY
    wb = ms.Workbench.open(root, store=url)
    wb.traces(run_id="-")  # import the frames module: not measured
    before = rss("VmRSS")
    s0 = server_cpu()
    t0, c0 = time.perf_counter(), time.process_time()
    frame = wb.traces()
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    server = server_delta(s0)
    assert str(frame["ts"].dtype) == "datetime64[us, UTC]", frame.dtypes
    wb.close()
else:
    import warnings
    warnings.simplefilter("ignore")  # pandas would rather have SQLAlchemy
    conn = psycopg.connect(url)
    before = rss("VmRSS")
    s0 = server_cpu()
    t0, c0 = time.perf_counter(), time.process_time()
    frame = pd.read_sql("SELECT * FROM trace_rows ORDER BY run_pk, seq", conn)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    server = server_delta(s0)
print(json.dumps({"s": seconds, "cpu": cpu, "server": server, "rows": len(frame),
                  "hwm": rss("VmHWM"), "before": before}))
"""
MEASURED = {"wb.traces() (COPY)": "copy", "rows (fetchall)": "fetchall", "pandas.read_sql": "sql"}


def measure(url: str, what: str) -> dict[str, float]:
    """One measurement in a fresh interpreter."""
    return run_child(CHILD, url, what)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--url", help="a database to fill (default: a new one on a throwaway server)"
    )
    args = parser.parse_args(argv)

    from tests.support import postgres

    try:
        url = args.url or postgres.fresh_url()
        t0 = time.perf_counter()
        n_runs = fill(url, args.events)
        print(
            f"filled {args.events:,} events, {n_runs:,} runs in {time.perf_counter() - t0:.1f} s",
            file=sys.stderr,
        )
        rows: dict[str, list[dict[str, Any]]] = {name: [] for name in MEASURED}
        loads: list[float] = []
        for i in range(args.repeat):
            for name, what in MEASURED.items():
                got = measure(url, what)
                rows[name].append(got)
                loads.append(os.getloadavg()[0])
                print(
                    f"#{i + 1} {name}: {got['s']:.3f} s (CPU {got['cpu']:.3f} s, server CPU "
                    f"{got['server']:.3f} s), "
                    f"{int(got['rows']):,} rows, peak RSS {got['hwm']:.0f} MiB "
                    f"(before the call {got['before']:.0f} MiB), load {loads[-1]:.2f}",
                    file=sys.stderr,
                )
    finally:
        postgres.stop()
    print(
        f"{'what':<20} {'median s':>9} {'min s':>7} {'max s':>7} {'CPU s':>7} "
        f"{'server CPU s':>13} {'peak RSS MiB':>13} {'RSS before':>11}"
    )
    for name, got in rows.items():
        seconds = [g["s"] for g in got]
        print(
            f"{name:<20} {statistics.median(seconds):>9.3f} {min(seconds):>7.3f} "
            f"{max(seconds):>7.3f} {statistics.median(g['cpu'] for g in got):>7.3f} "
            f"{statistics.median(g['server'] for g in got):>13.3f} "
            f"{statistics.median(g['hwm'] for g in got):>13.0f} "
            f"{statistics.median(g['before'] for g in got):>11.0f}"
        )
    print(
        f"{args.events:,} events, {n_runs:,} runs; load average during the runs: "
        f"median {statistics.median(loads):.2f}, max {max(loads):.2f} "
        f"(1 min, {os.cpu_count()} CPUs)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
