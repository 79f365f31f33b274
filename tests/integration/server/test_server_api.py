"""The API's behaviour on a real server: runs continue in the executor (202 + URL),
team rules apply to HTTP callers, ``by`` comes from the token, refusals are stable JSON
errors, responses are redacted, and request bodies are capped."""

from __future__ import annotations

import io
import json
from collections.abc import Callable

import pyarrow.ipc
import pytest

import master_sdk as ms
from tests.support.server import (
    API_KEY_SECRET,
    TOKENS,
    Server,
    make_server_project,
    serve_command,
    wait_status,
)


def test_a_run_started_and_decided_over_http_continues_in_the_executor(server: Server) -> None:
    """POST /runs answers 202 with the run's URL once it is stored; the run goes on to
    its pause; approve and submit answer 202 ``decided`` and the executor continues the
    run to its end."""
    with server.client("ada") as ada, server.client("rita") as rita:
        started = ada.post("/api/v1/runs", json={"flow": "hello_world/greet",
                                                  "inputs": {"text": "ship it"}})  # fmt: skip
        assert started.status_code == 202
        url = started.headers["location"]
        assert url == f"/api/v1/runs/{started.json()['run_id']}"
        run = wait_status(rita, started.json()["run_id"], {"waiting_approval"})
        assert run["waiting_for"]["prompt"] == "Send this text to the summariser?"
        assert run["waiting_for"]["show"] == {"text": "ship it"}
        decided = rita.post(f"{url}/approve", json={"comment": "fine"})
        assert decided.status_code == 202, decided.text
        assert decided.json()["status"] == "decided"
        assert decided.json()["by"] == "rita"
        run = wait_status(rita, run["run_id"], {"waiting_input"})
        assert run["waiting_for"]["schema"]["required"] == ["audience"]
        assert rita.post(f"{url}/submit", json={"data": {"audience": "board"}}).status_code == 202
        run = wait_status(rita, run["run_id"], {"completed"})
        assert run["output"]["audience"] == "board"
        full = rita.get(url).json()
        assert [s["step_id"] for s in full["steps"]] == ["echo", "review", "audience", "summary"]


def test_by_comes_from_the_token_never_from_the_body(
    server: Server, notebook: ms.Workbench, paused: Callable[..., str]
) -> None:
    """A body naming ``by`` is refused (422, field ``body.by``); the approval audit shows
    the token's user."""
    run_id = paused()
    with server.client("rita") as rita:
        refused = rita.post(f"/api/v1/runs/{run_id}/approve", json={"comment": "x", "by": "ada"})
        assert refused.status_code == 422
        assert refused.json()["error"]["errors"][0]["path"] == "body.by"
        approved = rita.post(f"/api/v1/runs/{run_id}/approve", json={"comment": "ok"})
        assert approved.status_code == 202
    audit = notebook.approvals()
    row = audit[audit["run_id"] == run_id].iloc[0]
    assert row["by"] == "rita"


@pytest.mark.parametrize(
    ("user", "start_by", "rule"),
    [("otto", "sam", "approvers"), ("ada", "ada", "four_eyes")],
)
def test_team_rules_apply_to_http_callers(
    server: Server, notebook: ms.Workbench, paused: Callable[..., str], user: str,
    start_by: str, rule: str,
) -> None:  # fmt: skip
    """A reviewer outside the policy's approvers, or the starter under ``four_eyes``, is
    refused with 403 ``decision_refused`` naming the rule; the run stays paused."""
    run_id = paused(by=start_by)
    with server.client(user) as client:
        response = client.post(f"/api/v1/runs/{run_id}/approve", json={})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "decision_refused"
    assert response.json()["error"]["rule"] == rule
    assert notebook.get_run(run_id, recover=False).status == "waiting_approval"


def test_a_reservation_over_http_holds_off_other_reviewers(
    server: Server, notebook: ms.Workbench, paused: Callable[..., str]
) -> None:
    """rita reserves; ada's approval is refused (rule ``reservation``), as is a notebook
    approval by nina; released, ada may approve."""
    run_id = paused()
    with server.client("rita") as rita, server.client("ada") as ada:
        held = rita.post(f"/api/v1/runs/{run_id}/reserve", json={"minutes": 10})
        assert held.json()["reserved_by"] == "rita"
        refused = ada.post(f"/api/v1/runs/{run_id}/approve", json={})
        assert refused.status_code == 403
        assert refused.json()["error"]["rule"] == "reservation"
        with pytest.raises(ms.DecisionRefused):
            notebook.get_run(run_id).approve(by="nina")
        assert ada.post(f"/api/v1/runs/{run_id}/reserve", json={"minutes": 1}).status_code == 403
        assert rita.post(f"/api/v1/runs/{run_id}/reserve", json={"minutes": 0}).status_code == 200
        assert ada.post(f"/api/v1/runs/{run_id}/approve", json={}).status_code == 202


def test_refusals_are_stable_json_errors(server: Server, paused: Callable[..., str]) -> None:
    """404 for an unknown run, flow or route; 409 ``not_waiting`` for the wrong action and
    ``already_resumed``-or-``not_waiting`` for a second decision; 422 with every failing
    field for invalid inputs, input and query values."""
    run_id = paused()
    with server.client("ada") as ada:
        for path in ("/api/v1/runs/nope", "/api/v1/flows/hello_world/nope", "/api/v1/nope",
                     "/api/v1/experiments/nope"):  # fmt: skip
            response = ada.get(path)
            assert response.status_code == 404, path
            assert response.json()["error"]["code"] == "not_found"
        wrong = ada.post(f"/api/v1/runs/{run_id}/submit", json={"data": {"audience": "x"}})
        assert wrong.status_code == 409
        assert wrong.json()["error"]["code"] == "not_waiting"
        assert ada.post(f"/api/v1/runs/{run_id}/approve", json={}).status_code == 202
        again = ada.post(f"/api/v1/runs/{run_id}/approve", json={})
        assert again.status_code == 409
        assert again.json()["error"]["code"] in ("already_resumed", "not_waiting")
        bad = ada.post("/api/v1/runs", json={"flow": "hello_world/greet",
                                             "inputs": {"text": "", "extra": 1}})  # fmt: skip
        assert bad.status_code == 422
        paths = {e["path"] for e in bad.json()["error"]["errors"]}
        assert paths == {"text", "(root)"} or len(paths) == 2, bad.json()
        query = ada.get("/api/v1/runs", params={"limit": "many"})
        assert query.status_code == 422
        assert query.json()["error"]["errors"][0]["path"] == "query.limit"
        json_type = {"content-type": "application/json"}
        not_json = ada.post("/api/v1/runs", content=b"{not json", headers=json_type)
        assert not_json.status_code == 422
        for response in (bad, query, not_json, wrong):
            assert "Traceback" not in response.text


def test_responses_are_redacted(server: Server) -> None:
    """Personal data and secret-file values given as input come back as placeholders, in
    the run, the pending list and the trace; a token never appears in any answer."""
    text = f"mail ana@example.com key {API_KEY_SECRET} token {TOKENS['rita']}"
    with server.client("ada") as ada:
        started = ada.post("/api/v1/runs", json={"flow": "hello_world/greet",
                                                  "inputs": {"text": text}})  # fmt: skip
        run = wait_status(ada, started.json()["run_id"], {"waiting_approval"})
        bodies = [
            json.dumps(run),
            ada.get("/api/v1/pending").text,
            ada.get(f"/api/v1/runs/{run['run_id']}/trace").text,
            ada.get(f"/api/v1/runs/{run['run_id']}/trace", params={"format": "csv"}).text,
        ]
        inputs = {TOKENS["rita"]: 1, "text": "x"}
        invalid = ada.post("/api/v1/runs", json={"flow": "hello_world/greet", "inputs": inputs})
        bodies.append(invalid.text)
    assert "<EMAIL>" in bodies[0] and "<SECRET>" in bodies[0]
    for body in bodies:
        assert "ana@example.com" not in body
        assert API_KEY_SECRET not in body
        assert TOKENS["rita"] not in body


def test_trace_as_arrow_ipc(server: Server, paused: Callable[..., str]) -> None:
    """``?format=arrow`` is an Arrow IPC stream with the trace frame's columns."""
    run_id = paused()
    with server.client("vera") as vera:
        response = vera.get(f"/api/v1/runs/{run_id}/trace", params={"format": "arrow"})
    assert response.headers["content-type"] == "application/vnd.apache.arrow.stream"
    table = pyarrow.ipc.open_stream(io.BytesIO(response.content)).read_all()
    assert {"run_id", "seq", "event", "step_id"} <= set(table.column_names)
    assert "approval_requested" in table.column("event").to_pylist()


def test_request_bodies_are_capped_in_size_and_depth(
    server: Server, paused: Callable[..., str]
) -> None:
    """A body over the cap is 413 unread; JSON nested deeper than user input may be, or
    too deep to parse, is 422; the run is untouched."""
    run_id = paused(input=True)
    with server.client("ada") as ada:
        url = f"/api/v1/runs/{run_id}/submit"
        big = ada.post(url, json={"data": {"audience": "x" * 100_000}})
        assert big.status_code == 413
        assert big.json()["error"]["code"] == "too_large"
        nested: object = "x"
        for _ in range(80):
            nested = [nested]
        deep = ada.post(url, json={"data": {"audience": nested}})
        assert deep.status_code == 422
        assert "deeper" in deep.json()["error"]["message"]
        abyss = ada.post(url, content=b'{"data": ' + b"[" * 5_000 + b"]" * 5_000 + b"}",
                         headers={"content-type": "application/json"})  # fmt: skip
        assert abyss.status_code == 422
        assert ada.get(f"/api/v1/runs/{run_id}").json()["status"] == "waiting_input"


def test_flows_list_their_input_schemas(server: Server) -> None:
    """``GET /flows`` gives each flow's inputs JSON Schema and steps."""
    with server.client("vera") as vera:
        flows = vera.get("/api/v1/flows").json()["flows"]
    greet = next(f for f in flows if f["ref"] == "hello_world/greet")
    assert greet["inputs"]["required"] == ["text"]
    assert [s["id"] for s in greet["steps"]] == ["echo", "review", "audience", "summary"]


def test_openapi_document_describes_every_endpoint(server: Server) -> None:
    """The OpenAPI document lists the API's paths and the bearer scheme."""
    import httpx

    doc = httpx.get(f"{server.url}/api/v1/openapi.json").json()
    assert {"/api/v1/runs", "/api/v1/runs/{run_id}/approve", "/api/v1/pending",
            "/api/v1/experiments/{name}"} <= set(doc["paths"])  # fmt: skip
    assert doc["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


def test_a_non_loopback_host_is_refused_without_tokens(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """``master serve --host 0.0.0.0`` with no token configured exits 1 and says how to
    configure tokens; it never listens."""
    import subprocess

    from tests.support.durability import REPO, driver_env

    root = make_server_project(tmp_path / "p", tokens=False)
    command = serve_command(root, tmp_path / "s.sqlite3", 8, "--host", "0.0.0.0")  # noqa: S104  # the address refused
    done = subprocess.run(command, cwd=REPO, env=driver_env(), capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip
    assert done.returncode == 1
    assert "refusing to serve on a non-loopback --host" in done.stderr
    assert "serving" not in done.stderr
    assert "master token" in done.stderr


def test_a_polled_view_follows_the_run_when_another_process_moves_it(
    server: Server, notebook: ms.Workbench, paused: Callable[..., str]
) -> None:
    """Polling a paused run (its view kept by the server) shows the new state as soon as
    the notebook decides it: steps and status both."""
    run_id = paused()
    with server.client("vera") as vera:
        first = vera.get(f"/api/v1/runs/{run_id}").json()
        assert vera.get(f"/api/v1/runs/{run_id}").json() == first
        assert first["steps"][-1]["status"] == "waiting_approval"
        notebook.get_run(run_id).approve("from the notebook", by="nina")
        after = vera.get(f"/api/v1/runs/{run_id}").json()
    assert after["status"] == "waiting_input"
    assert [s["status"] for s in after["steps"]][:2] == ["completed", "completed"]
