"""Which pages a run of the benchmark flow writes to the WAL, by table and index.

Every page a commit changes is appended to the write-ahead log as one frame (and later
checkpointed into the database): frames per run are a large share of a run's write cost.
This runs the durable benchmark flow (``benchmarks/master_sdk_flow.py``) on a fresh store,
warms it up, folds the log into the database, stops automatic checkpoints, runs ``--runs``
more runs and then reads the log's frame headers: each frame's page number is mapped to the
table or index owning the page (SQLite's ``dbstat``).

    python -m benchmarks.wal_frames [--warm 300] [--runs 50]

Prints frames and commits per run, and frames per run by table or index.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import struct
import tempfile
from collections import Counter
from pathlib import Path

WAL_HEADER = 32
FRAME_HEADER = 24


def read_frames(wal: Path) -> tuple[int, list[tuple[int, bool]]]:
    """The page size and the (page number, ends a commit) of each frame of a WAL file."""
    data = wal.read_bytes()
    if len(data) < WAL_HEADER:
        return 0, []
    page_size = struct.unpack(">I", data[8:12])[0]
    frames: list[tuple[int, bool]] = []
    at = WAL_HEADER
    while at + FRAME_HEADER + page_size <= len(data):
        pgno, size_after = struct.unpack(">II", data[at : at + 8])
        frames.append((pgno, size_after != 0))
        at += FRAME_HEADER + page_size
    return page_size, frames


def page_owners(db: Path) -> dict[int, str]:
    """Each page of the database with the table or index it belongs to."""
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT name, pageno FROM dbstat")
        return {int(pgno): str(name) for name, pgno in rows}
    finally:
        conn.close()


def measure(workdir: Path, warm: int, runs: int) -> tuple[int, int, Counter[str], int]:
    """(page size, commits, frames by owner, frames) over ``runs`` runs after ``warm``."""
    from benchmarks.master_sdk_flow import make_project, one_run, open_workbench

    root = make_project(workdir / "project")
    db = workdir / "runs.sqlite3"
    wb = open_workbench(root, db)
    try:
        for index in range(warm):
            one_run(wb, -1 - index)
        conn = wb.store.conn
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        for index in range(runs):
            one_run(wb, index)
        page_size, frames = read_frames(Path(f"{db}-wal"))
        owners = page_owners(db)
    finally:
        wb.close()
    by_owner: Counter[str] = Counter(owners.get(pgno, "(free page)") for pgno, _ in frames)
    commits = sum(1 for _, last in frames if last)
    return page_size, commits, by_owner, len(frames)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--warm", type=int, default=300, help="runs before the counted ones")
    parser.add_argument("--runs", type=int, default=50, help="runs counted")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="wal-frames-") as tmp:
        page_size, commits, by_owner, total = measure(Path(tmp), args.warm, args.runs)
    n = args.runs
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"WAL frames of the durable flow, {n} runs after {args.warm} (load {load})")
    print(f"page size {page_size}; per run: {total / n:.1f} frames, {commits / n:.1f} commits")
    for owner, count in by_owner.most_common():
        print(f"  {owner:<32} {count / n:6.2f} frames/run")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
