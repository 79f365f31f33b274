"""A notebook's ipywidgets, clicked in a real JupyterLab page, drive its kernel.

The stand-in notebook has the shape of the quickstart: a paused run with an Approve
button, then a form with an "audience" field and Submit. Its Submit handler writes what
the kernel received to the file named by ``STANDIN_OUT``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from .lab import (
    ChromiumMissingError,
    LabServer,
    click_widget_button,
    fill_widget_text,
    open_notebook,
    require_chromium,
    run_all,
    screenshot,
    wait_for_json,
    wait_kernel_ready,
)

NOTEBOOK = Path(__file__).parent / "fixtures" / "standin.ipynb"
AUDIENCE = "data engineers in Lyon"
TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def standin_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the stand-in's Submit handler writes what it received."""
    return tmp_path_factory.mktemp("standin") / "submitted.json"


@pytest.fixture(scope="module")
def lab_env(standin_out: Path) -> dict[str, str]:
    """Tell the stand-in's kernel where to write."""
    return {"STANDIN_OUT": str(standin_out)}


@pytest.mark.browser
def test_approve_then_submit_sends_typed_audience_to_kernel(
    lab_page: Page, lab_server: LabServer, standin_out: Path, artifacts_dir: Path
) -> None:
    """Approve, typing an audience and Submit, clicked in the page, reach the kernel."""
    name = lab_server.add_notebook(NOTEBOOK)
    open_notebook(lab_page, name)
    assert wait_kernel_ready(lab_page) == "Python 3 (ipykernel)"
    run_all(lab_page)

    click_widget_button(lab_page, "Approve")
    fill_widget_text(lab_page, "audience", AUDIENCE)
    click_widget_button(lab_page, "Submit")

    submitted = wait_for_json(standin_out)
    # The kernel's reply is rendered back into the page, not only written to disk.
    expect(lab_page.get_by_text(f"Submitted for {AUDIENCE!r}")).to_be_visible(timeout=TIMEOUT_MS)
    shot = screenshot(lab_page, artifacts_dir / "standin-submitted.png")
    assert submitted == {"approved": True, "audience": AUDIENCE}, f"screenshot: {shot}"


@pytest.mark.browser
def test_notebook_without_kernel_metadata_gets_kernel_from_select_dialog(
    lab_page: Page, lab_server: LabServer, tmp_path: Path
) -> None:
    """A notebook with no kernelspec opens the Select Kernel dialog; its default is taken."""
    bare = json.loads(NOTEBOOK.read_text())
    bare["metadata"] = {}
    source = tmp_path / "no-kernel.ipynb"
    source.write_text(json.dumps(bare))
    name = lab_server.add_notebook(source)

    open_notebook(lab_page, name)
    expect(lab_page.locator(".jp-Dialog").filter(has_text="Select Kernel")).to_be_visible(
        timeout=TIMEOUT_MS
    )
    assert wait_kernel_ready(lab_page) == "Python 3 (ipykernel)"


def test_missing_chromium_fails_with_install_command(tmp_path: Path) -> None:
    """A missing Chromium is an error that says how to install it, never a skip."""
    with pytest.raises(ChromiumMissingError, match=r"apt-get install -y chromium"):
        require_chromium(tmp_path / "no-such-chromium")
