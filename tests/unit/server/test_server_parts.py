"""The server's parts without a server: lazy imports and the install hint, tokens and
their configuration, signed links, body depth, and forms from JSON Schema."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

import master_sdk as ms
from master_sdk.config.loader import load_settings
from master_sdk.errors import ConfigError
from master_sdk.governance.inputs import MAX_INPUT_DEPTH
from master_sdk.server import limits
from master_sdk.server.auth import Caller, LinkError, Signer, Tokens, new_token, token_hash
from master_sdk.server.forms import fields_of, parse_form
from master_sdk.server.serve import check_bind, is_loopback
from tests.support.durability import REPO, driver_env


def test_master_sdk_imports_neither_fastapi_nor_uvicorn() -> None:
    """``import master_sdk`` and ``import master_sdk.server`` load no web framework."""
    code = (
        "import sys, master_sdk, master_sdk.server, master_sdk.cli;"
        "print([m for m in ('fastapi', 'uvicorn', 'starlette') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60, env=driver_env(), cwd=REPO)  # fmt: skip
    assert out.stdout.strip() == "[]"


def test_master_serve_without_the_extra_says_how_to_install_it(tmp_path: Path) -> None:
    """With FastAPI missing, ``master serve`` exits 1 with the pip command."""
    code = (
        "import sys; sys.modules['fastapi'] = None;"  # as if it were not installed
        "from master_sdk.cli import main;"
        f"raise SystemExit(main(['--root', {str(REPO)!r}, '--store', "
        f"{str(tmp_path / 's.sqlite3')!r}, 'serve']))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, env=driver_env(), cwd=REPO, check=False)  # fmt: skip
    assert out.returncode == 1
    assert "pip install 'master-sdk[server]'" in out.stderr


def _project(tmp_path: Path, server: str) -> Path:
    (tmp_path / "configs").mkdir()
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "secrets.yaml").write_text(server, encoding="utf-8")
    return tmp_path


def test_tokens_are_compared_hashed_and_only_tokens_are_redacted(tmp_path: Path) -> None:
    """A token configured by value or by SHA-256 authenticates as its user; user and role
    names stay readable (not secrets); the token values and the signing key are
    redacted everywhere."""
    plain, hashed = new_token(), new_token()
    root = _project(tmp_path, f"""
server:
  signing_key: "{'k' * 40}"
  tokens:
    - {{user: reviewer-ana, roles: [reviewer]}}
    - {{user: admin-bo, roles: [admin, viewer], sha256: {token_hash(hashed)}}}
""".replace("- {user: reviewer-ana, roles: [reviewer]}",
            f"- {{user: reviewer-ana, roles: [reviewer], token: {plain}}}"))  # fmt: skip
    settings = load_settings(root, environ={})
    tokens = Tokens(settings.server, default_user="x")
    assert tokens.caller(plain) == Caller("reviewer-ana", ("reviewer",))
    assert tokens.caller(hashed) == Caller("admin-bo", ("admin", "viewer"))
    assert tokens.caller(plain + "x") is None
    assert not tokens.open_access
    assert plain in settings.secret_values and "k" * 40 in settings.secret_values
    for name in ("reviewer-ana", "reviewer", "admin", "viewer"):
        assert name not in settings.secret_values
    with ms.Workbench.open(root, store="memory://") as wb:
        assert wb.redact(f"{plain} reviewer-ana") == "<SECRET> reviewer-ana"


@pytest.mark.parametrize(
    ("entry", "key"),
    [
        ("- {user: a, roles: [boss], token: mst_0123456789abcdef}", "server.tokens.0.roles.0"),
        ("- {user: a, roles: [viewer]}", "server.tokens.0"),
        ("- {user: a, roles: [viewer], sha256: abc}", "server.tokens.0.sha256"),
        ("- {user: a, roles: [viewer], token: short}", "server.tokens.0"),
    ],
)
def test_a_bad_token_entry_names_the_file_and_key(tmp_path: Path, entry: str, key: str) -> None:
    """An unknown role, no token or hash, a malformed hash or a short token: ConfigError
    naming secrets.yaml and the key."""
    root = _project(tmp_path, f"server:\n  tokens:\n    {entry}\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(root, environ={})
    assert caught.value.key == key
    assert "secrets.yaml" in str(caught.value)


def test_links_carry_user_run_and_expiry_and_refuse_any_change() -> None:
    """A link opens its run (``*``: all) until it expires; a changed byte, another key or
    the past refuse it."""
    signer = Signer(b"k" * 32)
    token = signer.link("ana", "r1", minutes=5)
    link = signer.check_link(token)
    assert (link.user, link.run_id) == ("ana", "r1")
    assert link.covers("r1") and not link.covers("r2")
    assert signer.check_link(signer.link("ana", "*", minutes=5)).covers("r2")
    body, _dot, mac = token.partition(".")
    for bad in (body[:-2] + "AA." + mac, body + "." + mac[:-2] + "AA", "nodot", "a.b.c"):
        with pytest.raises(LinkError):
            signer.check_link(bad)
    with pytest.raises(LinkError, match="signature"):
        Signer(b"j" * 32).check_link(token)
    with pytest.raises(LinkError, match="expired"):
        signer.check_link(token, now=time.time() + 301)
    csrf = signer.csrf(token, "r1")
    assert signer.check_csrf(csrf, token, "r1")
    assert not signer.check_csrf(csrf, token, "r2")
    assert not signer.check_csrf(csrf, token + "x", "r1")


def test_roles_allow_what_the_table_says() -> None:
    """viewer reads; runner starts and submits; reviewer decides and reserves; admin all."""
    assert Caller("v", ("viewer",)).may("read") and not Caller("v", ("viewer",)).may("approve")
    runner = Caller("r", ("runner",))
    assert runner.may("start") and runner.may("submit") and not runner.may("approve")
    reviewer = Caller("r", ("reviewer",))
    assert reviewer.may("approve") and reviewer.may("reserve") and not reviewer.may("start")
    assert all(Caller("a", ("admin",)).may(a) for a in ("start", "approve", "link", "read"))


def test_loopback_is_served_without_tokens_and_nothing_else() -> None:
    """127.0.0.1, ::1 and localhost are loopback; 0.0.0.0 without tokens is refused."""
    assert all(is_loopback(h) for h in ("127.0.0.1", "::1", "localhost", "127.1.2.3"))
    assert not is_loopback("0.0.0.0") and not is_loopback("example.org")  # noqa: S104  # the address tested
    check_bind("127.0.0.1", tokens_configured=False)
    check_bind("0.0.0.0", tokens_configured=True)  # noqa: S104  # allowed with tokens
    with pytest.raises(ConfigError, match="non-loopback"):
        check_bind("0.0.0.0", tokens_configured=False)  # noqa: S104  # the address refused


def test_the_body_depth_cap_is_user_inputs() -> None:
    """The server refuses bodies at the nesting user input may have, measured without
    recursion at any depth."""
    assert limits.MAX_INPUT_DEPTH == MAX_INPUT_DEPTH
    deep: object = 1
    for _ in range(10_000):
        deep = {"a": [deep]}
    assert limits.json_depth(deep) == 20_000
    assert limits.json_depth({"a": [1, {"b": []}]}) == 4


def test_forms_from_json_schema_parse_back_to_data() -> None:
    """Every field kind turns its form text into the JSON value; empty optional fields
    are left out; a number box with letters is an error at its path."""
    schema = {
        "type": "object",
        "required": ["name", "count"],
        "properties": {
            "name": {"type": "string", "title": "Your name"},
            "count": {"type": "integer", "minimum": 0},
            "ratio": {"type": "number"},
            "ok": {"type": "boolean"},
            "level": {"enum": ["low", "high", 3]},
            "tags": {"type": "array", "items": {"enum": ["a", "b"]}},
            "lines": {"type": "array", "items": {"type": "string"}},
            "when": {"type": "string", "format": "date"},
            "address": {"type": "object", "properties": {"city": {"type": "string"}}},
            "free": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
        },
    }
    fields = fields_of(schema)
    kinds = {f.path: f.kind for f in fields}
    assert kinds == {"name": "text", "count": "integer", "ratio": "number", "ok": "checkbox",
                     "level": "select", "tags": "multiselect", "lines": "lines", "when": "date",
                     "address": "group", "free": "json"}  # fmt: skip
    assert fields[0].label == "Your name" and fields[0].required
    posted = {"f:name": ["Ana"], "f:count": ["3"], "f:ratio": [""], "f:ok": ["true"],
              "f:level": ["3"], "f:tags": ["a", "b"], "f:lines": ["x\n\ny "],
              "f:when": ["2026-12-05"], "f:address.city": ["Lyon"], "f:free": ["7"]}  # fmt: skip
    data, errors = parse_form(fields, posted)
    assert errors == []
    assert data == {"name": "Ana", "count": 3, "ok": True, "level": 3, "tags": ["a", "b"],
                    "lines": ["x", "y"], "when": "2026-12-05", "address": {"city": "Lyon"},
                    "free": 7}  # fmt: skip
    _data, errors = parse_form(fields, {"f:name": ["A"], "f:count": ["three"]})
    assert [(e.path, e.message) for e in errors] == [("count", "must be a whole number")]
