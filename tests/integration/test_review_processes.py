"""Decisions and continuations across real processes: a kill between the two, racing
workers, and the reviewing commands of ``master``.

Side effects are counted in a ledger file (``tests/support/durability.py``): the
``ledger/pause`` flow's ``after`` tool appends one line each time it really runs.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import master_sdk as ms
from master_sdk.orchestrator.crashpoints import CRASH_EXIT_CODE
from tests.support.durability import REPO, driver_env, make_ledger_project, tally


def master(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """``master ARGS`` in a new process (this checkout importable)."""
    return subprocess.Popen(
        [sys.executable, "-m", "master_sdk.cli", *map(str, args)],
        cwd=REPO,
        env=driver_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


def paused_runs(root: Path, store: Path, ledger: Path, n: int) -> list[str]:
    with ms.Workbench.open(root, store=store) as wb:
        return [wb.run("ledger/pause", {"ledger": str(ledger)}, by="bob").id for _ in range(n)]


def test_a_kill_between_decision_and_continuation_leaves_a_decided_run_work_continues_once(
    tmp_path: Path,
) -> None:
    """``master approve`` killed once the approval is durable: the decision is stored, the
    run is ``decided`` and nothing after it ran; ``master work --once`` continues it (the
    ``after`` tool runs once); a second worker pass finds nothing to do."""
    root = make_ledger_project(tmp_path / "project")
    store, ledger = tmp_path / "store.sqlite3", tmp_path / "ledger"
    (run_id,) = paused_runs(root, store, ledger, 1)
    base = ("--root", root, "--store", store)

    code, _out, err = finish(
        master(
            *base,
            "approve",
            run_id,
            "--comment",
            "go",
            "--by",
            "ana",
            env={"MASTER_CRASH_POINT": "after_decision"},
        )
    )
    assert code == CRASH_EXIT_CODE, err
    with ms.Workbench.open(root, store=store) as wb:
        assert wb.get_run(run_id, recover=False).status == "decided"
        assert list(wb.approvals()["comment"]) == ["go"]
    assert tally(ledger)["after"] == 0

    code, out, err = finish(master(*base, "work", "--once"))
    assert code == 0, err
    assert run_id in out and "continued" in out
    code, out, err = finish(master(*base, "work", "--once"))
    assert code == 0 and "(none)" in out, out + err
    assert tally(ledger)["after"] == 1
    with ms.Workbench.open(root, store=store) as wb:
        assert wb.get_run(run_id).status == "waiting_input"


def test_two_workers_racing_over_the_same_decided_runs_continue_each_exactly_once(
    tmp_path: Path,
) -> None:
    """Thirty runs approved without continuation; two ``master work --once`` processes
    started together: the ledger shows ``after`` thirty times, every run continued by
    exactly one of them and now waits for input."""
    root = make_ledger_project(tmp_path / "project")
    store, ledger = tmp_path / "store.sqlite3", tmp_path / "ledger"
    ids = paused_runs(root, store, ledger, 30)
    with ms.Workbench.open(root, store=store) as wb:
        decided = wb.decide(ids, "approve", comment="ok", by="ana", proceed=False)
        assert set(decided["outcome"]) == {"decided"}
    base = ("--root", root, "--store", store)
    workers = [master(*base, "work", "--once") for _ in range(2)]
    outputs = [finish(proc) for proc in workers]
    assert all(code == 0 for code, _o, _e in outputs), outputs
    continued = [
        line.split()[0]
        for _code, out, _err in outputs
        for line in out.splitlines()
        if " continued " in f" {line} "
    ]
    assert sorted(continued) == sorted(ids)
    assert tally(ledger)["after"] == 30
    with ms.Workbench.open(root, store=store) as wb:
        assert set(wb.runs()["status"].astype(str)) == {"waiting_input"}


def test_master_pending_and_approve_of_several_runs(tmp_path: Path) -> None:
    """``master pending`` lists the paused runs; ``master approve A B --comment`` decides
    and continues both, one row each; a refused one makes the exit code 1."""
    root = make_ledger_project(tmp_path / "project", policy="policy:\n  four_eyes: true\n")
    store, ledger = tmp_path / "store.sqlite3", tmp_path / "ledger"
    ids = paused_runs(root, store, ledger, 3)
    base = ("--root", root, "--store", store)
    code, out, err = finish(master(*base, "pending", "--kind", "approval"))
    assert code == 0, err
    assert all(run_id in out for run_id in ids) and "Approve?" not in out
    code, out, err = finish(master(*base, "approve", *ids[:2], "--comment", "ok", "--by", "ana"))
    assert code == 0, err
    assert out.count("continued") == 2
    code, out, err = finish(master(*base, "approve", ids[2], ids[0], "--by", "bob"))
    assert code == 1 and "refused" in out and "not_waiting" in out
    assert tally(ledger)["after"] == 2


def test_a_running_master_work_shows_each_continued_run_while_it_keeps_serving(
    tmp_path: Path,
) -> None:
    """``master work`` (a service that never ends by itself) prints each run it continued
    as it goes, redacted, not only when the process exits: the line is read while the
    process still runs."""
    root = make_ledger_project(tmp_path / "project")
    store, ledger = tmp_path / "store.sqlite3", tmp_path / "ledger"
    (run_id,) = paused_runs(root, store, ledger, 1)
    with ms.Workbench.open(root, store=store) as wb:
        wb.decide([run_id], "approve", comment="go", by="ana", proceed=False)
    proc = master("--root", root, "--store", store, "work", "--interval", "0.05")
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until the first line is printed
        assert proc.poll() is None, "master work ended instead of serving"
        assert line.split()[:2] == [run_id, "continued"], line
    finally:
        proc.kill()
        proc.communicate(timeout=60)
    assert tally(ledger)["after"] == 1
