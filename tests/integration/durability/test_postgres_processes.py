"""The durability promises with real processes on a PostgreSQL store: exactly one resume,
many writers with exact counts, a killed process's run detected as interrupted.

The same drivers as the SQLite tests (``tests/support/durability_driver.py``), given a
``postgresql://`` URL on the throwaway server of ``tests/support/postgres.py``."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import psycopg
import pytest

import master_sdk as ms
from tests.integration.durability.test_exactly_one_resume import paused_run, race
from tests.support import postgres
from tests.support.durability import (
    copy_hello_project,
    lines,
    make_ledger_project,
    run_driver,
    spawn,
    tally,
)

PROCESSES = 4
RUNS_EACH = 50


@pytest.mark.parametrize("action", ["approve", "submit"])
def test_two_processes_resuming_the_same_pause_on_postgresql_one_wins(
    tmp_path: Path, action: str
) -> None:
    """Both processes read the paused run before either writes: the compare-and-set on the
    run's version lets one through, the other gets AlreadyResumed; one decision stored."""
    root = make_ledger_project(tmp_path / "project")
    url, ledger = postgres.fresh_url(), tmp_path / "ledger"
    run_id = paused_run(root, url, ledger, at=action)  # type: ignore[arg-type]  # a URL

    results = race(root, url, run_id, action, tmp_path / "barrier")  # type: ignore[arg-type]
    assert sorted(r["result"] for r in results) == ["already_resumed", "ok"], results
    winner = next(r for r in results if r["result"] == "ok")
    loser = next(r for r in results if r["result"] == "already_resumed")
    assert "was already resumed elsewhere" in loser["error"]
    with ms.Workbench.open(root, store=url) as wb:
        run = wb.get_run(run_id)
        if action == "approve":
            assert run.status == "waiting_input"
            assert list(wb.approvals()["by"]) == [winner["name"]]
            assert tally(ledger) == {"after": 1}
        else:
            assert run.status == "completed"
            assert tally(ledger) == {"after": 1, "done": 1}
        trace = run.trace()
        assert list(trace["seq"]) == list(range(1, len(trace) + 1))


@pytest.mark.slow
def test_four_processes_writing_fifty_runs_each_on_postgresql_lose_nothing(
    tmp_path: Path,
) -> None:
    """4 processes x 50 hello_world runs released together on one new database: no error,
    exactly the rows 200 runs make, every trace numbered from 1 without gaps."""
    root = copy_hello_project(tmp_path / "hello")
    url = postgres.fresh_url()
    folder = tmp_path / "writers"
    folder.mkdir()
    code, report, err = run_driver(
        "writers", root, url, str(PROCESSES), str(RUNS_EACH), folder, timeout=240
    )
    assert code == 0, err
    assert report is not None
    assert set(report["codes"].values()) == {0}, report
    for result in report["results"]:
        assert result["errors"] == [], result
        assert result["completed"] == RUNS_EACH

    total = PROCESSES * RUNS_EACH
    with ms.Workbench.open(root, store=url) as wb:
        assert wb.store_info()["runs_by_status"] == {"completed": total}
        assert len(wb.approvals()) == total
        trace = wb.traces()
        assert wb.store.count_events() == len(trace)
    with psycopg.connect(url) as conn:
        counts = {
            table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # type: ignore[index]  # noqa: S608  # fixed names
            for table in ("runs", "steps", "approvals", "user_inputs")
        }
    assert counts == {"runs": total, "steps": 4 * total, "approvals": total, "user_inputs": total}
    seqs = trace.groupby("run_id", observed=True)["seq"].agg(["min", "max", "count"])
    assert len(seqs) == total
    assert (seqs["min"] == 1).all() and (seqs["max"] == seqs["count"]).all()


def test_a_process_killed_mid_step_leaves_its_run_interrupted_on_postgresql(
    tmp_path: Path,
) -> None:
    """A process SIGKILLed inside a non-idempotent step: the next workbench on the database
    sees the run interrupted (without running anything); retry() completes it."""
    root = make_ledger_project(
        tmp_path / "project",
        policy="policy:\n  auto_retry_idempotent: true\n  max_recoveries: 2\n",
    )
    url, ledger, gate = postgres.fresh_url(), tmp_path / "ledger", tmp_path / "gate"
    inputs = json.dumps({"ledger": str(ledger), "gate": str(gate)})
    proc = spawn("start", root, url, "ledger/gated", inputs)
    from tests.support.durability import wait_for

    wait_for(lambda: any(line.startswith("slow") for line in lines(ledger)), what="the step")
    proc.kill()
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    with ms.Workbench.open(root, store=url) as wb:
        assert list(wb.runs()["status"]) == ["interrupted"]
        (run_id,) = list(wb.runs()["run_id"])
        run = wb.get_run(str(run_id))
        assert run.error is not None and "step 'slow' was interrupted" in run.error
        assert tally(ledger) == {"before": 1, "slow": 1}
        gate.touch()
        run.retry(by="ana")
        assert run.status == "completed"
        assert tally(ledger) == {"before": 1, "slow": 2, "after": 1}
