"""Every role against every endpoint of the API, on a real server: no token and a wrong
token are 401, a role without the right is 403 ``forbidden`` and changes nothing, and a
role with it gets its answer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import master_sdk as ms
from tests.support.server import Server

# what each role may do (the README's table), written out independently of the server
MAY: dict[str, set[str]] = {
    "vera": {"read"},
    "ron": {"read", "start", "submit"},
    "rita": {"read", "approve", "reject", "submit", "reserve"},
    "ada": {"read", "start", "approve", "reject", "submit", "reserve", "link"},
}

# (method, path, body, right needed, status when allowed); {run}: a run paused for
# approval, {input}: one paused for input, {exp}: a stored experiment
ENDPOINTS: list[tuple[str, str, Any, str, int]] = [
    ("GET", "/api/v1/me", None, "read", 200),
    ("GET", "/api/v1/products", None, "read", 200),
    ("GET", "/api/v1/flows", None, "read", 200),
    ("GET", "/api/v1/flows/hello_world/greet", None, "read", 200),
    ("GET", "/api/v1/runs", None, "read", 200),
    ("GET", "/api/v1/runs/{run}", None, "read", 200),
    ("GET", "/api/v1/runs/{run}/trace", None, "read", 200),
    ("GET", "/api/v1/runs/{run}/trace?format=csv", None, "read", 200),
    ("GET", "/api/v1/runs/{run}/trace?format=arrow", None, "read", 200),
    ("GET", "/api/v1/pending", None, "read", 200),
    ("GET", "/api/v1/experiments", None, "read", 200),
    ("GET", "/api/v1/experiments/{exp}", None, "read", 200),
    ("POST", "/api/v1/runs", {"flow": "hello_world/greet", "inputs": {"text": "x"}}, "start", 202),
    ("POST", "/api/v1/runs/{run}/approve", {"comment": "ok"}, "approve", 202),
    ("POST", "/api/v1/runs/{run}/reject", {"comment": "no"}, "reject", 202),
    ("POST", "/api/v1/runs/{input}/submit", {"data": {"audience": "board"}}, "submit", 202),
    ("POST", "/api/v1/runs/{run}/reserve", {"minutes": 5}, "reserve", 200),
    ("POST", "/api/v1/runs/{run}/link", {}, "read", 200),
    ("POST", "/api/v1/runs/{run}/link", {"user": "otto"}, "link", 200),
]


@pytest.fixture(scope="module")
def experiment(notebook: ms.Workbench) -> str:
    """A small stored experiment (two cases, human steps answered)."""
    notebook.evaluate(
        "hello_world/greet",
        [{"text": "one"}, {"text": "two"}],
        name="roles-exp",
        answers={"review": "approve", "audience": {"audience": "board"}},
        progress=False,
    )
    return "roles-exp"


def _call(server: Server, user: str | None, method: str, path: str, body: Any,
          token: str | None = None) -> Any:  # fmt: skip
    with server.client(user) as client:
        if token is not None:
            client.headers["Authorization"] = f"Bearer {token}"
        return client.request(method, path, json=body)


@pytest.mark.parametrize(("method", "path", "body", "right", "ok"), ENDPOINTS,
                         ids=[f"{m} {p} {r}" for m, p, _b, r, _o in ENDPOINTS])  # fmt: skip
def test_every_role_against_an_endpoint(
    server: Server,
    notebook: ms.Workbench,
    paused: Callable[..., str],
    experiment: str,
    method: str,
    path: str,
    body: Any,
    right: str,
    ok: int,
) -> None:
    """No token or a wrong one: 401 with ``WWW-Authenticate``; a role without the right:
    403 ``forbidden`` and the run unchanged; a role with it: the endpoint's success."""
    for who, token in ((None, None), (None, "mst_not-a-configured-token-000000")):
        response = _call(server, who, method, path.format(run="x", input="x", exp="x"), body,
                         token)  # fmt: skip
        assert response.status_code == 401, response.text
        assert response.json()["error"]["code"] == "unauthenticated"
        assert response.headers["www-authenticate"] == "Bearer"
    for user, rights in MAY.items():
        run_id = paused()
        input_id = paused(input=True) if "{input}" in path else "none"
        url = path.format(run=run_id, input=input_id, exp=experiment)
        response = _call(server, user, method, url, body)
        if right in rights:
            assert response.status_code == ok, (user, response.text)
            if ok == 202:
                assert response.headers["location"] == response.json()["url"]
        else:
            assert response.status_code == 403, (user, response.text)
            assert response.json()["error"]["code"] == "forbidden"
            for rid, status in ((run_id, "waiting_approval"), (input_id, "waiting_input")):
                if rid != "none":
                    assert notebook.get_run(rid, recover=False).status == status


def test_me_names_the_token_user_and_roles(server: Server) -> None:
    """``GET /api/v1/me`` says whose token it is (ada's is configured by hash only)."""
    for user, role in (("vera", "viewer"), ("ada", "admin")):
        with server.client(user) as client:
            assert client.get("/api/v1/me").json() == {"user": user, "roles": [role]}
