"""How a PostgreSQL store connects: the options its URL may carry, whether statements may
be prepared, and how the pool tells a connection the server has dropped.

**Prepared statements.** psycopg prepares a statement the fifth time a connection runs it,
and the server then keeps its plan, which halves the server's work per commit. That is
safe on a direct connection, and behind PgBouncer 1.21 or later in transaction mode
(``max_prepared_statements`` above 0), which tracks them per client. Behind PgBouncer 1.18
(Debian 12's) or any pooler in transaction mode that does not, a client's next transaction
may land on another server connection: its statement is missing there ("prepared
statement "_pg3_0" does not exist"), or another client's statement of the same name is
("already exists") — and if the two happened to take the same parameters, the wrong
statement would run. So the store does not wait for an error: ``prepare`` in the URL is

- ``auto`` (the default): each new connection asks the server which socket it sees at the
  other end (``inet_client_port()``; for a unix socket, the server's ``port``). When that is
  not this connection's own socket, something sits between them (a pooler, or a proxy):
  statements are not prepared on that connection. Nothing else changes.
- ``off``: never prepared (every statement is planned when it runs; nothing lives in a
  server session).
- ``on``: always prepared (behind PgBouncer 1.21+ with ``max_prepared_statements``).

    store: postgresql://ana@db.internal:6432/runs?prepare=off

If the server still reports a lost prepared statement, the error says to add
``?prepare=off`` (:func:`pooler_hint`).

**Dropped connections.** A connection idle in the pool can be closed under it: the server
ended its backend (``pg_terminate_backend``, a restart, ``idle_session_timeout``), or a
pooler or load balancer dropped it (langgraph#5675, SSL connections dropped behind
poolers). Each is seen the same way: the server's goodbye or the end of the stream makes
the idle socket readable. :func:`pooled` looks (one ``poll`` with no wait, no round trip)
each time the pool hands a connection out; a readable idle socket is tested with an empty
query, and a dead connection is thrown away and replaced before anyone uses it. A
connection that dies silently (no goodbye, no reset: a cable pulled) is found by TCP
keepalives; libpq's ``keepalives_idle``, ``keepalives_interval`` and ``keepalives_count``
may be given in the URL.
"""

from __future__ import annotations

import os
import select
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from master_sdk.errors import ConfigError

if TYPE_CHECKING:
    import psycopg
    from psycopg_pool import ConnectionPool

    Conn = psycopg.Connection[tuple[Any, ...]]

PREPARE_THRESHOLD = 5
_ON = {"on": True, "true": True, "1": True, "off": False, "false": False, "0": False}


def connection_options(url: str) -> tuple[str, bool | None]:
    """The URL to give the driver (this module's own options taken out) and whether
    statements may be prepared (None: decided for each connection, see :class:`Prepare`).

    Raises:
        ConfigError: ``prepare`` is not on, off or auto.
    """
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    prepared: bool | None = None
    kept = []
    for key, value in query:
        if key != "prepare":
            kept.append((key, value))
            continue
        if value.lower() not in _ON and value.lower() != "auto":
            raise ConfigError(
                f"store: {url}: prepare={value!r}; give prepare=auto (the default), "
                "prepare=on or prepare=off (off behind a PgBouncer older than 1.21 in "
                "transaction mode)",
                key="store",
            )
        prepared = _ON.get(value.lower())
    return parts._replace(query=urlencode(kept)).geturl(), prepared


def behind_a_proxy(conn: Conn) -> bool:
    """Whether the server sees another socket than this connection's own at the other end
    (a pooler such as PgBouncer, or a proxy, relays the connection)."""
    row = conn.execute("SELECT inet_client_port(), current_setting('port')").fetchone()
    assert row is not None  # noqa: S101  # a SELECT without FROM gives one row
    seen_port, server_port = row
    with socket.socket(fileno=os.dup(conn.fileno())) as sock:
        local = sock.getsockname()
        unix = sock.family == socket.AF_UNIX
    if unix:
        # a unix socket both ends: the socket's name carries the port it was opened for
        return seen_port is not None or str(conn.info.port) != str(server_port)
    return seen_port is None or int(seen_port) != int(local[1])


class Prepare:
    """The pool's ``configure``: whether each new connection prepares statements.

    Args:
        given: ``prepare`` from the URL (None: auto, see the module docstring).
    """

    def __init__(self, given: bool | None) -> None:
        self.given = given
        self.proxied: bool | None = None  # what the last connection found (auto only)

    @property
    def on(self) -> bool:
        """Whether the store's connections prepare statements."""
        return self.given if self.given is not None else not self.proxied

    def threshold(self) -> int | None:
        return PREPARE_THRESHOLD if self.given is not False else None

    def __call__(self, conn: Conn) -> None:
        if self.given is None:
            self.proxied = behind_a_proxy(conn)
            if self.proxied:
                conn.prepare_threshold = None


def dropped(conn: Conn) -> bool:
    """Whether the server or the network closed this idle connection (see the module
    docstring); no round trip unless its socket has news."""
    if conn.closed or conn.broken:
        return True
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(conn.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
        if not poller.poll(0):
            return False
    elif not select.select([conn.fileno()], [], [], 0)[0]:  # Windows: no poll()
        return False
    try:
        conn.execute("")  # raises when the connection is gone
    except Exception:  # any failure here means the connection is unusable
        return True
    return conn.closed or conn.broken


@contextmanager
def pooled(pool: ConnectionPool[Any]) -> Iterator[Conn]:
    """``pool.connection()``, except that an idle connection the server or the network
    dropped is closed (the pool then opens another) and the next one is taken, at once:
    the pool's own ``check`` would back off a second, then two, between dead ones."""
    for _ in range(pool.max_size):
        with pool.connection() as conn:
            if not dropped(conn):
                yield conn
                return
            conn.close()
    with pool.connection() as conn:
        yield conn


def refusal(conninfo: str, kwargs: dict[str, Any]) -> str | None:
    """Why the server refuses a connection (the first line of the driver's error, which
    never holds the password), with what to do about TLS; None if it connects now. For the
    message of a pool that could not open, whose own error only says it timed out."""
    import psycopg

    try:
        psycopg.connect(conninfo, **kwargs).close()
    except psycopg.Error as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        text = lines[-1] if lines else type(exc).__name__
        if "no encryption" in text:
            text += " (the server accepts TLS connections only: add ?sslmode=require)"
        return text
    return None


def pooler_hint(exc: BaseException) -> str:
    """What to do when the server lost a prepared statement (a pooler in transaction mode
    that does not track them gave this client another server connection)."""
    text = str(exc)
    if "prepared statement" in text:  # missing, already there, or another's parameters
        return (
            "; a connection pooler in transaction mode is mixing server connections: add "
            "?prepare=off to the store URL, or set max_prepared_statements in PgBouncer 1.21+"
        )
    return ""
