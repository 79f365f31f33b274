"""Whether model providers may reach the network: a guard that tests switch on.

A provider that talks to a server calls :func:`check_network` with the URL it is about to
use, before anything leaves the process. Outside a guard the check does nothing. Inside
:func:`blocked_network` (what :func:`master_sdk.testing.no_network_models` and the
``block_network_models`` pytest fixture use) a call to any host other than a loopback
address raises :class:`NetworkModelCallBlocked` and is recorded on the guard, so a test
fails loudly even when the flow turned the error into a failed step.

The guard lives in a :class:`~contextvars.ContextVar`: it covers the code running in the
context that entered it (``asyncio`` tasks started there inherit it) and nothing else, so
two tests, or two threads, never see each other's guard.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from master_sdk.errors import MasterError

__all__ = [
    "NetworkGuard",
    "NetworkModelCallBlocked",
    "blocked_network",
    "check_network",
    "is_loopback",
]


class NetworkModelCallBlocked(MasterError, AssertionError):
    """A model call would have left the machine while network model calls are blocked.

    It derives from ``AssertionError`` because it only ever happens in a test, and it is
    not a ``ModelCallError``: the router never retries it.
    """


@dataclass
class NetworkGuard:
    """An active block on network model calls.

    Attributes:
        allow_loopback: let calls to ``127.0.0.0/8``, ``::1`` and ``localhost`` through
            (local test servers are not the network).
        blocked: one line per refused call, ``"<provider> -> <url>"``, oldest first.
    """

    allow_loopback: bool = True
    blocked: list[str] = field(default_factory=list)


_GUARD: ContextVar[NetworkGuard | None] = ContextVar("master_sdk_network_guard", default=None)


def is_loopback(url: str) -> bool:
    """True when ``url``'s host is ``localhost`` or a loopback IP address."""
    host = urlsplit(url).hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_network(url: str, *, provider: str) -> None:
    """Refuse a model call to ``url`` when the current context blocks network calls.

    Args:
        url: where the provider is about to send the request.
        provider: the provider's name, for the message.

    Raises:
        NetworkModelCallBlocked: a guard is active and ``url`` is not allowed by it.
    """
    guard = _GUARD.get()
    if guard is None or (guard.allow_loopback and is_loopback(url)):
        return
    guard.blocked.append(f"{provider} -> {url}")
    raise NetworkModelCallBlocked(
        f"{provider} model call to {url} blocked: network model calls are not allowed here "
        "(use master_sdk.testing.ScriptedModel, a fake model or a replay cassette in tests)"
    )


@contextmanager
def blocked_network(*, allow_loopback: bool = True) -> Iterator[NetworkGuard]:
    """Block network model calls in the current context until the block exits.

    Yields:
        The active :class:`NetworkGuard`; its ``blocked`` list shows what was refused.
    """
    guard = NetworkGuard(allow_loopback=allow_loopback)
    token = _GUARD.set(guard)
    try:
        yield guard
    finally:
        try:
            _GUARD.reset(token)
        except ValueError:  # exited in another context than it was entered in
            _GUARD.set(None)
