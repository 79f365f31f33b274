"""Telemetry overhead: the durable benchmark flow with OpenTelemetry export off and on.

The flow is ``benchmarks/master_sdk_flow.py``'s (echo tool -> approval, with the run loaded
back from the store -> summary agent on the fake model; ``synchronous=FULL``). Three
configurations, each on its own store, in interleaved repetitions so that the machine's
load drifts over all of them alike:

* ``off``: telemetry off (the default);
* ``on``: exporting to an OTLP/HTTP receiver on 127.0.0.1 in its own process
  (``tests/support/otlp_receiver.py``), every span checked as accepted;
* ``down``: exporting to a port where nothing listens (connection refused).

The three workbenches stay open; each round runs one block of runs per configuration, in
an order that rotates from round to round, and a block's time includes flushing every
span it made (the export's background work is charged to the configuration that causes
it). Reported: runs/s per block, the median and range per configuration, and the overhead
as the median over rounds of ``1 - rate / rate(off)`` in the same round (paired, so the
shared machine's drifting load cancels out); CPU per run — of the runs' own thread
(``thread ms``), of this whole process (``proc ms``, and its paired increase over ``off``)
and of the exporter process that builds and sends the spans (``child ms``, from ``/proc``:
the scheduler's nanosecond count over its threads); ``total +`` is the honest CPU
increase, both processes over ``off``'s one; spans exported and dropped; failed runs.
Targets: overhead <= 5 % with the receiver up and down, zero failed runs.

    python -m benchmarks.otel_overhead [--runs 100] [--repeat 15]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.master_sdk_flow import fake_summary_model, make_project, one_run

SPANS_PER_RUN = 7  # root, echo step + tool call, approval step + pause, agent step + chat


def open_workbench(root: Path, store: Path, telemetry: Any) -> Any:
    import master_sdk as ms

    return ms.Workbench.open(
        root, store=store, providers={"default": fake_summary_model()}, telemetry=telemetry
    )


def process_cpu_s(pid: int | None) -> float:
    """CPU seconds used so far by every thread of process ``pid`` (Linux /proc: the
    scheduler's nanosecond count per thread, else 10 ms ticks; 0 when it is gone)."""
    if pid is None:
        return 0.0
    total = 0.0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0.0
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat", encoding="ascii") as handle:
                total += int(handle.read().split()[0]) / 1e9
            continue
        except (OSError, ValueError, IndexError):
            pass
        try:
            with open(f"/proc/{pid}/task/{tid}/stat", encoding="ascii") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def timed_block(wb: Any, first: int, n_runs: int) -> dict[str, Any]:
    """``n_runs`` runs, then a flush of every span they made: the export's background work
    is charged to the block that caused it (a conservative figure)."""
    before = wb.telemetry_status()
    exporter = before.get("exporter_pid")
    gc.collect()
    failed = 0
    cpu = time.process_time()  # every thread of this process
    thread_cpu = time.thread_time()  # the runs' own thread
    child_cpu = process_cpu_s(exporter)
    clock = time.perf_counter()
    for index in range(first, first + n_runs):
        try:
            one_run(wb, index)
        except Exception:
            failed += 1
    loop = time.perf_counter() - clock
    wb.flush_telemetry(30.0)
    elapsed = time.perf_counter() - clock
    cpu_ms = (time.process_time() - cpu) * 1000 / n_runs
    thread_ms = (time.thread_time() - thread_cpu) * 1000 / n_runs
    after = wb.telemetry_status()
    if exporter is None:  # it started with this block's first commit
        exporter = after.get("exporter_pid")
    exporter_ms = (process_cpu_s(exporter) - child_cpu) * 1000 / n_runs
    return {
        "runs_per_s": n_runs / elapsed,
        "cpu_ms_per_run": cpu_ms,
        "thread_cpu_ms_per_run": thread_ms,
        "exporter_cpu_ms_per_run": exporter_ms,
        "runs_per_s_loop_only": n_runs / loop,
        "failed_runs": failed,
        "exported": after.get("exported", 0) - before.get("exported", 0),
        "dropped": after.get("dropped", 0) - before.get("dropped", 0),
    }


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="telemetry overhead on the durable flow")
    parser.add_argument("--runs", type=int, default=100, help="runs per block")
    parser.add_argument("--repeat", type=int, default=15, help="rounds: one block each")
    parser.add_argument("--output", help="write the JSON report here")
    args = parser.parse_args(argv)

    load_start = os.getloadavg()
    receiver = subprocess.Popen(
        [sys.executable, "-m", "tests.support.otlp_receiver", "--count-only"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert receiver.stdout is not None and receiver.stdin is not None
    url = receiver.stdout.readline().strip()
    configs: dict[str, Any] = {
        "off": False,
        "on": {"endpoint": url},
        "down": {"endpoint": f"http://127.0.0.1:{free_port()}/v1/traces", "timeout_s": 0.5},
    }
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in configs}
    names = list(configs)
    try:
        with tempfile.TemporaryDirectory(prefix="otel-bench-") as tmp:
            root = make_project(Path(tmp) / "project")
            benches = {
                name: open_workbench(root, Path(tmp) / f"{name}.sqlite3", telemetry)
                for name, telemetry in configs.items()
            }
            for wb in benches.values():
                one_run(wb, -1)  # warm: imports, flow compilation, the exporter's connection
                wb.flush_telemetry(10.0)
            for rep in range(args.repeat):
                # rotate the order so that no configuration always runs first in a round
                order = names[rep % len(names) :] + names[: rep % len(names)]
                for name in order:
                    result = timed_block(benches[name], rep * args.runs, args.runs)
                    results[name].append(result)
                    print(
                        f"round {rep + 1}/{args.repeat} {name:>4}: "
                        f"{result['runs_per_s']:7.1f} runs/s, exported {result['exported']}, "
                        f"dropped {result['dropped']}, failed runs {result['failed_runs']}",
                        file=sys.stderr,
                    )
            for wb in benches.values():
                wb.close()
    finally:
        receiver.stdin.close()
        tail = receiver.stdout.read().strip()
        receiver.wait(timeout=30)

    load_end = os.getloadavg()
    report: dict[str, Any] = {
        "runs": args.runs,
        "repeat": args.repeat,
        "load_average_start": load_start,
        "load_average_end": load_end,
        "rows": {},
    }
    print(f"durable flow, {args.repeat} rounds x {args.runs} runs per configuration; runs/s "
          "include sending every span (flush); medians (min-max); overhead = median over "
          "rounds of 1 - rate / rate(off) in the same round; load average "
          f"{' '.join(f'{x:.2f}' for x in load_start)} at the start, "
          f"{' '.join(f'{x:.2f}' for x in load_end)} at the end")
    print(f"{'config':<6} {'runs/s':>8} {'min-max':>15} {'overhead':>9} {'thread ms':>9} "
          f"{'proc ms':>8} {'proc +':>7} {'child ms':>8} {'total +':>8} {'exported':>9} "
          f"{'dropped':>8} {'failed':>6}")
    off = [r["runs_per_s"] for r in results["off"]]
    off_cpu = [r["cpu_ms_per_run"] for r in results["off"]]
    for name, rows in results.items():
        rates = [r["runs_per_s"] for r in rows]
        median = statistics.median(rates)
        overhead = statistics.median(
            (1 - rate / base) * 100 for rate, base in zip(rates, off, strict=True)
        )
        cpus = [r["cpu_ms_per_run"] for r in rows]
        cpu_more = statistics.median(
            (cpu / base - 1) * 100 for cpu, base in zip(cpus, off_cpu, strict=True)
        )
        # the honest total: this process and the exporter process, over off's process
        total_more = statistics.median(
            ((r["cpu_ms_per_run"] + r["exporter_cpu_ms_per_run"]) / base - 1) * 100
            for r, base in zip(rows, off_cpu, strict=True)
        )
        thread = statistics.median(r["thread_cpu_ms_per_run"] for r in rows)
        child = statistics.median(r["exporter_cpu_ms_per_run"] for r in rows)
        exported = sum(r["exported"] for r in rows)
        dropped = sum(r["dropped"] for r in rows)
        failed = sum(r["failed_runs"] for r in rows)
        report["rows"][name] = {
            "runs_per_s": rates,
            "median": median,
            "overhead_pct": overhead,
            "cpu_ms_per_run": cpus,
            "cpu_overhead_pct": cpu_more,
            "total_cpu_overhead_pct": total_more,
            "thread_cpu_ms_per_run": thread,
            "exporter_cpu_ms_per_run": child,
            "median_loop_only": statistics.median(r["runs_per_s_loop_only"] for r in rows),
            "exported": exported,
            "dropped": dropped,
            "failed_runs": failed,
        }
        print(f"{name:<6} {median:8.1f} {min(rates):7.1f}-{max(rates):<7.1f} "
              f"{overhead:8.1f}% {thread:9.3f} {statistics.median(cpus):8.3f} "
              f"{cpu_more:6.1f}% {child:8.3f} {total_more:7.1f}% {exported:9d} {dropped:8d} "
              f"{failed:6d}")
    expected = args.runs * args.repeat * SPANS_PER_RUN
    print(f"spans expected with the receiver up: {expected}; receiver: {tail}")
    report["spans_expected_on"] = expected
    if args.output:
        Path(args.output).write_text(json.dumps(report, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
