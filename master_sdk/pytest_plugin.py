"""A pytest plugin: the ``block_network_models`` fixture and ``--master-notebooks``.

Installed with master_sdk, pytest loads it by itself (the ``pytest11`` entry point); in a
checkout that is not installed, name it in the top-level ``conftest.py``::

    pytest_plugins = ["master_sdk.pytest_plugin"]

Then ask for the fixture in a test, or block network model calls in every test::

    @pytest.fixture(autouse=True)
    def _no_network_models(block_network_models):
        yield

``pytest --master-notebooks [PATHS]`` collects every ``*.ipynb`` under the paths as one test
each, run exactly as ``master test`` runs it (:mod:`master_sdk.notebook_tests`: a fresh
kernel, a throwaway store, deterministic mode, network model calls blocked, outputs
compared with the committed ones); a failure reports the cells and their diffs.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from master_sdk.testing import NetworkGuard, no_network_models

__all__ = ["block_network_models"]


@pytest.fixture
def block_network_models() -> Iterator[NetworkGuard]:
    """Fail the test if any model call tries to leave the machine.

    The call itself raises :class:`~master_sdk.testing.NetworkModelCallBlocked` before
    anything is sent; and because a flow turns that into a failed step the test might
    not look at, the test also fails at teardown, listing every refused call. Loopback
    servers (``127.0.0.1``, ``localhost``) stay reachable.
    """
    with no_network_models() as guard:
        yield guard
    if guard.blocked:
        pytest.fail(
            "network model calls were attempted in this test (blocked): "
            + "; ".join(guard.blocked),
            pytrace=False,
        )


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--master-notebooks",
        action="store_true",
        default=False,
        help="run *.ipynb files as master_sdk notebook tests (as `master test` does)",
    )


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    config = parent.config
    if file_path.suffix != ".ipynb" or not config.getoption("master_notebooks"):
        return None
    if ".ipynb_checkpoints" in file_path.parts:
        return None
    file: pytest.Collector = NotebookFile.from_parent(parent, path=file_path)
    return file


class NotebookFile(pytest.File):
    """A notebook, collected as one test."""

    def collect(self) -> Iterator[pytest.Item]:
        yield NotebookItem.from_parent(self, name=self.path.name)


class NotebookFailed(AssertionError):
    """The notebook's outputs differ from the committed ones (the report is the message)."""


class NotebookItem(pytest.Item):
    """Executes the notebook in isolation and compares it (see the module docstring)."""

    def runtest(self) -> None:
        from master_sdk.notebook_tests import check_notebook, format_report

        result = check_notebook(self.path)
        if not result.ok:
            raise NotebookFailed(format_report([result], root=self.config.rootpath))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, NotebookFailed):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"notebook: {self.path.name}"
