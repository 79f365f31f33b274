"""Who is calling and what they may do: API tokens, roles, signed links and CSRF tokens.

Tokens live in the ``server:`` section of the secrets file (see
:mod:`master_sdk.config.server`). A presented token is hashed with SHA-256 and compared
with every configured hash in constant time, so neither the token nor the position of a
match leaks through timing. Roles:

========== ==========================================================================
``viewer``   read products, flows, runs, traces, pending items, experiments
``runner``   viewer, and start runs and submit inputs (services feeding a flow)
``reviewer`` viewer, and approve, reject, submit and reserve
``admin``    everything, and make approval links for other users
========== ==========================================================================

Team rules (``approvers``, ``four_eyes``, reservations) apply on top, to the token's user,
exactly as to a notebook user.

Signed links (``/review/...?link=...``) and CSRF tokens are HMAC-SHA256 over their
content with the signing key; a link names its user, its run (or ``*`` for the whole
list) and when it expires.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

ACTIONS_BY_ROLE: dict[str, frozenset[str]] = {
    "viewer": frozenset({"read"}),
    "runner": frozenset({"read", "start", "submit"}),
    "reviewer": frozenset({"read", "approve", "reject", "submit", "reserve"}),
    "admin": frozenset({"read", "start", "approve", "reject", "submit", "reserve", "link"}),
}
"""What each role may do; a caller may do what any of its roles may."""

TOKEN_PREFIX = "mst_"  # noqa: S105  # a prefix that makes tokens recognisable, no secret


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated caller: the user decisions are recorded under, and their roles."""

    user: str
    roles: tuple[str, ...]

    def may(self, action: str) -> bool:
        """Whether any of the caller's roles allows ``action``."""
        return any(action in ACTIONS_BY_ROLE.get(role, ()) for role in self.roles)


def token_hash(token: str) -> str:
    """The hex SHA-256 of a token, as the secrets file's ``sha256`` holds it."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    """A fresh random API token (``mst_`` and 43 URL-safe characters)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


class Tokens:
    """The configured tokens, by hash. ``open_access`` when none is configured: then the
    server serves loopback only and every caller is ``default_user`` with every role."""

    def __init__(self, config: Any, *, default_user: str) -> None:
        """``config``: the settings' ``server`` section (``wb.settings.server``)."""
        self._entries: list[tuple[bytes, Caller]] = []
        for entry in config.tokens:
            digest = (
                entry.sha256
                if entry.sha256 is not None
                else token_hash(entry.token.get_secret_value())
            )
            self._entries.append((bytes.fromhex(digest), Caller(entry.user, tuple(entry.roles))))
        self.default = Caller(default_user, tuple(ACTIONS_BY_ROLE))

    @property
    def open_access(self) -> bool:
        """True when no token is configured."""
        return not self._entries

    def users(self) -> set[str]:
        """Every configured user."""
        return {caller.user for _digest, caller in self._entries}

    def caller(self, token: str) -> Caller | None:
        """The caller a token stands for, or None. Every entry is compared (constant
        time per entry), whichever matches."""
        presented = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        found: Caller | None = None
        for digest, caller in self._entries:
            if hmac.compare_digest(presented, digest):
                found = caller
        return found

    def roles_of(self, user: str) -> tuple[str, ...]:
        """Every role any token of ``user`` holds (a link acts with these)."""
        if self.open_access:
            return self.default.roles if user == self.default.user else ()
        roles: list[str] = []
        for _digest, caller in self._entries:
            if caller.user == user:
                roles.extend(r for r in caller.roles if r not in roles)
        return tuple(roles)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class Link:
    """What a valid signed link grants: ``user`` may review ``run_id`` (``*``: every
    pending item) until ``expires`` (seconds since the epoch)."""

    user: str
    run_id: str
    expires: int

    def covers(self, run_id: str) -> bool:
        """Whether this link opens ``run_id``."""
        return self.run_id in ("*", run_id)


class LinkError(Exception):
    """A link or CSRF token is malformed, forged or expired (the message says which)."""


class Signer:
    """Signs and checks approval links and CSRF tokens with one key."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def _mac(self, purpose: str, body: bytes) -> bytes:
        return hmac.new(self._key, purpose.encode() + b"\0" + body, hashlib.sha256).digest()

    def link(self, user: str, run_id: str, *, minutes: float, now: float | None = None) -> str:
        """A link token for ``user`` on ``run_id`` (``*``: the list) valid ``minutes``."""
        expires = int((time.time() if now is None else now) + minutes * 60)
        body = json.dumps({"u": user, "r": run_id, "e": expires}, separators=(",", ":"))
        raw = body.encode("utf-8")
        return f"{_b64(raw)}.{_b64(self._mac('link', raw))}"

    def check_link(self, token: str, *, now: float | None = None) -> Link:
        """The link a token carries; :class:`LinkError` when forged, malformed or expired."""
        body, dot, mac = token.partition(".")
        if not dot or len(token) > 2048:
            raise LinkError("the link is malformed; ask for a new one")
        try:
            raw = _unb64(body)
            given = _unb64(mac)
        except (ValueError, TypeError):
            raise LinkError("the link is malformed; ask for a new one") from None
        if not hmac.compare_digest(given, self._mac("link", raw)):
            raise LinkError("the link's signature is not valid; ask for a new one")
        try:
            data = json.loads(raw)
            link = Link(str(data["u"]), str(data["r"]), int(data["e"]))
        except (ValueError, KeyError, TypeError):
            raise LinkError("the link is malformed; ask for a new one") from None
        if link.expires <= (time.time() if now is None else now):
            raise LinkError("the link has expired; ask for a new one")
        return link

    def csrf(self, session: str, run_id: str) -> str:
        """The CSRF token of a form on ``run_id`` shown to the holder of ``session``."""
        return _b64(self._mac("csrf", f"{session}\0{run_id}".encode()))

    def check_csrf(self, given: str, session: str, run_id: str) -> bool:
        """Whether ``given`` is the CSRF token of that session and run."""
        return hmac.compare_digest(given.encode(), self.csrf(session, run_id).encode())


def signer_for(config: Any) -> tuple[Signer, bool]:
    """The signer of the configured key, or of a random key (then False: links made now
    stop working when the process ends)."""
    if config.signing_key is not None:
        return Signer(config.signing_key.get_secret_value().encode("utf-8")), True
    return Signer(secrets.token_bytes(32)), False
