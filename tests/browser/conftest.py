"""Fixtures for tests that drive JupyterLab in headless Chromium.

``lab_server`` is a throwaway JupyterLab on 127.0.0.1 serving ``lab_server.root_dir``
(one per test module); ``lab_page`` is a Chromium page on a fresh profile (one per
test) whose relative URLs resolve against it. Tests copy their notebook into the root,
then use the driver functions in :mod:`.lab`. Override the module-scoped ``lab_env``
fixture to pass environment variables to the server and its kernels.

On failure, a screenshot and the server log are kept in ``test-artifacts/browser/``.
"""

from __future__ import annotations

import shutil
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, sync_playwright

from .lab import ChromiumMissingError, LabServer, launch_chromium, require_chromium, start_lab

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS_DIR = REPO_ROOT / "test-artifacts" / "browser"

_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep each phase's report on the item so fixtures can tell a failed test."""
    report = yield
    item.stash.setdefault(_REPORTS, {})[report.when] = report
    return report


def _failed(request: pytest.FixtureRequest) -> bool:
    reports = request.node.stash.get(_REPORTS, {})
    return any(report.failed for report in reports.values())


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """``test-artifacts/browser/`` under the repository root, for screenshots and logs."""
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS_DIR


@pytest.fixture(scope="session")
def chromium_executable() -> Path:
    """The Chromium to drive; a missing one fails the test with the install command."""
    try:
        return require_chromium()
    except ChromiumMissingError as exc:
        message = str(exc)
    # Outside the except block, so the report shows the hint alone, not a chained traceback.
    pytest.fail(message, pytrace=False)


@pytest.fixture(scope="module")
def lab_env() -> dict[str, str]:
    """Extra environment for the JupyterLab server and its kernels (override per module)."""
    return {}


@pytest.fixture(scope="module")
def lab_server(
    tmp_path_factory: pytest.TempPathFactory, lab_env: dict[str, str]
) -> Iterator[LabServer]:
    """A JupyterLab server with isolated Jupyter directories, shared by a test module.

    Starting JupyterLab is the slowest step on a small machine, so a module's tests share
    one server; each test opens its own notebook in its own browser profile.
    """
    base = tmp_path_factory.mktemp("lab")
    server = start_lab(base / "root", base / "state", env=lab_env)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def lab_page(
    chromium_executable: Path,
    lab_server: LabServer,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Iterator[Page]:
    """A headless Chromium page on a fresh profile, pointed at ``lab_server``."""
    with sync_playwright() as playwright:
        context = launch_chromium(
            playwright,
            tmp_path / "chromium-profile",
            base_url=lab_server.url,
            executable=chromium_executable,
        )
        try:
            page = context.pages[0] if context.pages else context.new_page()
            yield page
            if _failed(request):
                ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=ARTIFACTS_DIR / f"{request.node.name}-failure.png")
                shutil.copyfile(lab_server.log_path, ARTIFACTS_DIR / f"{request.node.name}-lab.log")
        finally:
            context.close()
