"""A real ``master serve`` for tests: a project with tokens for every role, a free
loopback port, a subprocess, and a wait until it answers.

Users and roles of :func:`make_server_project` (``TOKENS``): vera (viewer), ron (runner),
rita (reviewer), ada (admin), otto (reviewer, but not among the policy's approvers);
ada's token is configured by its SHA-256 only. The policy says ``four_eyes: true``; the
approval step ``review`` may be decided by rita, ada and nina (the notebook's default
user), the input step also by ron.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from master_sdk.server.auth import token_hash
from tests.support.durability import REPO, driver_env

TOKENS: dict[str, str] = {
    "vera": "mst_viewer-token-0123456789abcdef",
    "ron": "mst_runner-token-0123456789abcdef",
    "rita": "mst_reviewer-token-0123456789abcd",
    "ada": "mst_admin-token-0123456789abcdef0",
    "otto": "mst_outsider-token-0123456789abcd",
}
ROLES: dict[str, str] = {
    "vera": "viewer",
    "ron": "runner",
    "rita": "reviewer",
    "ada": "admin",
    "otto": "reviewer",
}
SIGNING_KEY = "test-signing-key-0123456789abcdef-0123456789"
NOTEBOOK_USER = "nina"
API_KEY_SECRET = "sk-test-secret-value-abcdef0123456789"


def make_server_project(root: Path, *, tokens: bool = True, policy: str = "") -> Path:
    """A project with the hello_world product, team rules and (``tokens``) API tokens."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(REPO / "products" / "hello_world", root / "products" / "hello_world")
    (root / "configs").mkdir()
    (root / "configs" / "app.yaml").write_text(
        f"default_user: {NOTEBOOK_USER}\nsynchronous: NORMAL\n", encoding="utf-8"
    )
    (root / "configs" / "policy.yaml").write_text(
        "policy:\n  four_eyes: true\n"
        '  approvers: {review: [rita, ada, nina], "*": [rita, ada, nina, ron]}\n'
        "  max_input_bytes: 8192\n" + policy,
        encoding="utf-8",
    )
    (root / "secrets").mkdir()
    lines = ["openai:", f"  api_key: {API_KEY_SECRET}"]
    if tokens:
        lines += ["server:", f"  signing_key: {SIGNING_KEY}", "  tokens:"]
        for user, token in TOKENS.items():
            lines += [f"    - user: {user}", f"      roles: [{ROLES[user]}]"]
            if user == "ada":
                lines.append(f"      sha256: {token_hash(token)}")
            else:
                lines.append(f"      token: {token}")
    (root / "secrets" / "secrets.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    """A running ``master serve``: its base URL, process and project."""

    url: str
    proc: subprocess.Popen[str]
    root: Path
    store: Path

    def client(self, user: str | None = None, **kwargs: object) -> httpx.Client:
        """An HTTP client with ``user``'s token (none for ``None``)."""
        headers = {"Authorization": f"Bearer {TOKENS[user]}"} if user else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, **kwargs)


def serve_command(root: Path, store: Path, port: int, *extra: str) -> list[str]:
    """The ``master serve`` command line for a project."""
    return [
        sys.executable, "-m", "master_sdk.cli", "--root", str(root), "--store", str(store),
        "serve", "--port", str(port), *extra,
    ]  # fmt: skip


@contextmanager
def running_server(
    root: Path, store: Path, *extra: str, timeout_s: float = 60.0
) -> Iterator[Server]:
    """``master serve`` on a free port until the block ends (then stopped, and its
    stderr shown if it failed to start)."""
    port = free_port()
    proc = subprocess.Popen(
        serve_command(root, store, port, *extra),
        cwd=REPO,
        env=driver_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"master serve exited {proc.returncode}: {proc.stderr.read()}")
        try:
            if httpx.get(f"{url}/api/v1/openapi.json", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise TimeoutError(f"master serve did not answer on {url} in {timeout_s} s")
        time.sleep(0.1)
    try:
        yield Server(url, proc, root, store)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_status(client: httpx.Client, run_id: str, wanted: set[str], timeout_s: float = 30) -> dict:
    """Poll ``GET /api/v1/runs/{id}`` until its status is one of ``wanted``."""
    deadline = time.monotonic() + timeout_s
    while True:
        body = client.get(f"/api/v1/runs/{run_id}", params={"steps": False}).json()
        if body.get("status") in wanted:
            return body
        if time.monotonic() > deadline:
            raise TimeoutError(f"run {run_id} is {body.get('status')}, not one of {wanted}")
        time.sleep(0.05)
