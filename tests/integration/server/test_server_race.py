"""An HTTP approval and a notebook approval of the same paused run, at the same moment,
in two processes (the server and this one) on one SQLite store: exactly one wins, the
loser changes nothing, and the run is continued once."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import master_sdk as ms
from tests.support.server import Server, wait_status

RUNS = 16


def test_http_and_notebook_approvals_race_exactly_one_wins(
    server: Server, notebook: ms.Workbench, paused: Callable[..., str]
) -> None:
    """For each of 16 runs, rita approves over HTTP while nina approves in the notebook,
    released together: one 202 xor one notebook success per run, the other a 409 /
    ``AlreadyResumed`` (or ``NotWaiting``); one approval in the audit with the winner's
    name; the run reaches its input step once."""
    run_ids = [paused() for _ in range(RUNS)]
    handles = {run_id: notebook.get_run(run_id, recover=False) for run_id in run_ids}
    http_result: dict[str, int] = {}
    notebook_result: dict[str, str] = {}
    with server.client("rita") as rita:
        rita.get("/api/v1/me")  # connect first: both sides start from the same line

        for i, run_id in enumerate(run_ids):
            gate = threading.Barrier(2)
            # the notebook side waits 0-15 ms so that either side may be first (a request
            # takes milliseconds to reach the server): both orders are raced
            lag = (i % 8) * 0.002

            def over_http(run_id: str = run_id, gate: threading.Barrier = gate) -> None:
                gate.wait()
                response = rita.post(f"/api/v1/runs/{run_id}/approve", json={"comment": "http"})
                http_result[run_id] = response.status_code
                if response.status_code != 202:
                    assert response.json()["error"]["code"] in ("already_resumed", "not_waiting")

            def in_notebook(
                run_id: str = run_id, gate: threading.Barrier = gate, lag: float = lag
            ) -> None:
                gate.wait()
                time.sleep(lag)
                try:
                    handles[run_id].approve("notebook", by="nina")
                except ms.NotWaiting as exc:  # AlreadyResumed is a NotWaiting
                    notebook_result[run_id] = type(exc).__name__
                else:
                    notebook_result[run_id] = "won"

            threads = [threading.Thread(target=over_http), threading.Thread(target=in_notebook)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=60)

        for run_id in run_ids:
            wait_status(rita, run_id, {"waiting_input"})
    audit = notebook.approvals()
    winners = {"http": 0, "notebook": 0}
    for run_id in run_ids:
        http_won = http_result[run_id] == 202
        notebook_won = notebook_result[run_id] == "won"
        assert http_won != notebook_won, (run_id, http_result[run_id], notebook_result[run_id])
        rows = audit[audit["run_id"] == run_id]
        assert len(rows) == 1, rows
        assert rows.iloc[0]["by"] == ("rita" if http_won else "nina")
        winners["http" if http_won else "notebook"] += 1
        trace = notebook.traces(run_id=run_id)
        assert (trace["event"] == "approval_decided").sum() == 1
        assert ((trace["event"] == "step_started") & (trace["step_id"] == "audience")).sum() == 1
    print(f"winners over {RUNS} races: {winners}")
