"""Telemetry cost in instructions per run: steady on a loaded machine, where wall time is not.

Runs the durable benchmark flow (``benchmarks/master_sdk_flow.py``) with telemetry off and
on (exporting to the loopback OTLP receiver of ``tests/support/otlp_receiver.py``) under
Valgrind's callgrind, each configuration in its own process, both at once; only the
runs' process is counted (``--trace-children=no``), not the exporter process that builds
and sends the spans (``benchmarks/otel_overhead.py`` reports that one's CPU). Start-up,
imports and a warm-up of 30 runs are not counted (callgrind starts with instrumentation
off; it is switched on with ``callgrind_control`` just before the timed runs and the
counters are dumped after the flush of their spans). Reported: user-space instructions per
run, off and on, and the difference — every thread of the runs' process. The share is an
upper bound of that process's CPU overhead: kernel time (the WAL's fsync, the pipe) is not
counted, and it is a larger part of a run without telemetry.

    python -m benchmarks.otel_instructions [--runs 200]

Needs ``valgrind`` (``apt-get install valgrind``). About a minute on a quiet machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

WARM_UP = 30


def child(mode: str, runs: int, url: str) -> None:
    """Inside valgrind: warm up, switch instrumentation on, run, flush, dump."""
    from benchmarks.master_sdk_flow import make_project, one_run
    from benchmarks.otel_overhead import open_workbench

    with tempfile.TemporaryDirectory(prefix="otel-instr-") as tmp:
        root = make_project(Path(tmp) / "project")
        # a long flush interval: batches are cut by size, as on a machine 50x faster
        telemetry = {"endpoint": url, "flush_interval_s": 60} if mode == "on" else False
        wb = open_workbench(root, Path(tmp) / "runs.sqlite3", telemetry)
        for index in range(WARM_UP):
            one_run(wb, -1 - index)
        wb.flush_telemetry(60)
        pid = str(os.getpid())
        subprocess.run(["callgrind_control", "-i", "on", pid], check=True, capture_output=True)
        for index in range(runs):
            one_run(wb, index)
        wb.flush_telemetry(60)
        subprocess.run(["callgrind_control", "-d", "runs", pid], check=True, capture_output=True)
        wb.close()


def counted(path: Path) -> int:
    """Instructions in the dump made after the timed runs."""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("summary:"):
            return int(line.split()[1])
    raise RuntimeError(f"no summary in {path}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument(
        "--keep",
        metavar="DIR",
        help="keep the callgrind files there (per thread: callgrind_annotate DIR/on.out.1-02)",
    )
    parser.add_argument("--child", nargs=2, metavar=("MODE", "URL"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child[0], args.runs, args.child[1])
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is not installed: apt-get install valgrind", file=sys.stderr)
        return 2
    receiver = subprocess.Popen(
        [sys.executable, "-m", "tests.support.otlp_receiver", "--count-only"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert receiver.stdout is not None and receiver.stdin is not None
    url = receiver.stdout.readline().strip()
    out: dict[str, int] = {}
    threads: dict[str, dict[str, int]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="otel-callgrind-") as scratch:
            tmp = args.keep or scratch
            Path(tmp).mkdir(parents=True, exist_ok=True)
            procs = {
                mode: subprocess.Popen(
                    [
                        "valgrind",
                        "--tool=callgrind",
                        "--instr-atstart=no",
                        "--dump-instr=no",
                        "--separate-threads=yes",
                        "--trace-children=no",
                        f"--callgrind-out-file={tmp}/{mode}.out",
                        sys.executable,
                        "-m",
                        "benchmarks.otel_instructions",
                        "--runs",
                        str(args.runs),
                        "--child",
                        mode,
                        url,
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                for mode in ("off", "on")
            }
            for mode, proc in procs.items():
                if proc.wait() != 0:
                    raise RuntimeError(f"the {mode} configuration failed under valgrind")
                per_thread = {
                    path.name.rsplit("-", 1)[1]: counted(path)
                    for path in sorted(Path(tmp).glob(f"{mode}.out.1-*"))
                }
                out[mode] = sum(per_thread.values())
                threads[mode] = per_thread
    finally:
        receiver.stdin.close()
        tail = receiver.stdout.read().strip()
        receiver.wait(timeout=30)
    off, on = out["off"] / args.runs, out["on"] / args.runs
    print(
        f"durable flow, {args.runs} runs per configuration, user-space instructions per run "
        f"(callgrind; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())})"
    )
    print(f"off: {off / 1e6:.3f} M")
    print(f"on:  {on / 1e6:.3f} M  (+{(on - off) / 1e3:.0f} k, +{100 * (on - off) / off:.1f} %)")
    for mode in ("off", "on"):
        shares = ", ".join(
            f"thread {n}: {count / args.runs / 1e3:.0f} k" for n, count in threads[mode].items()
        )
        print(f"{mode} by thread (1 = the runs' thread): {shares}")
    print(f"receiver: {tail}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
