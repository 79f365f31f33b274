"""`make lab` serves the project root, opens notebooks/, and asks the internet for nothing."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
TOKEN = "labtest"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(port: int, path: str) -> tuple[int, str, str]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"token {TOKEN}"}
    )
    opener = urllib.request.build_opener(_NoRedirect())
    try:
        with opener.open(request, timeout=5) as reply:
            return reply.status, reply.headers.get("Location", ""), reply.read().decode()
    except urllib.error.HTTPError as exc:
        if exc.code in (301, 302, 303, 307):
            return exc.code, exc.headers.get("Location", ""), ""
        raise


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_lab_serves_the_root_opens_notebooks_and_turns_news_off(tmp_path: Path) -> None:
    """Products are reachable in Lab, / opens notebooks/, news and update checks are off."""
    port = _free_port()
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "HOME": str(tmp_path / "home"),
    }
    server = subprocess.Popen(
        ["make", "-s", "lab", f"PORT={port}", f"LAB_EXTRA=--IdentityProvider.token={TOKEN}"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                _get(port, "/api/status")
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    pytest.fail("jupyter lab did not start")
                time.sleep(0.2)
        status, _, body = _get(port, "/api/contents/products/hello_world")
        assert status == 200 and "manifest.yaml" in body
        status, location, _ = _get(port, "/")
        assert location.rstrip("?").endswith("/lab/tree/notebooks")
        _, _, body = _get(port, "/lab/api/settings/@jupyterlab/apputils-extension:notification")
        defaults = json.loads(body)["schema"]["properties"]  # overrides become the defaults
        assert defaults["fetchNews"]["default"] == "false"
        assert defaults["checkForUpdates"]["default"] is False
        _, _, body = _get(port, "/lab/api/news")
        assert json.loads(body)["news"] == []
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    assert not (tmp_path / "home" / ".jupyter").exists()
