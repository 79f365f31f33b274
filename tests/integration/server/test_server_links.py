"""The approval page's signed links and CSRF protection, on a real server: a valid link
signs the browser in for its page (cookie, link gone from the URL); expired, tampered,
forged and misdirected links are refused; forms without the right CSRF token, or posted
from another origin, change nothing."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

import master_sdk as ms
from master_sdk.server.auth import Signer
from tests.support.server import SIGNING_KEY, Server

SIGNER = Signer(SIGNING_KEY.encode())


def _link(server: Server, user: str, run_id: str, minutes: float = 10, now: float | None = None
          ) -> str:  # fmt: skip
    path = "/review" if run_id == "*" else f"/review/{run_id}"
    return f"{path}?link={SIGNER.link(user, run_id, minutes=minutes, now=now)}"


def _browser(server: Server) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=30, follow_redirects=False)


def _csrf(page: str) -> str:
    marker = 'name="csrf" value="'
    start = page.index(marker) + len(marker)
    return page[start : page.index('"', start)]


def test_a_link_signs_in_and_leaves_the_address_bar(
    server: Server, paused: Callable[..., str]
) -> None:
    """The link sets an HttpOnly, SameSite=Strict cookie for its page and redirects to
    the page without the link; the page shows the prompt, the shown value and the form."""
    run_id = paused(text="hello page")
    with _browser(server) as browser:
        arrive = browser.get(_link(server, "rita", run_id))
        assert arrive.status_code == 303
        assert arrive.headers["location"] == f"/review/{run_id}"
        cookie = arrive.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        assert f"path=/review/{run_id}" in cookie
        page = browser.get(f"/review/{run_id}")
        assert page.status_code == 200
        assert "Send this text to the summariser?" in page.text
        assert "hello page" in page.text
        assert "Signed in as rita" in page.text
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]


@pytest.mark.parametrize("how", ["expired", "tampered", "forged", "other_run", "no_token_user",
                                 "garbage"])  # fmt: skip
def test_bad_links_are_refused(server: Server, paused: Callable[..., str], how: str) -> None:
    """An expired link, one whose content or signature was changed, one signed with
    another key, one for another run, one for a user without a token, and garbage: 403,
    no cookie, and the page stays closed."""
    run_id = paused()
    good = SIGNER.link("rita", run_id, minutes=10)
    body, _dot, mac = good.partition(".")
    tokens = {
        "expired": SIGNER.link("rita", run_id, minutes=1, now=time.time() - 3600),
        "tampered": SIGNER.link("ada", run_id, minutes=10).partition(".")[0] + "." + mac,
        "forged": Signer(b"another key, same length.........").link("rita", run_id, minutes=10),
        "other_run": SIGNER.link("rita", paused(), minutes=10),
        "no_token_user": SIGNER.link("mallory", run_id, minutes=10),
        "garbage": "x" + body[1:] + ".zz",
    }
    with _browser(server) as browser:
        response = browser.get(f"/review/{run_id}", params={"link": tokens[how]})
        assert response.status_code == 403, response.text
        assert "set-cookie" not in response.headers
        assert browser.get(f"/review/{run_id}").status_code == 401
        reason = {"expired": "expired", "no_token_user": "no API token",
                  "other_run": "does not open this page"}.get(how, "link")  # fmt: skip
        assert reason in response.text


def test_a_form_needs_its_csrf_token_and_origin(
    server: Server, notebook: ms.Workbench, paused: Callable[..., str]
) -> None:
    """A post without the CSRF token, with another session's token, or from another
    origin is refused and the run stays paused; with them, the approval is recorded as
    the link's user and the run continues."""
    run_id, other = paused(), paused()
    with _browser(server) as browser, _browser(server) as second:
        browser.get(_link(server, "rita", run_id))
        csrf = _csrf(browser.get(f"/review/{run_id}").text)
        second.get(_link(server, "rita", other))
        foreign = _csrf(second.get(f"/review/{other}").text)
        url = f"/review/{run_id}"
        for data, headers in (
            ({"action": "approve"}, {}),
            ({"action": "approve", "csrf": foreign}, {}),
            ({"action": "approve", "csrf": csrf}, {"origin": "http://evil.example"}),
        ):
            refused = browser.post(url, data=data, headers=headers)
            assert refused.status_code == 403, refused.text
        assert httpx.post(f"{server.url}{url}", data={"action": "approve", "csrf": csrf}
                          ).status_code == 401  # fmt: skip
        assert notebook.get_run(run_id, recover=False).status == "waiting_approval"
        done = browser.post(url, data={"action": "approve", "csrf": csrf, "comment": "via page"})
        assert done.status_code == 303
        assert done.headers["location"] == f"{url}?done=approve"
        assert "Approved." in browser.get(done.headers["location"]).text
    audit = notebook.approvals()
    row = audit[audit["run_id"] == run_id].iloc[0]
    assert (row["by"], row["comment"]) == ("rita", "via page")


def test_the_input_form_validates_like_run_submit(
    server: Server, notebook: ms.Workbench, paused: Callable[..., str]
) -> None:
    """The input form is built from the step's JSON Schema; a blank required field is
    shown again with its error (422) and nothing is stored; a valid one is submitted."""
    run_id = paused(input=True)
    with _browser(server) as browser:
        browser.get(_link(server, "rita", run_id))
        page = browser.get(f"/review/{run_id}").text
        assert 'name="f:audience"' in page
        csrf = _csrf(page)
        bad = browser.post(f"/review/{run_id}", data={"action": "submit", "csrf": csrf,
                                                      "f:audience": "   "})  # fmt: skip
        assert bad.status_code == 422
        assert "must not be blank" in bad.text
        assert notebook.get_run(run_id, recover=False).status == "waiting_input"
        ok = browser.post(f"/review/{run_id}", data={"action": "submit", "csrf": csrf,
                                                     "f:audience": "the board"})  # fmt: skip
        assert ok.status_code == 303


def test_a_list_link_opens_the_pending_list_and_every_item(
    server: Server, paused: Callable[..., str]
) -> None:
    """A ``*`` link opens ``/review`` (every pending item, linked) and any item's page."""
    run_id = paused()
    with _browser(server) as browser:
        browser.get(_link(server, "ada", "*"))
        listing = browser.get("/review")
        assert listing.status_code == 200
        assert f'href="/review/{run_id}"' in listing.text
        assert browser.get(f"/review/{run_id}").status_code == 200


def test_the_api_makes_links_the_page_accepts(server: Server, paused: Callable[..., str]) -> None:
    """``POST /api/v1/runs/{id}/link`` returns a URL on this server that opens the page."""
    run_id = paused()
    with server.client("rita") as rita:
        made = rita.post(f"/api/v1/runs/{run_id}/link", json={"minutes": 5}).json()
    assert made["url"].startswith(f"{server.url}/review/{run_id}?link=")
    with _browser(server) as browser:
        assert browser.get(made["url"]).status_code == 303
        assert browser.get(f"/review/{run_id}").status_code == 200
