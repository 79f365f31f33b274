"""One real ``master serve`` (a subprocess on a free loopback port) for this package's
tests, and a notebook-side workbench on the same SQLite store."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import master_sdk as ms
from tests.support.server import Server, make_server_project, running_server


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The server, with tokens for every role (``tests/support/server.py``)."""
    base = tmp_path_factory.mktemp("serve")
    root = make_server_project(base / "project")
    with running_server(root, base / "store.sqlite3", "--work-interval", "0.5") as srv:
        yield srv


@pytest.fixture(scope="session")
def notebook(server: Server) -> Iterator[ms.Workbench]:
    """A workbench in this process on the server's store (as a notebook would open it)."""
    with ms.Workbench.open(server.root, store=server.store) as wb:
        yield wb


@pytest.fixture
def paused(notebook: ms.Workbench) -> Callable[..., str]:
    """Start hello_world/greet (by sam, who has no token, unless told) and return the id
    of the run, paused for approval; ``input=True``: approved by nina, paused for input."""

    def make(*, by: str = "sam", text: str = "a text to review", input: bool = False) -> str:
        run = notebook.run("hello_world/greet", {"text": text}, by=by)
        assert run.status == "waiting_approval"
        if input:
            run.approve("fine", by="nina")
            assert run.status == "waiting_input"
        return run.id

    return make


def project_root(server: Server) -> Path:
    """The served project folder."""
    return server.root
