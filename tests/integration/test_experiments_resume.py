"""Kill an experiment's process mid-way (SIGKILL, a real subprocess), then resume it.

The driver's model counts each call when the request arrives and when its reply is handed
back, so a call repeated on resume is classed by what the kill cut: a request in flight
(no reply yet: nothing to keep, asked again) or a reply already handed back whose record
was not yet committed (the window between the model's return and the kept reply's write).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from tests.support.durability import driver_env
from tests.support.experiment_driver import requests_log
from tests.support.experiments import open_triage

REPO = Path(__file__).resolve().parents[2]
N = 300
# what must be equal between a killed-and-resumed experiment and an uninterrupted one
USAGE = ["tokens_in", "tokens_out", "cost_usd"]
STABLE = ["case_key", "case_index", "status", "output.label", "output.confidence",
          "output.tag", "exact_label", "tokens_in", "tokens_out", "cost_usd", "error"]  # fmt: skip


def _driver(
    root: Path, name: str, log: Path, *extra: str, n: int = N, crash_point: str | None = None
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.support.experiment_driver", str(root), name, str(n),
         str(log), *extra],
        cwd=REPO,
        env=driver_env({"MASTER_CRASH_POINT": crash_point} if crash_point else None),
    )  # fmt: skip


def _lines(log: Path) -> list[str]:
    return log.read_text(encoding="utf-8").splitlines() if log.exists() else []


def _case_of(prompt: str) -> str:
    return f"c{prompt.rsplit(' ', 1)[-1]}"


def _kept_at_kill(root: Path, name: str) -> set[str]:
    """Case keys whose model reply the store holds after the kill (the reply's
    ``model_called`` event is committed with it, or with the step's result)."""
    with open_triage(root) as wb:
        tagged = wb.store.tagged_runs(name)
        trace = wb.traces(product="triage")
    called = set(trace.loc[trace["event"] == "model_called", "run_id"])
    return {key for key, run_id in tagged.items() if run_id in called}


def _clean_results(tmp_path: Path, n: int = N, *extra: str) -> pd.DataFrame:
    root = tmp_path / "clean"
    subprocess.run(
        [sys.executable, "-m", "tests.support.experiment_driver", str(root), "exp", str(n),
         str(tmp_path / "clean.log"), *extra],
        cwd=REPO, check=True, env=driver_env(),
    )  # fmt: skip
    with open_triage(root) as wb:
        return wb.experiment("exp").results


@pytest.mark.slow
def test_a_killed_experiment_resumes_without_losing_cases_or_asking_a_kept_reply_again(
    tmp_path: Path,
) -> None:
    """SIGKILL at about half; resume(): every case completes once; no reply the store kept
    is asked for again; a call is repeated only when the kill cut it mid-flight or before
    its reply's record was written; the results equal those of an uninterrupted run."""
    root = tmp_path / "killed"
    log = tmp_path / "calls.log"
    process = _driver(root, "exp", log)
    deadline = time.monotonic() + 120
    while len(_lines(log)) < N // 2:
        assert process.poll() is None, "the experiment ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    replied = Counter(_lines(log))
    requested = Counter(_lines(requests_log(log)))
    assert all(requested[p] >= n for p, n in replied.items())

    kept = _kept_at_kill(root, "exp")
    with open_triage(root) as wb:
        exp = wb.experiment("exp")
        assert exp.status == "interrupted"
        assert (exp.results["status"] == "completed").sum() < N

    resumed = _driver(root, "exp", log, "--resume")
    assert resumed.wait(120) == 0
    calls = Counter(_lines(requests_log(log)))
    assert set(calls) == set(Counter(_lines(log)))
    assert len(calls) == N  # every case's prompt was answered
    repeated = {p for p, n in calls.items() if n > 1}
    # the promise: a reply the store held when the process died is never asked again
    assert not {p for p in repeated if _case_of(p) in kept}
    assert all(calls[p] == 2 and requested[p] == 1 for p in repeated)
    mid_flight = {p for p in repeated if not replied[p]}
    unwritten = repeated - mid_flight  # handed back, killed before its record was written

    with open_triage(root) as wb:
        results = wb.experiment("exp").results
        assert (results["status"] == "completed").all()
        assert len(results) == N and results["run_id"].is_unique
        trace = wb.traces(product="triage")
    reused = int((trace["event"] == "model_call_reused").sum())
    print(f"killed after {sum(requested.values())} requests and {sum(replied.values())} "
          f"replies; repeated on resume: {len(mid_flight)} cut mid-flight, {len(unwritten)} "
          f"handed back but not yet written; {reused} kept replies reused")  # fmt: skip

    expected = _clean_results(tmp_path)
    # the same outputs, statuses, scores and errors for every case; the same usage for every
    # case but those whose request was reserved (maybe sent) when the process died: it
    # stays counted at its worst case (budgets hold across crashes), so those count more;
    # every case asked twice is one of them
    same = [c for c in STABLE if c not in USAGE]
    pd.testing.assert_frame_equal(results[same], expected[same])
    unconfirmed = set(trace.loc[trace["event"] == "model_call_unconfirmed", "run_id"])
    charged = set(results.loc[results["run_id"].isin(unconfirmed), "case_key"])
    assert {_case_of(p) for p in repeated} <= charged
    twice = results["case_key"].isin(charged)
    pd.testing.assert_frame_equal(results.loc[~twice, USAGE], expected.loc[~twice, USAGE])
    assert (results.loc[twice, "tokens_in"] >= expected.loc[twice, "tokens_in"]).all()


@pytest.mark.slow
def test_a_reply_committed_before_the_kill_is_reused_not_asked_again(tmp_path: Path) -> None:
    """The process dies right after a model reply is committed, before the agent sees it:
    resume() retries that step with the kept reply; the model is asked once per case,
    and the case's usage is what an uninterrupted run reports."""
    n = 12
    root = tmp_path / "killed"
    log = tmp_path / "calls.log"
    crashed = _driver(root, "exp", log, "--concurrency", "1", n=n, crash_point="after_reply@5")
    assert crashed.wait(120) == 86
    assert len(_lines(log)) == 5
    assert _driver(root, "exp", log, "--resume", n=n).wait(120) == 0
    calls = Counter(_lines(requests_log(log)))
    assert len(calls) == n and set(calls.values()) == {1}
    with open_triage(root) as wb:
        results = wb.experiment("exp").results
        trace = wb.traces(product="triage")
    reused = trace[trace["event"] == "model_call_reused"]
    assert len(reused) == 1 and reused["step_id"].tolist() == ["classify"]
    expected = _clean_results(tmp_path, n, "--concurrency", "1")
    pd.testing.assert_frame_equal(results[STABLE], expected[STABLE])


@pytest.mark.slow
def test_a_reply_killed_inside_its_commit_is_asked_again_once(tmp_path: Path) -> None:
    """What cannot be kept: the process dies inside the transaction writing a reply (the
    model had answered): nothing of it is stored, so resume() asks that one call again,
    once, and counts it at its worst case."""
    n = 12
    root = tmp_path / "killed"
    log = tmp_path / "calls.log"
    crashed = _driver(root, "exp", log, "--concurrency", "1", n=n, crash_point="commit:reply@5")
    assert crashed.wait(120) == 86
    assert _driver(root, "exp", log, "--resume", n=n).wait(120) == 0
    calls = Counter(_lines(requests_log(log)))
    assert len(calls) == n
    assert sorted(calls.values()) == [1] * (n - 1) + [2]
    with open_triage(root) as wb:
        results = wb.experiment("exp").results
        trace = wb.traces(product="triage")
    assert not (trace["event"] == "model_call_reused").any()
    assert (trace["event"] == "model_call_unconfirmed").sum() == 1
    assert (results["status"] == "completed").all()
