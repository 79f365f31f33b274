"""Instructions per run of the durable benchmark flow in one process: steady under load.

Runs ``benchmarks/master_sdk_flow.py``'s flow (start -> pause -> load -> approve ->
completed, full trace, default durability) under Valgrind's callgrind. Start-up, imports
and a warm-up of 30 runs are not counted: instrumentation is switched on with
``callgrind_control`` just before the counted runs and the counters are dumped after them.
Reported: user-space instructions per run (SQLite's included; the kernel's share of the
WAL's ``fdatasync`` is not counted), and the SQL statements and synced log writes per run.
``--peer burr-wal`` counts Burr's row (``benchmarks/peers/burr_flow.py``, WAL) the same
way, for a comparison that does not move with the machine's load.

    python -m benchmarks.run_instructions [--runs 200] [--keep DIR] [--peer burr-wal]

``--keep DIR`` keeps the callgrind output there (``callgrind_annotate DIR/runs.out.1``
lists the costs by function). Needs ``valgrind`` (``apt-get install valgrind``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.otel_instructions import counted

WARM_UP = 30


def child(runs: int) -> None:
    """Inside valgrind: warm up, switch instrumentation on, run, dump."""
    from benchmarks.harness import count_statements
    from benchmarks.master_sdk_flow import make_project, one_run, open_workbench

    with tempfile.TemporaryDirectory(prefix="run-instr-") as tmp:
        root = make_project(Path(tmp) / "project")
        wb = open_workbench(root, Path(tmp) / "runs.sqlite3")
        for index in range(WARM_UP):
            one_run(wb, -1 - index)
        with count_statements(wb.store.conn) as counted:
            one_run(wb, -1 - WARM_UP)
        syncs = wb.store.log_syncs
        one_run(wb, -2 - WARM_UP)
        syncs = wb.store.log_syncs - syncs
        pid = str(os.getpid())
        subprocess.run(["callgrind_control", "-i", "on", pid], check=True, capture_output=True)
        for index in range(runs):
            one_run(wb, index)
        subprocess.run(["callgrind_control", "-d", "runs", pid], check=True, capture_output=True)
        wb.close()
        print(f"statements {counted.statements} commits {counted.commits} syncs {syncs}")


def child_burr(runs: int) -> None:
    """Inside valgrind: Burr's WAL row, warmed up, then counted like :func:`child`."""
    import sqlite3

    from burr.core.persistence import SQLitePersister

    from benchmarks.harness import count_statements
    from benchmarks.peers import run_text
    from benchmarks.peers.burr_flow import resume, start

    with tempfile.TemporaryDirectory(prefix="run-instr-burr-") as tmp:
        db_path = Path(tmp) / "burr.sqlite3"
        conn = sqlite3.connect(db_path)
        conn.execute("PRAGMA journal_mode=WAL").fetchall()
        persister = SQLitePersister(str(db_path), connection=conn)
        persister.initialize()  # type: ignore[no-untyped-call]  # unannotated in Burr

        def one_run(index: int) -> None:
            start(persister, f"run-{index}", run_text(index))
            resume(persister, f"run-{index}", run_text(index))

        for index in range(WARM_UP):
            one_run(-1 - index)
        with count_statements(conn) as counted:
            one_run(-1 - WARM_UP)
        pid = str(os.getpid())
        subprocess.run(["callgrind_control", "-i", "on", pid], check=True, capture_output=True)
        for index in range(runs):
            one_run(index)
        subprocess.run(["callgrind_control", "-d", "runs", pid], check=True, capture_output=True)
        persister.cleanup()  # type: ignore[no-untyped-call]  # unannotated in Burr
        print(f"statements {counted.statements} commits {counted.commits} (all synced)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--keep", type=Path, help="keep callgrind's output in this directory")
    parser.add_argument("--peer", choices=["burr-wal"], help="count a peer's row instead")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        if args.peer == "burr-wal":
            child_burr(args.runs)
        else:
            child(args.runs)
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is not installed: apt-get install valgrind", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="run-callgrind-") as tmp:
        out_dir = args.keep or Path(tmp)
        out_dir.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                "--instr-atstart=no",
                "--dump-instr=no",
                f"--callgrind-out-file={out_dir}/runs.out",
                sys.executable,
                "-m",
                "benchmarks.run_instructions",
                "--runs",
                str(args.runs),
                "--child",
                *(["--peer", args.peer] if args.peer else []),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        if done.returncode != 0:
            raise RuntimeError("the run loop failed under valgrind")
        total = counted(out_dir / "runs.out.1")
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    who = "Burr, WAL" if args.peer else "master_sdk"
    print(f"durable flow, {who}, one process, FULL, {args.runs} runs (callgrind; load {load})")
    print(f"instructions per run: {total / args.runs / 1e6:.3f} M")
    print(f"per run: {done.stdout.strip()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
