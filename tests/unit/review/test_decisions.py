"""Decision first, continuation second: a decision is committed on its own and is final;
continuing the run is a separate step taken exactly once, here or by any executor."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

import master_sdk as ms


def paused(wb: ms.Workbench, n: int = 3, *, by: str = "bob") -> list[ms.Run]:
    return [wb.run("hello_world/greet", inputs={"text": f"text {i}"}, by=by) for i in range(n)]


def test_approve_records_the_decision_and_continues_in_the_same_call_by_default(
    wb: ms.Workbench,
) -> None:
    """``run.approve()`` commits the decision, then continues the run to its next pause."""
    run = paused(wb, 1)[0]
    run.approve("ok", by="ana")
    assert run.status == "waiting_input"
    assert list(wb.approvals()["by"]) == ["ana"]


def test_a_decision_without_continuation_leaves_a_decided_run_that_work_continues_once(
    wb: ms.Workbench,
) -> None:
    """``proceed=False`` stores the decision (audit present, run ``decided``, step not
    started); ``wb.work()`` continues it; a second ``wb.work()`` finds nothing."""
    runs = paused(wb, 3)
    out = wb.decide([r.id for r in runs], "approve", comment="batch", by="ana", proceed=False)
    assert list(out["outcome"]) == ["decided"] * 3
    assert set(wb.runs()["status"].astype(str)) == {"decided"}
    assert len(wb.approvals()) == 3 and set(wb.approvals()["comment"]) == {"batch"}
    assert wb.pending().empty  # decided runs no longer wait for people
    worked = wb.work()
    assert sorted(worked["run_id"]) == sorted(r.id for r in runs)
    assert set(worked["outcome"]) == {"continued"} and set(worked["status"]) == {"waiting_input"}
    assert wb.work().empty


def test_a_second_decision_on_a_decided_run_is_refused_and_changes_nothing(
    wb: ms.Workbench,
) -> None:
    """The decision is final: approving or rejecting a decided run is ``not_waiting``."""
    (run,) = paused(wb, 1)
    wb.decide([run.id], "approve", by="ana", proceed=False)
    out = wb.decide([run.id], "reject", comment="no", by="carl")
    assert list(out["outcome"]) == ["not_waiting"]
    assert "decided" in out["error"][0]
    assert list(wb.approvals()["decision"]) == ["approved"]
    assert wb.get_run(run.id).status == "decided"


def test_a_rejection_ending_the_run_needs_no_continuation(wb: ms.Workbench) -> None:
    """A rejection with ``on_reject: stop`` ends the run in the decision's commit."""
    (run,) = paused(wb, 1)
    out = wb.decide([run.id], "reject", comment="no", by="ana", proceed=False)
    assert list(out["status"]) == ["rejected"]
    assert wb.work().empty


def test_two_threads_continuing_the_same_decided_runs_continue_each_once(
    wb: ms.Workbench,
) -> None:
    """Two executors racing over the same decided runs: every run is continued by exactly
    one (the other's outcome is ``taken``), and each run's echo/review/audience history
    shows one continuation."""
    runs = paused(wb, 6)
    ids = [r.id for r in runs]
    wb.decide(ids, "approve", by="ana", proceed=False)
    results: list[list[str]] = []
    barrier = threading.Barrier(2)

    def worker() -> None:
        barrier.wait()
        frame = wb.work(ids)
        results.append([f"{r}:{o}" for r, o in zip(frame["run_id"], frame["outcome"], strict=True)])

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    continued = [
        item.split(":")[0] for result in results for item in result if item.endswith(":continued")
    ]
    assert sorted(continued) == sorted(ids)
    for run_id in ids:
        run = wb.get_run(run_id)
        assert run.status == "waiting_input"
        starts = run.trace().query("event == 'step_started' and step_id == 'audience'")
        assert len(starts) == 1


def test_proceed_on_a_paused_run_is_refused(wb: ms.Workbench) -> None:
    """Only a decided run can be continued: ``run.proceed()`` on a pause is NotWaiting."""
    (run,) = paused(wb, 1)
    with pytest.raises(ms.NotWaiting, match="not decided"):
        run.proceed()
    assert run.status == "waiting_approval"


def test_bulk_submit_gives_each_run_the_same_input_and_reports_invalid_ones(
    wb: ms.Workbench,
) -> None:
    """``decide(..., "submit", data=...)``: valid input decides and continues every run;
    input failing the schema is ``invalid`` for each and records nothing."""
    runs = paused(wb, 2)
    wb.decide([r.id for r in runs], "approve", by="ana")
    bad = wb.decide([r.id for r in runs], "submit", data={"audience": ""}, by="ana")
    assert set(bad["outcome"]) == {"invalid"}
    good = wb.decide([r.id for r in runs], "submit", data={"audience": "board"}, by="ana")
    assert set(good["outcome"]) == {"continued"} and set(good["status"]) == {"completed"}


class SlowDisk:
    """A commit hook standing for a slow disk: each commit takes a few milliseconds more
    before it is durable (what an fsync costs on a loaded machine)."""

    def before_commit(self, commit: object) -> None:
        time.sleep(0.005)

    def after_commit(self, commit: object) -> None:
        """Nothing."""


def test_bulk_decisions_share_transactions_and_keep_their_order(hello_root: Path) -> None:
    """Forty approvals in one ``decide`` are committed in far fewer SQLite transactions
    than decisions (concurrent commits share one sync); outcomes come back in the order of
    the ids, every decision is in the audit once, and a run listed twice is decided once
    (its second entry is ``not_waiting`` or ``taken``)."""
    with ms.Workbench.open(hello_root, hooks=[SlowDisk()]) as wb:
        ids = [r.id for r in paused(wb, 40)]
        commits: list[str] = []
        conn = wb.store.conn  # type: ignore[attr-defined]  # the SQLite store's writer

        def trace(statement: str) -> None:
            if statement.lstrip().upper().startswith("COMMIT"):
                commits.append(statement)

        conn.set_trace_callback(trace)
        try:
            out = wb.decide([*ids, ids[0]], "approve", comment="bulk", by="ana", proceed=False)
        finally:
            conn.set_trace_callback(None)
        assert list(out["run_id"]) == [*ids, ids[0]]
        assert list(out["outcome"][:40]) == ["decided"] * 40
        assert out["outcome"][40] in ("not_waiting", "taken")
        assert len(commits) <= 20, f"{len(commits)} transactions for 40 decisions"
        audit = wb.approvals()
        assert sorted(audit["run_id"]) == sorted(ids)
        assert set(wb.runs()["status"].astype(str)) == {"decided"}


def test_bulk_progress_is_reported_once_per_run_one_call_at_a_time(wb: ms.Workbench) -> None:
    """``wb.work(ids, on_progress=...)`` over many runs: one call per run, ``done``
    counting 1..n without gaps, never two calls at once."""
    ids = [r.id for r in paused(wb, 12)]
    wb.decide(ids, "approve", by="ana", proceed=False)
    calls: list[int] = []
    inside = threading.Lock()

    def progress(outcome: object, done: int, total: int) -> None:
        assert inside.acquire(blocking=False), "two progress calls at once"
        try:
            assert total == 12
            calls.append(done)
        finally:
            inside.release()

    out = wb.work(ids, on_progress=progress)
    assert calls == list(range(1, 13))
    assert list(out["run_id"]) == ids and set(out["outcome"]) == {"continued"}
