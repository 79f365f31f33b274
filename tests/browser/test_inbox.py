"""The review inbox, driven in a real JupyterLab page by a reviewer's clicks.

The test process leaves eight runs of ``hello_world/greet`` paused in a SQLite store (two
of them already approved, so they wait for input); a notebook in JupyterLab opens the
inbox over that store with pages of four. In Chromium the reviewer filters on approvals,
selects all six matching (over two pages), types one comment, approves them, then opens
one of the input runs and answers its form. The store is then read back from the test's
own process: the decisions, the comment and the continuations are there.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Locator, Page, expect

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
PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"
COMMENT = "approved from the browser inbox"
AUDIENCE = "the review board"

NOTEBOOK_CELLS = [
    "import master_sdk as ms\n\nwb = ms.Workbench.open(store='inbox.sqlite3')",
    "inbox = wb.inbox(page_size=4)\ninbox",
]


def _notebook(path: Path, sources: list[str] = NOTEBOOK_CELLS) -> None:
    cells: list[dict[str, Any]] = [
        {
            "cell_type": "code",
            "execution_count": None,
            "id": f"inbox-{i}",
            "metadata": {},
            "outputs": [],
            "source": source,
        }
        for i, source in enumerate(sources)
    ]
    notebook = {
        "cells": cells,
        "metadata": {
            "kernelspec": {
                "display_name": "Python 3 (ipykernel)",
                "language": "python",
                "name": "python3",
            },
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path.write_text(json.dumps(notebook), encoding="utf-8")


def _paused_runs(root: Path) -> tuple[list[str], list[str]]:
    """Eight paused runs started by ``bob``: six wait for approval, two for input."""
    with ms.Workbench.open(root, store=root / "inbox.sqlite3") as wb:
        ids = [
            wb.run("hello_world/greet", inputs={"text": f"case {i}"}, by="bob").id for i in range(8)
        ]
        wb.decide(ids[:2], "approve", comment="earlier", by="carl")
    return ids[2:], ids[:2]


def _until(check: Callable[[], Any], what: str, deadline_s: float = 60.0) -> None:
    """Poll the store (written by the kernel, another process) until ``check()``."""
    end = time.monotonic() + deadline_s
    last: object = None
    while time.monotonic() < end:
        last = check()
        if last is True:
            return
        time.sleep(0.25)  # polling a file another process writes; bounded by the deadline
    raise AssertionError(f"{what} (last seen: {last})")


def _dropdown(page: Page, label: str) -> Locator:
    return (
        page.locator(f"{PANEL} .widget-dropdown")
        .filter(has=page.locator("label.widget-label", has_text=re.compile(rf"^\s*{label}\s*$")))
        .locator("select")
    )


@pytest.mark.browser
def test_filter_select_all_approve_and_open_one_in_the_browser_reach_the_store(
    lab_page: Page, lab_server: LabServer, artifacts_dir: Path
) -> None:
    """Filter on approvals, *Select all 6 matching* across two pages, one comment,
    *Approve selected*: six decisions by ``ana`` with that comment, each run continued to
    its input step; then *Open* one input run and submit its form: it completes. Every
    check reads the store from this process."""
    root = lab_server.root_dir
    for folder in ("products", "configs"):
        if not (root / folder).exists():
            shutil.copytree(REPO / folder, root / folder)
    approvals, inputs = _paused_runs(root)
    _notebook(root / "inbox.ipynb")

    open_notebook(lab_page, "inbox.ipynb")
    assert wait_kernel_ready(lab_page) == "Python 3 (ipykernel)"
    run_all(lab_page)

    select_all = lab_page.locator(f"{PANEL} button.jupyter-button", has_text="Select all")
    expect(select_all).to_have_text(re.compile("Select all 8 matching"), timeout=60_000)
    _dropdown(lab_page, "Kind").select_option(label="approval")
    expect(select_all).to_have_text(re.compile("Select all 6 matching"), timeout=30_000)
    expect(lab_page.get_by_text("page 1 of 2 · 6 waiting")).to_be_visible(timeout=30_000)
    select_all.click()
    expect(lab_page.get_by_text("6 selected of 6")).to_be_visible(timeout=30_000)

    fill_widget_text(lab_page, "By", "ana")
    fill_widget_text(lab_page, "Comment", COMMENT)
    click_widget_button(lab_page, "Approve selected")
    expect(lab_page.get_by_text("approve: 6 continued")).to_be_visible(timeout=60_000)

    def approved() -> Any:
        with ms.Workbench.open(root, store=root / "inbox.sqlite3") as wb:
            audit = wb.approvals()
            mine = audit[audit["by"] == "ana"]
            statuses = {r: wb.get_run(r, recover=False).status for r in approvals}
        if sorted(mine["run_id"]) != sorted(approvals) or set(mine["comment"]) != {COMMENT}:
            return f"audit by ana: {mine[['run_id', 'comment']].to_dict('records')}"
        return set(statuses.values()) == {"waiting_input"} or statuses

    _until(approved, "the six approvals and their continuations never reached the store")

    # the list now holds the eight input runs; open the first one and answer its form
    _dropdown(lab_page, "Kind").select_option(label="input")
    expect(select_all).to_have_text(re.compile("Select all 8 matching"), timeout=30_000)
    lab_page.locator(f"{PANEL} .widget-select-multiple select").select_option(index=[0])
    expect(lab_page.get_by_text("1 selected of 8")).to_be_visible(timeout=30_000)
    click_widget_button(lab_page, "Open")
    fill_widget_text(lab_page, "audience", AUDIENCE)
    click_widget_button(lab_page, "Submit")

    def completed() -> Any:
        # the oldest of the two runs approved before (which one depends on how their
        # continuations interleaved): one completes with the audience, the other waits
        with ms.Workbench.open(root, store=root / "inbox.sqlite3") as wb:
            runs = [wb.get_run(r, recover=False) for r in inputs]
        done = [r for r in runs if r.status == "completed"]
        ok = (
            len(done) == 1
            and done[0].output["audience"] == AUDIENCE
            and {r.status for r in runs} == {"completed", "waiting_input"}
        )
        return ok or [(r.id, r.status, r.output) for r in runs]

    try:
        _until(completed, "the opened run never completed with the typed audience")
    finally:
        screenshot(lab_page, artifacts_dir / "inbox-after-submit.png")


@pytest.mark.browser
def test_a_watching_inbox_in_the_browser_shows_runs_paused_by_another_process(
    lab_page: Page, lab_server: LabServer, artifacts_dir: Path
) -> None:
    """``wb.inbox(every=0.5)`` in a JupyterLab kernel: runs paused afterwards by this test's
    own process (another process on the same store) appear in the page with no click."""
    root = lab_server.root_dir
    for folder in ("products", "configs"):
        if not (root / folder).exists():
            shutil.copytree(REPO / folder, root / folder)
    store = root / "watch.sqlite3"
    with ms.Workbench.open(root, store=store) as wb:
        wb.run("hello_world/greet", inputs={"text": "first"}, by="bob")
    cells = [
        "import master_sdk as ms\n\nwb = ms.Workbench.open(store='watch.sqlite3')",
        "inbox = wb.inbox(every=0.5)\ninbox",
    ]
    _notebook(root / "watch.ipynb", cells)

    open_notebook(lab_page, "watch.ipynb", workspace="watch")
    assert wait_kernel_ready(lab_page) == "Python 3 (ipykernel)"
    run_all(lab_page)
    select_all = lab_page.locator(f"{PANEL} button.jupyter-button", has_text="Select all")
    expect(select_all).to_have_text(re.compile("Select all 1 matching"), timeout=60_000)

    with ms.Workbench.open(root, store=store) as wb:
        for text in ("second", "third"):
            wb.run("hello_world/greet", inputs={"text": text}, by="cy")
    try:
        expect(select_all).to_have_text(re.compile("Select all 3 matching"), timeout=30_000)
        expect(lab_page.get_by_text("page 1 of 1 · 3 waiting")).to_be_visible(timeout=30_000)
    finally:
        screenshot(lab_page, artifacts_dir / "inbox-watching.png")
