"""How a PostgreSQL store connects: the options its URL may carry, and what to say when a
connection pooler gets in the way.

Prepared statements are on by default: psycopg prepares a statement the fifth time a
connection runs it, and the server then keeps its plan, which halves the server's work per
commit. They are safe on a direct connection and behind PgBouncer 1.21 or later in
transaction mode (``max_prepared_statements`` above 0), which tracks them per client. Behind
an older pooler in transaction mode, add ``?prepare=off`` to the store URL: every statement
is then planned when it runs, and nothing lives in a server session.

    store: postgresql://ana@db.internal:6432/runs?prepare=off
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit

from master_sdk.errors import ConfigError

PREPARE_THRESHOLD = 5
_ON = {"on": True, "true": True, "1": True, "off": False, "false": False, "0": False}


def connection_options(url: str) -> tuple[str, bool]:
    """The URL to give the driver (this module's own options taken out) and whether
    statements may be prepared.

    Raises:
        ConfigError: ``prepare`` is not on or off.
    """
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    prepared = True
    kept = []
    for key, value in query:
        if key != "prepare":
            kept.append((key, value))
            continue
        if value.lower() not in _ON:
            raise ConfigError(
                f"store: {url}: prepare={value!r}; give prepare=on or prepare=off (off behind "
                "a PgBouncer older than 1.21 in transaction mode)",
                key="store",
            )
        prepared = _ON[value.lower()]
    return parts._replace(query=urlencode(kept)).geturl(), prepared


def pooler_hint(exc: BaseException) -> str:
    """What to do when the server lost a prepared statement (a pooler in transaction mode
    that does not track them gave this client another server connection)."""
    text = str(exc)
    if "prepared statement" in text and ("does not exist" in text or "already exists" in text):
        return (
            "; a connection pooler in transaction mode is mixing server connections: add "
            "?prepare=off to the store URL, or set max_prepared_statements in PgBouncer 1.21+"
        )
    return ""
