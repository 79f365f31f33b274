"""One vocabulary of run statuses: ``Run.ended`` agrees with what ``retry`` accepts."""

from __future__ import annotations

import pytest

import master_sdk as ms
from master_sdk.contracts.status import ENDED, PAUSED, RECOVERABLE, RUN_STATUSES, RunStatus
from tests.conftest import Project

BOOM = """
id: boom
inputs: {type: object, properties: {text: {type: string}}, required: [text]}
steps:
  - {id: a, type: tool, tool: echo, input: {text: "{{ inputs.text }}"}}
  - {id: b, type: tool, tool: boom, input: {text: "{{ inputs.text }}"}}
"""


def test_every_status_is_exactly_one_of_running_paused_recoverable_or_ended() -> None:
    """The ten statuses split into running or decided (an executor's business), paused,
    recoverable and ended with no overlap, and the vocabulary frames use is the enum's, in
    its order."""
    groups = [{RunStatus.RUNNING.value, RunStatus.DECIDED.value}, PAUSED, RECOVERABLE, ENDED]
    assert sorted(s for g in groups for s in g) == sorted(RUN_STATUSES)
    assert sum(len(g) for g in groups) == len(RUN_STATUSES) == len(RunStatus)
    assert {"completed", "rejected", "blocked", "aborted"} == ENDED
    assert {"interrupted", "failed"} == RECOVERABLE
    assert ms.RunStatus is RunStatus


def test_a_status_is_its_string_and_prints_like_one() -> None:
    """``run.status == "completed"`` keeps working, and notebooks show ``'completed'``."""
    assert RunStatus.COMPLETED == "completed"
    assert repr(RunStatus.COMPLETED) == "'completed'"
    assert f"{RunStatus.FAILED}" == "failed"
    assert RunStatus("interrupted").recoverable and not RunStatus("interrupted").ended


def test_a_failed_run_has_not_ended_and_can_be_retried_skipped_or_aborted(
    project: Project,
) -> None:
    """A step that raised leaves the run ``failed``: not ended, with the recovery form;
    retry runs the step again (a new attempt); abort ends it ``aborted``, after which it is
    ended and retry is refused."""
    project.flow("boom", BOOM)
    with project.open() as wb:
        run = wb.run("demo/boom", {"text": "x"})
        assert run.status == RunStatus.FAILED and isinstance(run.status, RunStatus)
        assert not run.ended
        assert type(run.form()).__name__ == "RecoveryForm"
        run.retry(by="ana")
        assert run.status == "failed"
        assert list(wb.steps(run.id, attempts=True).query("step_id == 'b'")["attempt"]) == [1, 2]
        run.abort("gave up", by="ana")
        assert run.status == "aborted" and run.ended
        with pytest.raises(ms.NotWaiting):
            run.retry()
        with pytest.raises(ms.NotWaiting):
            run.abort()
        assert set(wb.runs()["status"].cat.categories) >= {"aborted", "failed"}
        assert list(wb.runs(status="aborted")["run_id"]) == [run.id]


def test_ended_agrees_with_retry_for_every_status_a_run_reaches(project: Project) -> None:
    """For completed, rejected, blocked, failed and aborted runs: retry raises NotWaiting
    exactly when ``ended`` is True (a paused run is not retried either: it waits)."""
    project.flow("boom", BOOM)
    project.flow(
        "ok",
        """
        id: ok
        inputs: {type: object, properties: {text: {type: string}}, required: [text]}
        steps:
          - {id: a, type: tool, tool: echo, input: {text: "{{ inputs.text }}"}}
        """,
    )
    with project.open() as wb:
        runs = [wb.run("demo/ok", {"text": "x"}), wb.run("demo/boom", {"text": "x"})]
        aborted = wb.run("demo/boom", {"text": "y"}).abort(by="ana")
        runs.append(aborted)
        for run in runs:
            ended = run.ended
            try:
                run.retry(by="ana")
            except ms.NotWaiting:
                refused = True
            else:
                refused = False
            assert refused is ended, (run.status, ended)


def test_a_run_aborted_by_an_older_version_reads_as_aborted(project: Project) -> None:
    """Stores written before ``aborted`` was a status hold aborted runs as ``failed`` with
    the abort recorded: such a run reads ``aborted`` (ended), and retry is refused."""
    import sqlite3

    project.flow("boom", BOOM)
    with project.open() as wb:
        run_id = wb.run("demo/boom", {"text": "x"}).abort("old", by="ana").id
        path = wb.store_info()["path"]
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE runs SET status = 'failed' WHERE run_id = ?", (run_id,))
    conn.close()
    with project.open() as wb:
        run = wb.get_run(run_id)
        assert run.status == "aborted" and run.ended
        with pytest.raises(ms.NotWaiting):
            run.retry()
