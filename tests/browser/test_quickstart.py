"""The quickstart notebook, clicked through in a real JupyterLab page.

JupyterLab runs on a copy of the project (products/, configs/, the notebook). The cells that
answer the forms from code (tagged ``drives-form``) and those that need the answers
(``needs-answers``) are removed from the copy: here a person's clicks and typing do it.
The run must then be ``completed`` in the SQLite store, with the typed audience in its output.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

import master_sdk as ms

from .lab import (
    LabServer,
    click_widget_button,
    fill_widget_text,
    open_notebook,
    run_all,
    screenshot,
    wait_kernel_ready,
)

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "notebooks" / "01_quickstart.ipynb"
AUDIENCE = "data engineers in Lyon"
DROPPED_TAGS = {"drives-form", "needs-answers"}


@pytest.fixture(scope="module")
def kernel_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the notebook's kernel makes its temporary store (its TMPDIR)."""
    return tmp_path_factory.mktemp("kernel-tmp")


@pytest.fixture(scope="module")
def lab_env(kernel_tmp: Path) -> dict[str, str]:
    """Kernels put their temporary files where the test can find the store."""
    return {"TMPDIR": str(kernel_tmp)}


def _clicking_copy(lab_server: LabServer, tmp_path: Path) -> str:
    """Put the project into the served root and a copy of the notebook without the cells
    that answer the forms from code; return the notebook's path in the server."""
    root = lab_server.root_dir
    for folder in ("products", "configs"):
        if not (root / folder).exists():
            shutil.copytree(REPO / folder, root / folder)
    notebook = json.loads(QUICKSTART.read_text(encoding="utf-8"))
    notebook["cells"] = [
        cell
        for cell in notebook["cells"]
        if not DROPPED_TAGS & set(cell.get("metadata", {}).get("tags", []))
    ]
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
    (root / "notebooks").mkdir(exist_ok=True)
    copy = tmp_path / "01_quickstart.ipynb"
    copy.write_text(json.dumps(notebook), encoding="utf-8")
    return lab_server.add_notebook(copy, "notebooks/01_quickstart.ipynb")


def _completed_run(kernel_tmp: Path, deadline_s: float = 60.0) -> ms.Run:
    """Poll the kernel's store (read-only use of the public API) until its run completes."""
    end = time.monotonic() + deadline_s
    last = "no store yet"
    while time.monotonic() < end:
        stores = sorted(kernel_tmp.glob("master-quickstart-*/runs.sqlite3"))
        if stores:
            wb = ms.Workbench.open(REPO, store=stores[-1])
            try:
                runs = wb.runs()
                if len(runs) and runs.iloc[0]["status"] == "completed":
                    return wb.get_run(str(runs.iloc[0]["run_id"]))
                last = f"runs: {runs[['run_id', 'status']].to_dict('records')}"
            finally:
                wb.close()
        time.sleep(0.25)  # polling a file another process writes; bounded by the deadline
    raise AssertionError(f"the run never completed in the store ({last})")


@pytest.mark.browser
def test_quickstart_approve_type_and_submit_complete_the_stored_run(
    lab_page: Page, lab_server: LabServer, kernel_tmp: Path, tmp_path: Path, artifacts_dir: Path
) -> None:
    """Clicking Approve, typing an audience and clicking Submit finish the run in SQLite."""
    name = _clicking_copy(lab_server, tmp_path)
    open_notebook(lab_page, name)
    assert wait_kernel_ready(lab_page) == "Python 3 (ipykernel)"
    run_all(lab_page)

    click_widget_button(lab_page, "Approve")
    fill_widget_text(lab_page, "audience", AUDIENCE)
    click_widget_button(lab_page, "Submit")

    run = _completed_run(kernel_tmp)
    expect(lab_page.get_by_text(f"Summarise for {AUDIENCE}").first).to_be_visible(timeout=30_000)
    shot = screenshot(lab_page, artifacts_dir / "quickstart-completed.png")
    assert run.status == "completed", f"screenshot: {shot}"
    assert run.output["audience"] == AUDIENCE, f"screenshot: {shot}"
    assert AUDIENCE in run.output["summary"], f"screenshot: {shot}"
