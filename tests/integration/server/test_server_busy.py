"""POST /runs when every executor thread is busy: a real ``master serve`` with one worker
thread, held by a run whose tool waits for a file the test writes. A start then waits a
bounded time and is refused with 503 and Retry-After, storing nothing."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.server import Server, make_server_project, running_server, wait_status

COMPONENTS = '''
from __future__ import annotations

import time
from pathlib import Path

from pydantic import BaseModel

from master_sdk.authoring import tool


class Released(BaseModel):
    waited: bool


@tool
def hold(release: str) -> Released:
    """Wait (at most a minute) until the file ``release`` exists."""
    deadline = time.monotonic() + 60
    while not Path(release).exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return Released(waited=Path(release).exists())
'''

FLOW = """
id: hold
inputs: {type: object, properties: {release: {type: string, minLength: 1}}, required: [release]}
steps:
  - {id: hold, type: tool, tool: hold, input: {release: "{{ inputs.release }}"}}
output: "{{ steps.hold.output }}"
"""


def start(client: httpx.Client, release: Path) -> httpx.Response:
    return client.post(
        "/api/v1/runs", json={"flow": "slow/hold", "inputs": {"release": str(release)}}
    )


@pytest.fixture(scope="module")
def busy_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``master serve --workers 1 --start-wait 0.5`` over a project with product ``slow``."""
    base = tmp_path_factory.mktemp("busy")
    root = make_server_project(base / "project")
    product = root / "products" / "slow"
    (product / "flows").mkdir(parents=True)
    (product / "manifest.yaml").write_text("name: slow\nversion: '1.0'\n", encoding="utf-8")
    (product / "components.py").write_text(COMPONENTS, encoding="utf-8")
    (product / "flows" / "hold.yaml").write_text(textwrap.dedent(FLOW).lstrip(), encoding="utf-8")
    extra = ("--workers", "1", "--start-wait", "0.5", "--work-interval", "0")
    with running_server(root, base / "store.sqlite3", *extra) as srv:
        yield srv


def test_a_start_while_every_executor_is_busy_is_refused_with_503_and_retry_after(
    busy_server: Server, tmp_path: Path
) -> None:
    """The one thread runs a held run; a second start answers 503 ``executor_busy`` with
    Retry-After instead of hanging, and stores no run; once the thread is free, a start
    is accepted again."""
    release = tmp_path / "release"
    with busy_server.client("ada") as ada:
        held = start(ada, release)
        assert held.status_code == 202
        try:
            refused = start(ada, release)
            assert refused.status_code == 503, refused.text
            assert refused.json()["error"]["code"] == "executor_busy"
            assert "nothing was stored" in refused.json()["error"]["message"]
            assert int(refused.headers["retry-after"]) >= 1
            listed = ada.get("/api/v1/runs", params={"product": "slow"}).json()
            assert [r["run_id"] for r in listed["runs"]] == [held.json()["run_id"]]
        finally:
            release.touch()
        done = wait_status(ada, held.json()["run_id"], {"completed"})
        assert done["output"] == {"waited": True}
        again = start(ada, release)
        assert again.status_code == 202
        assert wait_status(ada, again.json()["run_id"], {"completed"})["status"] == "completed"
