"""Experiments at scale: master_sdk's ``wb.evaluate`` beside LangGraph's ``graph.batch``.

    python -m benchmarks.experiments_bench                 # 10,000 cases, concurrency 64
    python -m benchmarks.experiments_bench --cases 2000 --only master --only langgraph

Rows (each measured in a fresh process, so peak RSS is that row's own):

* ``master``: ``wb.evaluate`` over N cases of ``prepare`` (tool) -> ``classify`` (agent; the
  fake model sleeps ``--latency`` per call) -> ``tag`` (tool), ``concurrency`` in flight,
  every case a durable run at ``synchronous=FULL`` with its full trace. Reports cases/s,
  CPU ms per case, the store's commits and the transactions (WAL syncs) they were grouped
  into with the time spent in them, peak RSS and store bytes per case.
* ``langgraph``: the same flow and fake latency, ``graph.batch(..., max_concurrency=K)``
  with ``SqliteSaver``.
* ``master-429``: as ``master`` with the fake answering 429 to 2% of calls (seeded); the
  project's default retry policy; reports throughput, failed cases, backoffs.
* ``compare``: ``wb.compare`` of the two N-case experiments above (median of 3).
* ``kill-resume``: the ``master`` experiment in a child process killed with SIGKILL at
  about half of its model calls, then ``resume()`` in another process. The fake counts each
  call when its request arrives and when its reply is handed back; reports lost cases, and
  the calls asked again on resume, classed: replies the store held at the kill (must be 0),
  replies handed back but not yet written when the kill came (the window between the
  model's return and the kept reply's write), requests in flight (no reply to keep); the
  kept replies reused; and whether the results frame equals the uninterrupted one's
  (outputs, statuses, scores, errors for every case; usage for every case but those whose
  request was reserved when the process died, which stay counted at their worst case).
  ``master`` also reports how long a reply waits from the fake's return until its kept
  record is durable (the window above; a kill at a random moment finds about
  cases/s x that mean repeated).

The machine is shared: run it more than once and read medians.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.experiments_flow import case_text, write_project

ROWS = ("master", "langgraph", "master-429", "compare", "kill-resume")
STABLE = ["case_key", "case_index", "status", "output.label", "output.tag", "tokens_in",
          "tokens_out", "cost_usd", "error"]  # fmt: skip


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _store_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*") if p.is_file())


def _cases(n: int) -> list[dict[str, Any]]:
    return [{"case_key": f"c{i}", "text": case_text(i)} for i in range(n)]


class _CommitClock:
    """The store's commits: how many, in how many transactions (group commit), and the
    wall time spent in those transactions (SQL and WAL syncs, one leader at a time)."""

    def __init__(self, store: Any) -> None:
        self.seconds = 0.0
        self.transactions = 0
        self.commits = 0
        group = getattr(store, "_group", None)
        self._group = group
        if group is None:
            return
        inner = group._transaction

        def transaction(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started
                self.transactions += 1
                self.commits += len(args[0])

        group._transaction = transaction


class _ReplyClock:
    """How long a model reply waits, after the fake hands it back, until its kept record
    is durable: the window in which a kill makes its step ask again on resume. The fake
    stamps the time in its thread; the journal's ``keep`` reads it in the same thread."""

    def __init__(self) -> None:
        from master_sdk.orchestrator import replies

        self.stamp = threading.local()
        self.waits_ms: list[float] = []
        keep = replies.ReplyJournal.keep
        clock = self

        def timed(journal: Any, entry: dict[str, Any]) -> None:
            keep(journal, entry)
            seen = getattr(clock.stamp, "at", None)
            if seen is not None:
                clock.waits_ms.append((time.perf_counter() - seen) * 1000)

        replies.ReplyJournal.keep = timed  # type: ignore[method-assign]  # benchmark probe

    def summary(self) -> dict[str, float]:
        waits = sorted(self.waits_ms)
        if not waits:
            return {}
        at = lambda q: waits[int(q * (len(waits) - 1))]  # noqa: E731
        return {
            "reply_to_durable_ms_mean": statistics.fmean(waits),
            "reply_to_durable_ms_p50": at(0.5),
            "reply_to_durable_ms_p90": at(0.9),
            "reply_to_durable_ms_p99": at(0.99),
        }


def _logging_fake(
    log: Path | None, latency: float, rate: float = 0.0, stamp: Any = None
) -> Any:
    from master_sdk.models.providers.fake import FakeProvider

    class LoggingFake(FakeProvider):
        """The fake, appending each prompt to ``log`` + ".requests" when the request
        arrives and to ``log`` when its reply is handed back (flushed per line)."""

        def __init__(self) -> None:
            super().__init__(latency_s=latency, rate_limit_rate=rate, seed=1)
            self._log = log.open("a", encoding="utf-8", buffering=1) if log else None
            self._requests = (
                log.with_name(log.name + ".requests").open("a", encoding="utf-8", buffering=1)
                if log
                else None
            )
            self._log_lock = threading.Lock()

        def complete(self, request: Any) -> Any:
            if self._requests is not None:
                with self._log_lock:
                    self._requests.write(request.messages[-1].content + "\n")
                    self._requests.flush()
            response = super().complete(request)
            if stamp is not None:
                stamp.at = time.perf_counter()
            if self._log is not None:
                with self._log_lock:
                    self._log.write(request.messages[-1].content + "\n")
                    self._log.flush()
            return response

    return LoggingFake()


# --------------------------------------------------------------------------- child rows


def row_master(
    work: Path,
    n: int,
    concurrency: int,
    latency: float,
    *,
    name: str = "bench",
    rate: float = 0.0,
    log: Path | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    import master_sdk as ms

    root = work / "master"
    if not root.exists():
        write_project(root)
    replies = _ReplyClock()
    fake = _logging_fake(log, latency, rate, replies.stamp)
    wb = ms.Workbench.open(root, providers={"default": fake})
    clock = _CommitClock(wb.store)
    store_path = Path(wb.store_info()["path"])
    before = _store_bytes(store_path)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    if resume:
        exp = wb.experiment(name).resume(progress=False)
    else:
        exp = wb.evaluate("bench/classify", _cases(n), name=name, concurrency=concurrency,
                          progress=False)  # fmt: skip
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    results = exp.results
    statuses = results["status"].value_counts()
    runner = exp._runner
    gate = runner.gate.state() if runner is not None else None
    out = {
        "cases": n,
        "wall_s": wall,
        "cases_per_s": n / wall,
        "cpu_ms_per_case": cpu / n * 1000,
        "commits_per_case": clock.commits / n,
        "transactions_per_case": clock.transactions / n,
        "commits_per_transaction": clock.commits / max(1, clock.transactions),
        "transaction_s": clock.seconds,
        "transaction_share_of_wall": clock.seconds / wall,
        "peak_rss_mb": _peak_rss_mb(),
        "store_bytes_per_case": (_store_bytes(store_path) - before) / n,
        "completed": int(statuses.get("completed", 0)),
        "failed": int(statuses.get("failed", 0)),
        "model_calls": fake.calls,
        "rate_limited": fake.rate_limited,
        "backoffs": gate.backoffs if gate else 0,
        "status": exp.status,
        **replies.summary(),
    }
    wb.close()
    return out


def row_langgraph(work: Path, n: int, concurrency: int, latency: float) -> dict[str, Any]:
    from benchmarks.peers.langgraph_batch import run_batch

    db = work / "langgraph" / "checkpoints.sqlite3"
    db.parent.mkdir(parents=True, exist_ok=True)
    texts = [case_text(i) for i in range(n)]
    cpu0, wall0 = time.process_time(), time.perf_counter()
    states = run_batch(db, texts, concurrency=concurrency, latency_s=latency)
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    done = sum(1 for s in states if s.get("tag"))
    return {
        "cases": n,
        "wall_s": wall,
        "cases_per_s": n / wall,
        "cpu_ms_per_case": cpu / n * 1000,
        "peak_rss_mb": _peak_rss_mb(),
        "store_bytes_per_case": _store_bytes(db) / n,
        "completed": done,
    }


def row_compare(work: Path) -> dict[str, Any]:
    import master_sdk as ms

    with ms.Workbench.open(work / "master") as wb:
        times = []
        for _ in range(3):
            started = time.perf_counter()
            comparison = wb.compare("bench", "bench-429")
            times.append(time.perf_counter() - started)
        return {
            "pairs": len(comparison.cases),
            "seconds_first": times[0],
            "seconds_median": statistics.median(times),
            "changed": int(comparison.cases["output_changed"].sum()),
        }


def row_kill(work: Path, n: int, concurrency: int, latency: float) -> dict[str, Any]:
    import pandas as pd

    import master_sdk as ms

    kill_work = work / "kill"
    kill_work.mkdir(parents=True, exist_ok=True)
    log = kill_work / "calls.log"
    base = [sys.executable, "-m", "benchmarks.experiments_bench", "--child", "master",
            "--workdir", str(kill_work), "--cases", str(n), "--concurrency", str(concurrency),
            "--latency", str(latency), "--log", str(log)]  # fmt: skip
    child = subprocess.Popen(base, stdout=subprocess.DEVNULL)
    while True:
        lines = log.read_text().count("\n") if log.exists() else 0
        if lines >= n // 2 or child.poll() is not None:
            break
        time.sleep(0.005)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    requests = log.with_name(log.name + ".requests")
    replied = Counter(log.read_text().splitlines())
    requested = Counter(requests.read_text().splitlines())
    by_prompt = {f"Classify: {' '.join(case_text(i).split())}": f"c{i}" for i in range(n)}
    # what the store holds after the kill: a reply's model_called event is committed with
    # the kept reply (or with the step's result)
    with ms.Workbench.open(kill_work / "master") as wb:
        tagged = wb.store.tagged_runs("bench")
        trace = wb.traces(product="bench")
        called = set(trace.loc[trace["event"] == "model_called", "run_id"])
        kept = {key for key, run_id in tagged.items() if run_id in called}
    started = time.perf_counter()
    resumed = subprocess.run([*base, "--resume"], stdout=subprocess.PIPE, check=True, text=True)
    resume_s = time.perf_counter() - started
    calls = Counter(requests.read_text().splitlines())
    repeated = [p for p, k in calls.items() if k > 1]
    with ms.Workbench.open(kill_work / "master") as wb:
        results = wb.experiment("bench").results
        trace = wb.traces(product="bench")
        reused = int((trace["event"] == "model_call_reused").sum())
    # asked twice, or charged at the worst case because a request was reserved (maybe
    # sent) when the process died: such usage counts more than the uninterrupted run's
    unconfirmed = set(trace.loc[trace["event"] == "model_call_unconfirmed", "run_id"])
    keyed = results.set_index("case_key")["run_id"]
    cut_short = {by_prompt[p] for p in repeated}
    cut_short |= {key for key, run_id in keyed.items() if run_id in unconfirmed}
    with ms.Workbench.open(work / "master") as wb:
        reference = wb.experiment("bench").results
    usage = ["tokens_in", "tokens_out", "cost_usd"]
    outcome = [c for c in STABLE if c not in usage]
    same = results[outcome].reset_index(drop=True).equals(reference[outcome].reset_index(drop=True))
    once = ~results["case_key"].isin(cut_short)
    same_usage = (
        results.loc[once, usage]
        .reset_index(drop=True)
        .equals(reference.loc[once, usage].reset_index(drop=True))
    )
    del pd
    return {
        "killed_after_requests": sum(requested.values()),
        "killed_after_replies": sum(replied.values()),
        "lost_cases": int(n - (results["status"] == "completed").sum()),
        # a reply the store held at the kill, asked again (must be 0)
        "repeated_kept_replies": sum(1 for p in repeated if by_prompt[p] in kept),
        # handed back by the model before the kill, not yet written when it came
        "repeated_replied_unwritten": sum(
            1 for p in repeated if replied[p] and by_prompt[p] not in kept
        ),
        # requests in flight at the kill: no reply to keep
        "repeated_mid_flight": sum(1 for p in repeated if not replied[p]),
        "kept_replies_reused": reused,
        "results_equal_uninterrupted": bool(same),
        "cases_charged_worst_case": len(cut_short),
        "usage_equal_for_the_others": bool(same_usage),
        "resume_s": resume_s,
        "resume_row": json.loads(resumed.stdout.strip().splitlines()[-1]),
    }


# --------------------------------------------------------------------------- the parent


def _child(args: argparse.Namespace) -> None:
    work = Path(args.workdir)
    if args.child == "master":
        out = row_master(work, args.cases, args.concurrency, args.latency,
                         log=Path(args.log) if args.log else None, resume=args.resume)  # fmt: skip
    elif args.child == "master-429":
        out = row_master(work, args.cases, args.concurrency, args.latency, name="bench-429",
                         rate=0.02)  # fmt: skip
    elif args.child == "langgraph":
        out = row_langgraph(work, args.cases, args.concurrency, args.latency)
    elif args.child == "compare":
        out = row_compare(work)
    else:
        out = row_kill(work, args.cases, args.concurrency, args.latency)
    print(json.dumps(out))


def spawn_row(module: str, row: str, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Measure ``row`` in a fresh interpreter (``python -m module --child row`` with the
    size arguments of ``args``); what its last output line says (JSON)."""
    command = [sys.executable, "-m", module, "--child", row,
               "--workdir", str(work), "--cases", str(args.cases),
               "--concurrency", str(args.concurrency), "--latency", str(args.latency)]  # fmt: skip
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _spawn(row: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    print(f"... {row}", file=sys.stderr, flush=True)
    return spawn_row("benchmarks.experiments_bench", row, work, args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--only", action="append", default=[])
    parser.add_argument("--workdir")
    parser.add_argument("--output")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--log", help=argparse.SUPPRESS)
    parser.add_argument("--resume", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return
    rows = [r for r in ROWS if not args.only or any(o == r for o in args.only)]
    with tempfile.TemporaryDirectory(prefix="bench-exp-") as scratch:
        work = Path(args.workdir or scratch)
        work.mkdir(parents=True, exist_ok=True)
        report: dict[str, Any] = {
            "host": socket.gethostname(),
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_1m": os.getloadavg()[0],
            "cases": args.cases,
            "concurrency": args.concurrency,
            "latency_s": args.latency,
            "latency_bound_cases_per_s": args.concurrency / args.latency,
            "rows": {},
        }
        for row in rows:
            report["rows"][row] = _spawn(row, args, work)
            print(f"{row}: {json.dumps(report['rows'][row])}", flush=True)
        rows_out = report["rows"]
        if "master" in rows_out and "langgraph" in rows_out:
            ratio = rows_out["master"]["cases_per_s"] / rows_out["langgraph"]["cases_per_s"]
            report["master_over_langgraph"] = ratio
            print(f"master_sdk / LangGraph = {ratio:.2f}x")
    day = datetime.now(UTC).date().isoformat()
    target = Path(args.output or Path(__file__).parent / "results" /
                  f"experiments-{socket.gethostname()}-{day}.json")  # fmt: skip
    target.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {target}", file=sys.stderr)


if __name__ == "__main__":
    main()
