"""Run the HTTP server: what ``master serve`` calls.

Binds to loopback by default. A non-loopback host is refused unless API tokens are
configured (without tokens every caller acts as the workbench user with every role,
which only the machine's own users may do).
"""

from __future__ import annotations

import ipaddress
import logging
import sys
from typing import TYPE_CHECKING

from master_sdk.errors import ConfigError
from master_sdk.server import require_extra

if TYPE_CHECKING:
    from master_sdk import Workbench

log = logging.getLogger("master_sdk.server")


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address or ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, *, tokens_configured: bool) -> None:
    """Refuse a non-loopback ``host`` when no token is configured."""
    if not is_loopback(host) and not tokens_configured:
        raise ConfigError(
            "refusing to serve on a non-loopback --host: no API token is configured, so "
            "every caller would act as the workbench user. Add tokens under `server:` in "
            "secrets/secrets.yaml (`master token USER --role reviewer` makes one), or "
            "serve on loopback (the default)",
            key="server.tokens",
        )


def serve(
    wb: Workbench,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 4,
    work_interval_s: float = 2.0,
    log_level: str = "warning",
    start_wait_s: float = 10.0,
) -> None:
    """Serve ``wb`` until interrupted (Ctrl-C or SIGTERM), then finish the continuations
    under way."""
    require_extra()
    check_bind(host, tokens_configured=bool(wb.settings.server.tokens))
    import uvicorn

    from master_sdk.server.app import create_app

    shown = f"[{host}]" if ":" in host else host
    app = create_app(
        wb, workers=workers, work_interval_s=work_interval_s, base_url=f"http://{shown}:{port}",
        start_wait_s=start_wait_s,
    )  # fmt: skip
    state = app.state.master
    if not state.signed_with_config_key:
        log.warning(
            "no server.signing_key in secrets/secrets.yaml: approval links made now stop "
            "working when this server stops"
        )
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,  # request lines would carry signed links in query strings
        server_header=False,
        proxy_headers=False,
        limit_concurrency=1024,
        timeout_keep_alive=30,  # pollers keep their connection between polls
        timeout_graceful_shutdown=30,
    )
    # The event loop answering polls holds the GIL most of the time under load; a decision
    # in a worker thread re-takes it after every SQLite call and would wait the default
    # 5 ms each time. This process only serves: hand the GIL over more often.
    sys.setswitchinterval(0.0005)
    # to stderr as it is (a command's stdout is redacted, which would hide the address)
    print(f"serving {wb.root} on http://{shown}:{port} (Ctrl-C stops)", file=sys.stderr,
          flush=True)  # fmt: skip
    try:
        uvicorn.Server(config).run()
    finally:
        state.executor.close()


def make_link(
    wb: Workbench,
    run_id: str,
    *,
    user: str,
    minutes: float = 60,
    base_url: str = "http://127.0.0.1:8000",
) -> str:
    """A signed approval-page link for ``user`` on ``run_id`` (``*``: the pending list),
    signed with ``server.signing_key`` (a server started with the same secrets file
    accepts it).

    Raises:
        ConfigError: no signing key is configured, or ``user`` has no token.
    """
    from master_sdk.server.auth import Tokens, signer_for

    config = wb.settings.server
    signer, configured = signer_for(config)
    if not configured:
        raise ConfigError(
            "links made outside the server need server.signing_key in "
            "secrets/secrets.yaml (at least 32 characters), the key the server signs with",
            key="server.signing_key",
        )
    if not Tokens(config, default_user=wb.user).roles_of(user):
        raise ConfigError(f"no API token is configured for user {user!r}", key="server.tokens")
    if run_id != "*":
        wb.get_run(run_id, recover=False)  # NotFound for an unknown run
    path = "/review" if run_id == "*" else f"/review/{run_id}"
    return f"{base_url.rstrip('/')}{path}?link={signer.link(user, run_id, minutes=minutes)}"
