"""``python -m benchmarks``: measure every row, print the table, write the JSON report.

Examples:
    python -m benchmarks                       # 300 runs x 3 repetitions of every row
    python -m benchmarks --quick               # smoke run: 20 runs, 1 repetition
    python -m benchmarks --only burr --only sqlite-limit
    python -m benchmarks --only master-full --only burr-wal --awake   # CPUs kept from idling
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.awake import cpus_kept_awake
from benchmarks.cold_resume import format_cold_resume, measure_langgraph_cold_resume
from benchmarks.harness import (
    JSON_SCHEMA_VERSION,
    Row,
    RowResult,
    RunSample,
    format_ratios,
    format_rows,
    machine_info,
    measure_rows,
    quiet_telemetry,
    ratios,
    result_path,
    utc_now,
    write_json,
)
from benchmarks.sqlite_limit import (
    LimitResult,
    commit_ceiling,
    format_limit,
    measure_sqlite_limit,
)

RESULTS_DIR = Path(__file__).resolve().parent / "results"
MASTER_SECTIONS = ("master-writers", "master-cold", "master-bytes", "master-trace-frames")
SQLITE_LIMIT = "sqlite-limit"
COLD_RESUME = "cold-resume"
# Denominators of the printed ratios, when present: the most used peer and the fastest.
RATIO_BASELINES = ("langgraph-default", "burr-wal")


def peer_rows() -> list[Row]:
    """LangGraph's and Burr's rows, imported only when asked for."""
    from benchmarks.peers import burr_flow, langgraph_flow

    return [*langgraph_flow.rows(), *burr_flow.rows()]


def master_rows() -> list[Row]:
    """master_sdk's rows (default durability and the NORMAL opt-in)."""
    from benchmarks import master_sdk_flow

    return master_sdk_flow.rows()


# Each source returns rows, measured side by side in one process run.
ROW_SOURCES: tuple[Callable[[], list[Row]], ...] = (master_rows, peer_rows)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line; ``--quick`` fills in the smoke-run defaults."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Durable 3-step flow benchmarks: master_sdk and its peers, side by side.",
    )
    parser.add_argument("--runs", type=int, help="runs per repetition (default 300)")
    parser.add_argument("--repeat", type=int, help="repetitions of each row (default 3)")
    parser.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help="measure only rows/sections whose name contains NAME (repeatable); sections are "
        f"{SQLITE_LIMIT!r} and {COLD_RESUME!r}",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 20 runs, 1 repetition")
    parser.add_argument("--commits", type=int, help="commits per SQLite-limit run (default 2000)")
    parser.add_argument("--cold-runs", type=int, help="cold-resume processes (default 5)")
    parser.add_argument(
        "--workdir", type=Path, help="where stores are created (default: a temporary directory)"
    )
    parser.add_argument("--output", type=Path, help="JSON report path (default: results/...)")
    parser.add_argument("--list", action="store_true", help="list row and section names")
    parser.add_argument(
        "--awake",
        action="store_true",
        help="keep every CPU busy at idle priority meanwhile, so no CPU goes idle while a "
        "row waits for a sync (benchmarks/awake.py)",
    )
    args = parser.parse_args(argv)
    quick = args.quick
    args.runs = args.runs or (20 if quick else 300)
    args.repeat = args.repeat or (1 if quick else 3)
    args.commits = args.commits or (200 if quick else 2000)
    args.cold_runs = args.cold_runs or (1 if quick else 5)
    if min(args.runs, args.repeat, args.commits, args.cold_runs) < 1:
        parser.error("--runs, --repeat, --commits and --cold-runs must be at least 1")
    return args


def selected(name: str, only: Sequence[str] | None) -> bool:
    """Whether ``--only`` keeps ``name``."""
    return not only or any(part in name for part in only)


def _progress(row: Row, rep: int, sample: RunSample) -> None:
    rate = sample.n_runs / sample.wall_s
    print(f"  {row.name} #{rep + 1}: {rate:,.1f} runs/s", file=sys.stderr, flush=True)


def commit_ceilings(
    results: Sequence[RowResult], limits: list[LimitResult]
) -> list[dict[str, Any]]:
    """For each row that counted its commits: the runs/s its commits alone would allow at the
    measured commit rate of its journal mode and synchronous level, and its share of that.

    A row that syncs only some of its commits (``synced_commits_per_run``) is charged the
    FULL rate for those and the NORMAL rate for the rest.
    """
    found = []
    for result in results:
        commits = result.counter("commits_per_run")
        facts = result.samples[0].facts
        if not commits or "journal_mode" not in facts or "synchronous" not in facts:
            continue
        journal, level = facts["journal_mode"], facts["synchronous"]
        synced = result.counter("synced_commits_per_run")
        ceiling = commit_ceiling(limits, journal, level, commits)
        if synced is not None and synced < commits and level == "FULL":
            full = commit_ceiling(limits, journal, "FULL", 1)
            normal = commit_ceiling(limits, journal, "NORMAL", 1)
            if full and normal:
                ceiling = 1 / (synced / full + (commits - synced) / normal)
        if ceiling is None:
            continue
        rate = result.runs_per_s.median
        found.append(
            {
                "row": result.row.name,
                "commits_per_run": commits,
                "synced_commits_per_run": synced if synced is not None else commits,
                "ceiling_runs_per_s": ceiling,
                "runs_per_s": rate,
                "share": rate / ceiling,
            }
        )
    return found


def run_master_sections(
    args: argparse.Namespace, workdir: Path, report: dict[str, Any], text: list[str]
) -> None:
    """Many writers, cold approve, bytes per run and trace frames (each when selected)."""
    from benchmarks import master_sections as ms_sections

    quick = args.quick
    if selected(ms_sections.MANY_WRITERS, args.only):
        print("measuring many writers ...", file=sys.stderr, flush=True)
        runs = 20 if quick else 150
        writers = ms_sections.measure_writers(
            workdir / ms_sections.MANY_WRITERS, n_runs=runs, repeat=args.repeat
        )
        text += [
            "",
            f"Many writers: N processes x {runs} runs of the flow on one store file "
            f"(synchronous=FULL), aggregate runs/s",
            ms_sections.format_writers(writers),
        ]
        report[ms_sections.MANY_WRITERS] = [w.to_json() for w in writers]
    if selected(ms_sections.COLD_APPROVE, args.only):
        print("measuring master approve in a fresh process ...", file=sys.stderr, flush=True)
        cold = ms_sections.measure_cold_approve(
            workdir / ms_sections.COLD_APPROVE, runs=args.cold_runs
        )
        text += ["", "Cold resume, master_sdk:", ms_sections.format_cold(cold)]
        report[ms_sections.COLD_APPROVE] = cold
    if selected(ms_sections.BYTES, args.only):
        print("measuring bytes per run ...", file=sys.stderr, flush=True)
        n_runs = 100 if quick else 1000
        stored = ms_sections.measure_bytes(workdir / ms_sections.BYTES, n_runs=n_runs)
        text += [
            "",
            f"Store size after {n_runs:,} completed master_sdk runs (full trace kept, WAL "
            f"checkpointed): {stored['bytes_per_run']:,.0f} bytes per run "
            f"({stored['rows']['trace']:,} trace events in "
            f"{stored['rows']['trace_chunks']:,} trace_chunks rows)",
        ]
        report[ms_sections.BYTES] = stored
    if selected(ms_sections.TRACE_FRAMES, args.only):
        print("measuring trace frames ...", file=sys.stderr, flush=True)
        events = 100_000 if quick else 1_000_000
        frames = ms_sections.measure_trace_frames(
            workdir / ms_sections.TRACE_FRAMES, events=events, repeat=args.repeat
        )
        text += [
            "",
            f"Trace frames: {events:,} events into a DataFrame, each measurement in a fresh "
            "process",
            ms_sections.format_trace_frames(frames),
        ]
        report[ms_sections.TRACE_FRAMES] = frames


def run(args: argparse.Namespace, workdir: Path) -> tuple[dict[str, Any], str]:
    """Measures what ``args`` selects in ``workdir``; returns the report and its text."""
    results: list[RowResult] = []

    started = utc_now()
    load_before = os.getloadavg()
    cpus = os.cpu_count() or 1
    if load_before[0] > cpus / 2:
        print(
            f"warning: the machine is busy (load {load_before[0]:.2f} on {cpus} CPUs); "
            "figures will be low and noisy",
            file=sys.stderr,
            flush=True,
        )
    report: dict[str, Any] = {
        "schema": JSON_SCHEMA_VERSION,
        "date": started.isoformat(),
        "machine": machine_info(workdir),
        "settings": {
            "runs": args.runs,
            "repeat": args.repeat,
            "commits": args.commits,
            "cold_runs": args.cold_runs,
            "only": args.only,
            "quick": args.quick,
            "awake": args.awake,
        },
    }
    text: list[str] = []

    rows = [row for source in ROW_SOURCES for row in source() if selected(row.name, args.only)]
    if rows:
        print(f"measuring {len(rows)} rows ...", file=sys.stderr, flush=True)
        results = measure_rows(rows, workdir, args.runs, args.repeat, on_sample=_progress)
        text += [
            f"Durable 3-step flow (echo -> approval pause -> resume from store -> summary), "
            f"{args.runs} runs x {args.repeat} repetitions per row",
            format_rows(results),
        ]
        found = ratios(results, RATIO_BASELINES)
        if found:
            text += ["", "Ratios of median runs/s:", format_ratios(found)]
        text += ["", "Rows:"]
        for result in results:
            facts = ", ".join(f"{k}={v}" for k, v in sorted(result.samples[0].facts.items()))
            text.append(f"  {result.row.name}: {result.row.title} [{facts}]")
            text.append(f"    persists: {result.row.persisted}")
        report["rows"] = [r.to_json() for r in results]
        report["ratios"] = [{"row": a, "baseline": b, "ratio": v} for a, b, v in found]

    if selected(SQLITE_LIMIT, args.only):
        print("measuring the SQLite commit limit ...", file=sys.stderr, flush=True)
        limit_dir = workdir / SQLITE_LIMIT
        limit_dir.mkdir()
        limits = measure_sqlite_limit(limit_dir, commits=args.commits, repeat=max(3, args.repeat))
        text += [
            "",
            f"SQLite physical limit: one-row INSERT + COMMIT per transaction, "
            f"{args.commits} commits x {limits[0].stats.n}, fresh file in the work directory",
            format_limit(limits),
        ]
        report[SQLITE_LIMIT] = [limit.to_json() for limit in limits]
        ceilings = commit_ceilings(results, limits)
        if ceilings:
            text += ["", "Rows against the commit limit (same journal mode and synchronous):"]
            text += [
                f"  {c['row']:<18} {c['commits_per_run']:.0f} commits/run "
                f"({c['synced_commits_per_run']:.0f} synced) alone allow "
                f"{c['ceiling_runs_per_s']:,.0f} runs/s; measured {c['runs_per_s']:,.1f} "
                f"({100 * c['share']:.0f}%)"
                for c in ceilings
            ]
            report["commit_ceilings"] = ceilings

    if selected(COLD_RESUME, args.only):
        print("measuring the LangGraph cold resume ...", file=sys.stderr, flush=True)
        cold_dir = workdir / COLD_RESUME
        cold_dir.mkdir()
        cold = measure_langgraph_cold_resume(
            cold_dir, runs=args.cold_runs, import_runs=1 if args.quick else 3
        )
        text += [
            "",
            "Cold resume: a fresh `python -c` opens SqliteSaver, resumes one paused LangGraph "
            "thread with the approval and exits",
            format_cold_resume(cold),
        ]
        report[COLD_RESUME] = cold.to_json()

    run_master_sections(args, workdir, report, text)

    load_after = os.getloadavg()
    report["machine"]["loadavg_before"] = list(load_before)
    report["machine"]["loadavg_after"] = list(load_after)
    report["duration_s"] = (utc_now() - started).total_seconds()
    machine = report["machine"]
    header = (
        f"{machine['hostname']}  {machine['cpu_count']} CPU ({machine['cpu_model']})  "
        f"Python {machine['python']}  SQLite {machine['sqlite']}  "
        f"workdir on {machine['workdir_filesystem']}  "
        f"load {load_before[0]:.2f} -> {load_after[0]:.2f}"
        + ("  CPUs kept awake by idle-priority spinners" if args.awake else "")
    )
    versions = ", ".join(f"{k} {v}" for k, v in machine["packages"].items() if v)
    return report, "\n".join([header, versions, "", *text])


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m benchmarks``."""
    args = parse_args(argv)
    if args.list:
        for row in (row for source in ROW_SOURCES for row in source()):
            print(f"{row.name:<20} {row.title}")
        print(f"{SQLITE_LIMIT:<20} SQLite single-row commit rate (section)")
        print(f"{COLD_RESUME:<20} LangGraph resume in a fresh process (section)")
        for section in MASTER_SECTIONS:
            print(f"{section:<20} master_sdk section")
        return 0
    if args.only:
        names = [row.name for source in ROW_SOURCES for row in source()]
        names += [SQLITE_LIMIT, COLD_RESUME, *MASTER_SECTIONS]
        if not any(selected(name, args.only) for name in names):
            print(f"--only {args.only} matches none of: {', '.join(names)}", file=sys.stderr)
            return 2
    removed = quiet_telemetry(os.environ)
    if removed:
        print(f"unset for the benchmark: {', '.join(removed)}", file=sys.stderr)
    began = time.perf_counter()
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        workdir_ctx: Any = tempfile.TemporaryDirectory(dir=args.workdir, prefix="bench-")
    else:
        workdir_ctx = tempfile.TemporaryDirectory(prefix="master-bench-")
    with workdir_ctx as name, cpus_kept_awake(args.awake):
        report, text = run(args, Path(name))
    output = args.output or result_path(
        RESULTS_DIR, now=utc_now(), hostname=report["machine"]["hostname"], quick=args.quick
    )
    write_json(output, report)
    print(text)
    print(f"\nJSON: {output}  ({time.perf_counter() - began:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
