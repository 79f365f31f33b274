"""``master serve``: the workbench over HTTP for reviewers and services outside Jupyter
(DESIGN.md §14). An optional extra: ``pip install 'master-sdk[server]'`` (FastAPI and
uvicorn); nothing here imports them until a server is built.

* :mod:`~master_sdk.server.app` — :func:`create_app`, error handling, body caps.
* :mod:`~master_sdk.server.api` — the JSON API under ``/api/v1`` (OpenAPI at
  ``/api/v1/openapi.json``).
* :mod:`~master_sdk.server.page` — the approval page ``/review`` and ``/review/{run_id}``.
* :mod:`~master_sdk.server.auth` — tokens, roles, signed links and CSRF tokens.
* :mod:`~master_sdk.server.executor` — where runs started or decided over HTTP continue.
* :mod:`~master_sdk.server.serve` — :func:`serve`, what ``master serve`` calls.
"""

from __future__ import annotations

from typing import Any

INSTALL_HINT = "the HTTP server needs its extra: pip install 'master-sdk[server]'"


def require_extra() -> None:
    """Raise :class:`~master_sdk.errors.ConfigError` with the install command when
    FastAPI or uvicorn is missing."""
    from importlib.util import find_spec

    from master_sdk.errors import ConfigError

    missing = [name for name in ("fastapi", "uvicorn") if find_spec(name) is None]
    if missing:
        raise ConfigError(f"{' and '.join(missing)} not installed; {INSTALL_HINT}")


def create_app(*args: Any, **kwargs: Any) -> Any:
    """:func:`master_sdk.server.app.create_app`, after checking the extra is installed."""
    require_extra()
    from master_sdk.server.app import create_app as build

    return build(*args, **kwargs)
