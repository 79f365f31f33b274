"""``master token`` and ``master link`` in real processes: a token with the secrets entry
that authenticates it, and a link the running server accepts."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable

import httpx

from master_sdk.server.auth import token_hash
from tests.support.durability import REPO, driver_env
from tests.support.server import Server


def _master(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "master_sdk.cli", *args], cwd=REPO,
                          env=driver_env(), capture_output=True, text=True, timeout=120,
                          check=False)  # fmt: skip


def test_master_token_prints_a_token_and_its_secrets_entry() -> None:
    """The entry's sha256 is the printed token's; roles as given."""
    done = _master("token", "ana", "--role", "reviewer", "--role", "runner")
    assert done.returncode == 0, done.stderr
    token = re.search(r"\): (mst_\S+)", done.stdout)
    assert token is not None
    assert f"sha256: {token_hash(token.group(1))}" in done.stdout
    assert "- user: ana\n    roles: [reviewer, runner]" in done.stdout


def test_master_link_makes_a_link_the_server_accepts(
    server: Server, paused: Callable[..., str]
) -> None:
    """Signed with the configured key in another process, the link opens the page."""
    run_id = paused()
    done = _master("--root", str(server.root), "--store", str(server.store), "link", run_id,
                   "--user", "rita", "--minutes", "5", "--base-url", server.url)  # fmt: skip
    assert done.returncode == 0, done.stderr
    url = done.stdout.strip()
    assert url.startswith(f"{server.url}/review/{run_id}?link=")
    with httpx.Client(follow_redirects=False) as browser:
        assert browser.get(url).status_code == 303
        assert browser.get(f"{server.url}/review/{run_id}").status_code == 200
    unknown = _master("--root", str(server.root), "--store", str(server.store), "link", run_id,
                      "--user", "mallory")  # fmt: skip
    assert unknown.returncode == 1
    assert "no API token is configured for user 'mallory'" in unknown.stderr
