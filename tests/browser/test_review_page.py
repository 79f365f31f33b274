"""The approval page in real headless Chromium against a real ``master serve``: open a
signed link, read what is asked, approve with a comment, answer the input form, and find
every decision in the store under the link's user."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect, sync_playwright

import master_sdk as ms
from tests.support.server import Server, make_server_project, running_server, wait_status

from .lab import launch_chromium


@pytest.fixture(scope="module")
def review_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("review-page")
    root = make_server_project(base / "project")
    with running_server(root, base / "store.sqlite3", "--work-interval", "0.5") as server:
        yield server


@pytest.fixture
def page(chromium_executable: Path, review_server: Server, tmp_path: Path) -> Iterator[Page]:
    with sync_playwright() as playwright:
        context = launch_chromium(
            playwright, tmp_path / "profile", base_url=review_server.url,
            executable=chromium_executable,
        )  # fmt: skip
        try:
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()


@pytest.mark.browser
def test_approve_and_answer_through_the_page_in_chromium(
    review_server: Server, page: Page
) -> None:
    """A signed link opens the run's page (and leaves the address bar); Approve with a
    comment records rita's approval; the page then offers the input form built from the
    step's schema, a blank answer is refused at its field, and a real one completes the
    run."""
    server = review_server
    with ms.Workbench.open(server.root, store=server.store) as wb:
        run_id = wb.run("hello_world/greet", {"text": "Quarterly numbers"}, by="sam").id
    with server.client("rita") as rita:
        link = rita.post(f"/api/v1/runs/{run_id}/link", json={"minutes": 10}).json()["url"]

    page.goto(link)
    expect(page.locator("#prompt")).to_have_text("Send this text to the summariser?")
    expect(page.locator("#show")).to_contain_text("Quarterly numbers")
    assert "link=" not in page.url
    page.fill("#comment", "numbers checked")
    page.click("#approve")
    expect(page.locator("#message")).to_contain_text("Approved.")

    with server.client("rita") as rita:
        wait_status(rita, run_id, {"waiting_input"})
    with ms.Workbench.open(server.root, store=server.store) as wb:
        audit = wb.approvals()
        row = audit[audit["run_id"] == run_id].iloc[0]
        assert (row["by"], row["comment"], row["decision"]) == (
            "rita", "numbers checked", "approved"
        )  # fmt: skip

    page.reload()
    expect(page.locator("#prompt")).to_have_text("Who is the summary for?")
    page.fill('[name="f:audience"]', "   ")
    page.click("#submit")
    expect(page.locator(".err")).to_contain_text("must not be blank")
    page.fill('[name="f:audience"]', "the board")
    page.click("#submit")
    expect(page.locator("#message")).to_contain_text("Submitted.")

    with server.client("rita") as rita:
        done = wait_status(rita, run_id, {"completed"})
    assert done["output"]["audience"] == "the board"
    assert httpx.get(f"{server.url}/review/{run_id}").status_code == 401  # no cookie, no page
