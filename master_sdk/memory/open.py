"""Which store a workbench opens: one function reads every way of naming one.

``store=`` (``Workbench.open``, the CLI's ``--store``), ``store:`` in ``configs/app.yaml``
and ``MASTER_STORE`` all name a store the same ways:

=============================  ==========================================================
``storage/master.sqlite3``     a SQLite file; a relative path is under the project folder
``~/runs/master.sqlite3``      ``~`` is the user's home folder
``sqlite:///storage/x.db``     the same as a URL: three slashes, then a relative path
``sqlite:////abs/x.db``        four slashes: an absolute path
``memory://``                  a store in this process's memory (nothing survives it)
``postgresql://u@host:5432/db``  a PostgreSQL database (``pip install 'master-sdk[postgres]'``);
                               the password comes from the secrets file (``password_ref``
                               in ``configs/app.yaml``), never from the URL
a ``Store`` instance           used as it is (``Workbench.open(store=my_store)``)
=============================  ==========================================================

Anything else — an empty name, an unknown scheme, SQLite's ``:memory:`` or a ``file:``
URI, a directory, a read-only folder or mount — is one :class:`ConfigError` or
:class:`StoreError` line saying what to give instead; no ``sqlite3`` or ``OSError``
traceback reaches the user.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from master_sdk.errors import ConfigError

if TYPE_CHECKING:
    from master_sdk.config.opening import StoreSettings
    from master_sdk.config.settings import AppSettings
    from master_sdk.memory.store import CommitHook, Store

FORMS = (
    "a file path (storage/master.sqlite3), sqlite:///relative/path, sqlite:////absolute/path, "
    "memory:// or postgresql://user@host:port/database"
)
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):(.*)$", re.DOTALL)
_STORE_METHODS = ("commit", "load", "find_runs", "read_runs", "write_runs", "trace_table", "close")


def is_store(value: object) -> bool:
    """Whether ``value`` is a store object (it has the Store protocol's methods)."""
    return all(callable(getattr(value, name, None)) for name in _STORE_METHODS)


def postgres_url(spec: object) -> str | None:
    """The ``postgresql://`` URL ``spec`` names (``postgres://`` is written
    ``postgresql://``), None when it names another kind of store.

    Raises:
        ConfigError: the URL holds a password (the message shows it redacted), or has no
            host.
    """
    if not isinstance(spec, str):
        return None
    text = spec.strip()
    match = _SCHEME.match(text)
    if match is None or match.group(1).lower() not in ("postgresql", "postgres"):
        return None
    from urllib.parse import parse_qs, urlsplit

    parts = urlsplit("postgresql:" + match.group(2))
    query = parse_qs(parts.query)
    if parts.password is not None or "password" in query:
        shown = parts._replace(
            netloc=f"{parts.username or ''}:***@{parts.hostname or ''}"
            + (f":{parts.port}" if parts.port else ""),
            query="",
        ).geturl()
        raise ConfigError(
            f"store: {shown}: a store URL must not hold a password (URLs are logged and "
            "shown); put it in secrets/secrets.yaml and use password_ref in configs/app.yaml "
            "to name it (for example password_ref: postgres.password)",
            key="store",
        )
    if not parts.hostname:
        raise ConfigError(
            f"store: {text!r}: a PostgreSQL URL names its server: "
            "postgresql://user@host:port/database",
            key="store",
        )
    return parts.geturl()


def store_location(spec: str | Path, root: Path) -> Path | None:
    """The SQLite file a store name points at, absolute (None for ``memory://`` and for a
    ``postgresql://`` URL, which is no file).

    Raises:
        ConfigError: the name is empty, SQLite's ``:memory:``, a ``file:`` URI, or a URL
            of an unknown scheme or form.
    """
    text = str(spec) if isinstance(spec, Path) else spec
    if not isinstance(text, str):
        raise ConfigError(
            f"store: expected {FORMS} or a Store object, not {type(spec).__name__}",
            key="store",
        )
    text = text.strip()
    if not text:
        raise ConfigError(f"store: the store name is empty; give {FORMS}", key="store")
    if text == ":memory:":
        raise ConfigError(
            "store: ':memory:' is SQLite's private database, which every connection sees "
            "empty; use store='memory://' for a store in memory",
            key="store",
        )
    match = _SCHEME.match(text)
    if match is not None and len(match.group(1)) > 1:  # "C:" is a drive, not a scheme
        scheme, rest = match.group(1).lower(), match.group(2)
        if scheme == "file":
            raise ConfigError(
                f"store: {text!r}: SQLite file: URIs are not accepted (their options could "
                f"turn off locking or durability); give {FORMS}",
                key="store",
            )
        if not rest.startswith("//"):
            raise ConfigError(f"store: {text!r} is not a store name; give {FORMS}", key="store")
        rest = rest[2:]
        if scheme == "memory":
            if rest.strip("/"):
                raise ConfigError(
                    f"store: {text!r}: memory:// takes nothing after it; write memory://",
                    key="store",
                )
            return None
        if scheme == "sqlite":
            return _sqlite_url(text, rest, root)
        if scheme in ("postgresql", "postgres"):
            postgres_url(text)
            return None
        raise ConfigError(
            f"store: {text!r}: unknown store scheme '{scheme}://'; give {FORMS}", key="store"
        )
    path = Path(text).expanduser()
    return path if path.is_absolute() else root / path


def _sqlite_url(text: str, rest: str, root: Path) -> Path:
    # sqlite://HOST/... names a host, which a file has not; sqlite:///x is relative,
    # sqlite:////x absolute (the convention of SQLAlchemy and most tools)
    if not rest.startswith("/"):
        raise ConfigError(
            f"store: {text!r}: a sqlite URL has no host; write sqlite:///relative/path or "
            "sqlite:////absolute/path",
            key="store",
        )
    location = rest[1:]
    if "?" in location:
        raise ConfigError(
            f"store: {text!r}: sqlite URLs take no options; durability settings are in "
            "configs/app.yaml (synchronous, busy_timeout_ms)",
            key="store",
        )
    if not location.strip():
        raise ConfigError(f"store: {text!r} names no file; give {FORMS}", key="store")
    path = Path(location).expanduser()
    return path if path.is_absolute() else root / path


def open_store(
    spec: str | Path | Store | None,
    app: AppSettings | StoreSettings,
    root: Path,
    *,
    scrub: Callable[[Any], Any] | None = None,
    hooks: Sequence[CommitHook] = (),
    password: str | None = None,
) -> Store:
    """The store ``spec`` names (default: ``app.store``), opened with ``app``'s durability
    settings; ``scrub`` redacts everything written, ``hooks`` observe every commit (added
    to a given Store object's own hooks); ``password`` is a PostgreSQL role's password
    (from the secrets file, ``app.password_ref``).

    Raises:
        ConfigError: the name is not one of the accepted forms (see module docstring).
        StoreError: the location cannot hold a store (a directory, read-only, a network
            filesystem, not a store file, a newer schema); StoreBusy: locked too long.
    """
    if spec is not None and not isinstance(spec, str | Path):
        if not is_store(spec):
            raise ConfigError(
                f"store: expected {FORMS} or a Store object, not {type(spec).__name__}",
                key="store",
            )
        store: Store = spec
        store.hooks.extend(hooks)
        return store
    named = app.store if spec is None else spec
    url = postgres_url(named)
    if url is not None:
        from master_sdk.memory.postgres import PostgresStore

        return PostgresStore(
            url, password=password, scrub=scrub, hooks=hooks, identity=app.identity
        )
    if app.identity == "database":
        raise ConfigError(
            f"identity: database needs a PostgreSQL store (the database role is the "
            f"identity); store {named!s} is not one: set store: postgresql://... or "
            "identity: given in configs/app.yaml",
            key="identity",
        )
    location = store_location(named, root)
    if location is None:
        from master_sdk.memory.inmemory import InMemoryStore

        return InMemoryStore(scrub=scrub, hooks=hooks)
    from master_sdk.memory.sqlite import SQLiteStore

    return SQLiteStore(
        location,
        synchronous=app.synchronous,
        busy_timeout_ms=app.busy_timeout_ms,
        scrub=scrub,
        hooks=hooks,
        allow_network=app.allow_network_store,
        sync_step_starts=app.sync_step_starts,
    )
