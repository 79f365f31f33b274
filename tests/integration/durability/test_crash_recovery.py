"""A process killed (SIGKILL) in the middle of a step: detected, never silently repeated.

Each test starts a real process with ``sys.executable`` that runs a flow of the ``ledger``
product, waits until the ledger shows the step has started, kills it, and then looks at
the store from other processes (or this one). Every tool appends a line to the ledger
file, so the tests count what really ran.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import master_sdk as ms
from master_sdk.orchestrator.ownership import process_alive as owner_alive
from tests.support.durability import (
    REPO,
    abandon_mid_step,
    all_exit,
    driver_env,
    last_json,
    lines,
    make_ledger_project,
    run_driver,
    spawn,
    tally,
    wait_for,
)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A project with the ledger product and the platform policy's recovery limit at 2."""
    return make_ledger_project(
        tmp_path / "project",
        policy="policy:\n  auto_retry_idempotent: true\n  max_recoveries: 2\n",
    )


def kill_mid_step(root: Path, store: Path, ledger: Path, flow: str, gate: Path) -> None:
    """Start ``flow`` in a new process, wait until its ``slow`` step is running, SIGKILL it."""
    inputs = json.dumps({"ledger": str(ledger), "gate": str(gate)})
    proc = spawn("start", root, store, f"ledger/{flow}", inputs)
    wait_for(lambda: any(line.startswith("slow") for line in lines(ledger)), what="the step")
    proc.kill()
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def only_run(wb: ms.Workbench) -> str:
    (run_id,) = list(wb.runs()["run_id"])
    return str(run_id)


def test_a_step_killed_mid_way_is_interrupted_and_waits_for_a_human(
    root: Path, tmp_path: Path
) -> None:
    """A non-idempotent tool killed mid-step: the next process sees ``interrupted`` (at
    open, without running anything); only ``retry()`` runs the step again."""
    store, ledger, gate = tmp_path / "s.sqlite3", tmp_path / "ledger", tmp_path / "gate"
    kill_mid_step(root, store, ledger, "gated", gate)

    with ms.Workbench.open(root, store=store) as wb:
        assert list(wb.runs()["status"]) == ["interrupted"]
        run = wb.get_run(only_run(wb))
        assert run.status == "interrupted"
        assert run.error is not None and "step 'slow' was interrupted" in run.error
        assert tally(ledger) == {"before": 1, "slow": 1}  # opening ran nothing

        gate.touch()
        run.retry(by="ana")
        assert run.status == "completed"
        assert tally(ledger) == {"before": 1, "slow": 2, "after": 1}
        steps = run.steps().set_index("step_id")
        assert steps.loc["slow", "attempt"] == 2
        assert steps.loc["before", "attempt"] == 1
        events = list(run.trace()["event"])
        assert events.count("run_interrupted") == 1
        retried = run.trace().query("event == 'step_retried'").iloc[0]
        assert retried["attrs"]["by"] == "ana"


@pytest.mark.parametrize("decision", ["skip", "abort"])
def test_an_interrupted_step_can_be_skipped_with_an_output_or_the_run_aborted(
    root: Path, tmp_path: Path, decision: str
) -> None:
    """The other human decisions: ``skip(output=...)`` gives the step its output without
    running it and continues; ``abort()`` ends the run as aborted with the reason."""
    store, ledger, gate = tmp_path / "s.sqlite3", tmp_path / "ledger", tmp_path / "gate"
    kill_mid_step(root, store, ledger, "gated", gate)
    with ms.Workbench.open(root, store=store) as wb:
        run = wb.get_run(only_run(wb))
        if decision == "skip":
            run.skip({"name": "done by hand"}, by="ana")
            assert run.status == "completed"
            assert run.output == {"name": "done by hand"}
            assert run.steps().set_index("step_id").loc["slow", "status"] == "skipped"
            assert tally(ledger) == {"before": 1, "slow": 1, "after": 1}
        else:
            run.abort("not needed any more", by="ana")
            assert run.status == "aborted"
            assert run.ended
            assert run.error == "aborted by ana: not needed any more"
            assert tally(ledger) == {"before": 1, "slow": 1}
        with pytest.raises(ms.NotWaiting):
            run.retry()


def test_an_idempotent_tool_killed_mid_way_is_retried_on_reopen_with_the_same_key(
    root: Path, tmp_path: Path
) -> None:
    """A tool declared idempotent is retried by ``get_run`` in the next process, with the
    idempotency key ``run_id:step_id`` it had the first time; ``Workbench.open`` alone and
    ``get_run(recover=False)`` run nothing."""
    store, ledger, gate = tmp_path / "s.sqlite3", tmp_path / "ledger", tmp_path / "gate"
    kill_mid_step(root, store, ledger, "gated_keyed", gate)
    gate.touch()

    with ms.Workbench.open(root, store=store) as wb:
        run_id = only_run(wb)
        assert wb.get_run(run_id, recover=False).status == "interrupted"
    assert tally(ledger) == {"before": 1, "slow": 1}

    code, opened, err = run_driver("open", root, store, run_id)
    assert code == 0, err
    assert opened is not None and opened["status"] == "completed"
    slow = [line for line in lines(ledger) if line.startswith("slow")]
    assert slow == [f"slow key={run_id}:slow attempt=1", f"slow key={run_id}:slow attempt=2"]
    assert tally(ledger)["after"] == 1

    with ms.Workbench.open(root, store=store) as wb:
        run = wb.get_run(run_id)
        retried = run.trace().query("event == 'step_retried'")
        assert list(retried["attrs"].map(lambda a: (a["by"], a["recovery"]))) == [("recovery", 1)]


def test_a_tool_that_kills_its_process_each_time_fails_the_run_after_max_recoveries(
    root: Path, tmp_path: Path
) -> None:
    """No crash loop: a step recovered ``max_recoveries`` (2) times and killed again makes
    the run ``failed`` with the reason, and opening it once more runs nothing."""
    store, ledger = tmp_path / "s.sqlite3", tmp_path / "ledger"
    code, _, _ = run_driver(
        "start", root, store, "ledger/fatal", json.dumps({"ledger": str(ledger)})
    )
    assert code == -signal.SIGKILL
    with ms.Workbench.open(root, store=store) as wb:
        run_id = only_run(wb)
    for _ in range(2):  # each new process recovers the step, which kills it again
        code, _, _ = run_driver("open", root, store, run_id)
        assert code == -signal.SIGKILL
    assert tally(ledger) == {"before": 1, "boom": 3}

    code, opened, err = run_driver("open", root, store, run_id)
    assert code == 0, err
    assert opened is not None and opened["status"] == "failed"
    assert "max_recoveries is 2" in opened["error"]
    assert "step 'boom'" in opened["error"]
    with ms.Workbench.open(root, store=store) as wb:
        assert wb.get_run(run_id).status == "failed"
    assert tally(ledger) == {"before": 1, "boom": 3}


def test_two_processes_reopening_a_crashed_run_recover_it_once(root: Path, tmp_path: Path) -> None:
    """Two processes that both read the interrupted run and try to recover it at the same
    moment: the compare-and-set lets one retry the tool; the other changes nothing."""
    store, ledger, gate = tmp_path / "s.sqlite3", tmp_path / "ledger", tmp_path / "gate"
    kill_mid_step(root, store, ledger, "gated_keyed", gate)
    gate.touch()
    with ms.Workbench.open(root, store=store) as wb:  # marks it interrupted
        run_id = only_run(wb)
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    procs = [spawn("open", root, store, run_id, "--barrier", barrier, name) for name in "ab"]
    wait_for(
        lambda: all((barrier / f"{name}.ready").exists() for name in "ab"),
        what="both processes to reach their first write",
    )
    (barrier / "go").touch()
    outputs = all_exit(procs)
    results = [last_json(out) for out in outputs]
    assert all(r is not None for r in results), outputs
    assert tally(ledger) == {"before": 1, "slow": 2, "after": 1}
    with ms.Workbench.open(root, store=store) as wb:
        run = wb.get_run(run_id)
        assert run.status == "completed"
        assert list(run.trace()["event"]).count("step_retried") == 1
        assert wb.store_info()["integrity"] == "ok"


def test_a_keyboard_interrupt_is_interrupted_but_never_retried_automatically(
    root: Path, tmp_path: Path
) -> None:
    """Stopping a step by hand (KeyboardInterrupt) leaves it ``interrupted``; even an
    idempotent tool then waits for a human, since nobody crashed."""
    ledger = tmp_path / "ledger"
    with ms.Workbench.open(root, store=tmp_path / "s.sqlite3") as wb:
        with pytest.raises(KeyboardInterrupt):
            wb.run("ledger/halt", {"ledger": str(ledger)})
        run_id = only_run(wb)
        run = wb.get_run(run_id)
        assert run.status == "interrupted"
        assert "KeyboardInterrupt" in (run.error or "")
    assert tally(ledger) == {"stop": 1}


def test_a_step_abandoned_by_an_error_in_this_process_is_not_left_running(
    tmp_path: Path,
) -> None:
    """If a commit fails mid-run (another process held the store locked beyond the busy
    timeout), the run is not stranded as ``running`` while the kernel lives: reopening it
    in the same process shows it ``interrupted``, and it can be retried."""
    root = make_ledger_project(tmp_path / "project", app="busy_timeout_ms: 200\n")
    ledger, gate = tmp_path / "ledger", tmp_path / "gate"
    wb = ms.Workbench.open(root, store=tmp_path / "s.sqlite3")
    inputs = {"ledger": str(ledger), "gate": str(gate)}
    run_id = abandon_mid_step(wb, "ledger/gated", inputs, ledger=ledger, gate=gate, step="slow")
    run = wb.get_run(run_id)
    assert run.status == "interrupted"
    run.retry()
    assert run.status == "completed"
    assert tally(ledger) == {"before": 1, "slow": 2, "after": 1}
    wb.close()


def test_a_killed_process_not_yet_reaped_counts_as_dead() -> None:
    """A zombie (killed, not yet waited for by its parent) executes nothing: its runs are
    not considered owned any more."""
    code = (
        "import sys; from master_sdk.orchestrator.ownership import process_identity; "
        "print(process_identity(), flush=True); sys.stdin.readline()"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        env=driver_env(),
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    identity = proc.stdout.readline().strip()
    assert identity.split(":")[1] == str(proc.pid)
    assert owner_alive(identity)
    os.kill(proc.pid, signal.SIGKILL)
    wait_for(lambda: not owner_alive(identity), timeout=10, what="the process to die")
    assert Path(f"/proc/{proc.pid}").exists()  # still a zombie: nobody has waited for it
    proc.wait(timeout=10)
    assert not owner_alive(identity)


def master(root: Path, store: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The ``master`` command in a new process."""
    return subprocess.run(
        [sys.executable, "-m", "master_sdk.cli", "--root", str(root), "--store", str(store), *args],
        env=driver_env(),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("flow", ["gated", "gated_keyed"])
def test_a_killed_master_run_is_seen_and_recovered_from_the_command_line(
    root: Path, tmp_path: Path, flow: str
) -> None:
    """``master run`` killed mid-step: ``master runs`` lists the run interrupted; for a
    plain tool ``master show`` offers retry/skip/abort and ``master retry`` finishes it;
    for an idempotent one ``master show`` (like get_run) retries it by itself."""
    store, ledger, gate = tmp_path / "s.sqlite3", tmp_path / "ledger", tmp_path / "gate"
    proc = subprocess.Popen(
        [sys.executable, "-m", "master_sdk.cli", "--root", str(root), "--store", str(store),
         "run", f"ledger/{flow}", "-i", f"ledger={ledger}", "-i", f"gate={gate}"],
        env=driver_env(), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    wait_for(lambda: any(line.startswith("slow") for line in lines(ledger)), what="the step")
    proc.kill()
    proc.communicate(timeout=30)
    gate.touch()

    listed = master(root, store, "runs")
    assert listed.returncode == 0, listed.stderr
    assert "interrupted" in listed.stdout
    run_id = listed.stdout.splitlines()[1].split()[0]
    if flow == "gated":
        shown = master(root, store, "show", run_id)
        assert f"run {run_id} ledger/gated: interrupted" in shown.stdout
        assert f"next: master retry {run_id} | master skip {run_id} | master abort" in shown.stdout
        assert tally(ledger)["slow"] == 1
        retried = master(root, store, "retry", run_id, "--by", "ana")
        assert retried.returncode == 0, retried.stderr
        assert "completed" in retried.stdout.splitlines()[0]
    else:
        peek = master(root, store, "show", run_id, "--no-recover")
        assert "interrupted" in peek.stdout.splitlines()[0]
        assert tally(ledger)["slow"] == 1
        shown = master(root, store, "show", run_id)
        assert "completed" in shown.stdout.splitlines()[0], shown.stdout + shown.stderr
    assert tally(ledger) == {"before": 1, "slow": 2, "after": 1}
