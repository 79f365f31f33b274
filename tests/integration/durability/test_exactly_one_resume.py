"""Exactly one resume: two processes deciding the same pause at the same moment.

Both processes load the paused run, then act. With the barrier, each announces when it
is about to write and waits until both are there, so both have read the same version of
the run and the compare-and-set on that version alone decides: one wins, the other gets
:class:`AlreadyResumed` and changes nothing. Without the barrier (``--plain``) they only
start together, as two analysts clicking at once would.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import master_sdk as ms
from master_sdk.memory.sqlite import SQLiteStore
from tests.support.durability import (
    all_exit,
    last_json,
    make_ledger_project,
    spawn,
    tally,
    wait_for,
)


def paused_run(root: Path, store: Path, ledger: Path, *, at: str) -> str:
    """A run of ``ledger/pause`` waiting for approval (``at="approve"``) or input."""
    with ms.Workbench.open(root, store=store) as wb:
        run = wb.run("ledger/pause", {"ledger": str(ledger)})
        if at == "submit":
            run.approve(by="setup")
        assert run.status == ("waiting_approval" if at == "approve" else "waiting_input")
        return run.id


def race(
    root: Path, store: Path, run_id: str, action: str, folder: Path, *flags: str
) -> list[dict[str, Any]]:
    """Two processes ``a`` and ``b`` doing ``action`` on the run at once; their reports."""
    folder.mkdir()
    procs = [spawn("race", root, store, run_id, action, folder, name, *flags) for name in "ab"]
    wait_for(
        lambda: all((folder / f"{name}.ready").exists() for name in "ab"),
        what="both processes to be ready",
    )
    (folder / "go").touch()
    outputs = all_exit(procs)
    results = [last_json(out) for out in outputs]
    assert all(r is not None for r in results), outputs
    return [r for r in results if r is not None]


@pytest.mark.parametrize("action", ["approve", "submit"])
def test_two_processes_resuming_the_same_pause_one_wins_the_other_changes_nothing(
    tmp_path: Path, action: str
) -> None:
    """Both read the paused run before either writes: exactly one succeeds, the other gets
    AlreadyResumed with a clear message, and the store holds one decision."""
    root = make_ledger_project(tmp_path / "project")
    store, ledger = tmp_path / "s.sqlite3", tmp_path / "ledger"
    run_id = paused_run(root, store, ledger, at=action)

    results = race(root, store, run_id, action, tmp_path / "barrier")
    outcomes = sorted(r["result"] for r in results)
    assert outcomes == ["already_resumed", "ok"], results
    winner = next(r for r in results if r["result"] == "ok")
    loser = next(r for r in results if r["result"] == "already_resumed")
    assert "was already resumed elsewhere" in loser["error"]
    assert "nothing was changed here" in loser["error"]
    # the loser re-read the store: the winner's state, its decision recorded and the run
    # possibly not yet continued (decided) or mid-way through `after`
    assert loser["status"] in ("decided", "running", "waiting_input", "completed")

    with ms.Workbench.open(root, store=store) as wb:
        run = wb.get_run(run_id)
        trace = run.trace()
        if action == "approve":
            assert run.status == "waiting_input"
            audit = wb.approvals()
            assert list(audit["by"]) == [winner["name"]]
            assert list(audit["comment"]) == [f"from {winner['name']}"]
            assert tally(ledger) == {"after": 1}
        else:
            assert run.status == "completed"
            received = trace[trace["event"] == "input_received"]
            assert list(received["attrs"].map(lambda a: a["by"])) == [winner["name"]]
            assert run.steps().set_index("step_id").loc["ask", "output"] == {"say": winner["name"]}
            assert tally(ledger) == {"after": 1, "done": 1}
        assert list(trace["seq"]) == list(range(1, len(trace) + 1))
        assert wb.store_info()["integrity"] == "ok"


def test_two_processes_approving_together_without_a_barrier_decide_once(tmp_path: Path) -> None:
    """Released at the same moment but otherwise unsynchronised, two approvals of the same
    pause still decide it once: the other process is told the run is no longer waiting
    (AlreadyResumed if it had read the pause, NotWaiting if it read after)."""
    root = make_ledger_project(tmp_path / "project")
    store, ledger = tmp_path / "s.sqlite3", tmp_path / "ledger"
    run_id = paused_run(root, store, ledger, at="approve")
    results = race(root, store, run_id, "approve", tmp_path / "plain", "--plain")
    outcomes = sorted(r["result"] for r in results)
    assert outcomes[1] == "ok" and outcomes[0] in ("already_resumed", "not_waiting"), results
    with ms.Workbench.open(root, store=store) as wb:
        assert len(wb.approvals()) == 1
        assert wb.get_run(run_id).status == "waiting_input"
    assert tally(ledger) == {"after": 1}


def test_the_loser_of_a_race_sees_the_winners_state_in_its_own_handle(tmp_path: Path) -> None:
    """A handle that loses the compare-and-set shows the stored state afterwards, not the
    state it tried to write (here: the other handle approves between this one's read and
    its write)."""
    root = make_ledger_project(tmp_path / "project")
    store, ledger = tmp_path / "s.sqlite3", tmp_path / "ledger"
    run_id = paused_run(root, store, ledger, at="approve")
    real = SQLiteStore(store)
    handles: list[ms.Run] = []

    class OtherWinsFirst:
        """The real store, except that before its first write the other handle approves."""

        def commit(self, *args: Any, **kwargs: Any) -> None:
            first = handles[0]
            if first.status == "waiting_approval":
                first.approve(by="ana")
            real.commit(*args, **kwargs)

        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

    with (
        ms.Workbench.open(root, store=store) as one,
        ms.Workbench.open(root, store=OtherWinsFirst()) as two,
    ):
        first = one.get_run(run_id)
        handles.append(first)
        second = two.get_run(run_id)
        with pytest.raises(ms.AlreadyResumed):
            second.approve(by="bo")
        assert first.status == "waiting_input"
        assert second.status == "waiting_input"  # its own attempt would read `running`
        assert second.waiting_for == first.waiting_for
        assert list(one.approvals()["by"]) == ["ana"]
    real.close()  # a store given to a workbench is closed by its owner
    assert tally(ledger) == {"after": 1}
