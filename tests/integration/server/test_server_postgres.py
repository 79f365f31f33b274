"""``master serve`` on a PostgreSQL store (the throwaway server of the tests): a run
started, approved and answered over HTTP, seen by a notebook on the same database, and an
HTTP approval racing a notebook one with exactly one winner."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

import master_sdk as ms
from tests.support import postgres
from tests.support import server as support
from tests.support.server import make_server_project, wait_status


@pytest.fixture(scope="module")
def pg_server(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    url = postgres.fresh_url()
    root = make_server_project(tmp_path_factory.mktemp("serve-pg") / "project")
    original = support.serve_command

    def command(root: Path, _store: Path, port: int, *extra: str) -> list[str]:
        line = original(root, Path("unused"), port, *extra)
        line[line.index("--store") + 1] = url
        return line

    support.serve_command = command
    try:
        with support.running_server(root, Path("unused"), "--work-interval", "0.5") as srv:
            yield srv, url
    finally:
        support.serve_command = original


def test_a_run_over_http_on_postgresql(pg_server) -> None:  # type: ignore[no-untyped-def]
    """Start (ron), approve and answer (rita; four-eyes refuses ron) over HTTP; the
    notebook on the same database sees the completed run and rita's approval; a race of
    HTTP and notebook has one winner."""
    server, url = pg_server
    with server.client("ron") as ron, server.client("rita") as rita:
        start = {"flow": "hello_world/greet", "inputs": {"text": "on postgres"}}
        run_id = ron.post("/api/v1/runs", json=start).json()["run_id"]
        wait_status(rita, run_id, {"waiting_approval"})
        approved = rita.post(f"/api/v1/runs/{run_id}/approve", json={"comment": "pg"})
        assert approved.status_code == 202
        wait_status(rita, run_id, {"waiting_input"})
        answer = {"data": {"audience": "board"}}
        refused = ron.post(f"/api/v1/runs/{run_id}/submit", json=answer)  # ron started it
        assert refused.json()["error"]["rule"] == "four_eyes"
        assert rita.post(f"/api/v1/runs/{run_id}/submit", json=answer).status_code == 202
        wait_status(rita, run_id, {"completed"})
        with ms.Workbench.open(server.root, store=url) as wb:
            audit = wb.approvals()
            assert audit[audit["run_id"] == run_id].iloc[0]["by"] == "rita"
            raced = wb.run("hello_world/greet", {"text": "race"}, by="sam")
            handle = wb.get_run(raced.id, recover=False)
            gate = threading.Barrier(2)
            results: dict[str, object] = {}

            def over_http() -> None:
                gate.wait()
                results["http"] = rita.post(f"/api/v1/runs/{raced.id}/approve", json={}
                                            ).status_code  # fmt: skip

            def in_notebook() -> None:
                gate.wait()
                try:
                    handle.approve(by="nina")
                    results["notebook"] = "won"
                except ms.NotWaiting as exc:
                    results["notebook"] = type(exc).__name__

            threads = [threading.Thread(target=over_http), threading.Thread(target=in_notebook)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=60)
            assert (results["http"] == 202) != (results["notebook"] == "won"), results
            wait_status(rita, raced.id, {"waiting_input"})
            audit = wb.approvals()
            assert len(audit[audit["run_id"] == raced.id]) == 1
