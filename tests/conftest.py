"""Shared fixtures: throwaway projects with real files and real SQLite stores."""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import master_sdk as ms

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _no_network_models(block_network_models: object) -> Iterator[None]:
    """No test may reach a model beyond loopback (the plugin fails the test if one tries)."""
    yield


COMPONENTS = """
from __future__ import annotations

from pydantic import BaseModel

from master_sdk.authoring import AgentContext, AgentOutput, ToolContext, agent, tool


class Echoed(BaseModel):
    text: str


@tool
def echo(text: str) -> Echoed:
    return Echoed(text=text)


class Counted(BaseModel):
    n: int


@tool
def count(text: str) -> Counted:
    return Counted(n=len(text))


@tool(idempotent=True)
def keyed(text: str, ctx: ToolContext) -> dict:
    return {"key": ctx.idempotency_key, "text": text}


@tool
def boom(text: str) -> Echoed:
    raise RuntimeError(f"boom: {text}")


class Summary(AgentOutput):
    summary: str


@agent(model="default")
def summarizer(ctx: AgentContext, text: str) -> Summary:
    return Summary(summary=ctx.complete(f"Summarise: {text}").text)
"""


@dataclass
class Project:
    """A project folder under tmp_path with one product, ``demo``."""

    root: Path

    def flow(self, name: str, text: str) -> Path:
        path = self.root / "products" / "demo" / "flows" / f"{name}.yaml"
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
        return path

    def open(self, **kwargs: object) -> ms.Workbench:
        return ms.Workbench.open(self.root, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def project(tmp_path: Path) -> Project:
    """An empty demo product with tools echo/count/keyed/boom and agent summarizer."""
    root = tmp_path / "proj"
    product = root / "products" / "demo"
    (product / "flows").mkdir(parents=True)
    (root / "configs").mkdir()
    (product / "manifest.yaml").write_text("name: demo\nversion: '1.0'\n", encoding="utf-8")
    (product / "components.py").write_text(COMPONENTS, encoding="utf-8")
    return Project(root)


@pytest.fixture
def hello_root(tmp_path: Path) -> Path:
    """A copy of the repository's products/ and configs/ in a fresh folder."""
    root = tmp_path / "hello"
    shutil.copytree(REPO / "products", root / "products")
    shutil.copytree(REPO / "configs", root / "configs")
    return root


@pytest.fixture
def wb(hello_root: Path) -> Iterator[ms.Workbench]:
    """A workbench on the hello_world product with its own store."""
    bench = ms.Workbench.open(hello_root)
    yield bench
    bench.close()


@pytest.fixture(scope="session", autouse=True)
def _postgres_server() -> Iterator[None]:
    """The throwaway PostgreSQL server (tests/support/postgres.py), started on first use
    by a test that needs it, is stopped when the session ends."""
    from tests.support import postgres

    yield
    postgres.stop()
