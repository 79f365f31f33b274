"""The ASGI application: the JSON API, the approval page, and what every response shares.

:func:`create_app` wires one :class:`~master_sdk.workbench.Workbench` (its store: SQLite
or PostgreSQL), the configured tokens, the link signer and the executor that continues
runs. Every refusal is a JSON error with a stable code (``errors.py``), never a
traceback; an unexpected error is logged (redacted) and answered ``500 internal`` with
no detail.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from master_sdk.errors import MasterError
from master_sdk.server.auth import Signer, Tokens, signer_for
from master_sdk.server.errors import HttpError, error_body, from_master_error, validation_errors
from master_sdk.server.executor import Executor
from master_sdk.server.limits import BodyLimits
from master_sdk.server.views import ViewCache

if TYPE_CHECKING:
    from jinja2 import Environment

    from master_sdk import Workbench

log = logging.getLogger("master_sdk.server")

#: Room for the JSON around an input (field names, a comment) over the policy's cap.
BODY_OVERHEAD = 16 * 1024


@dataclass
class ServerState:
    """What the handlers share (``app.state.master``)."""

    wb: Workbench
    tokens: Tokens
    signer: Signer
    signed_with_config_key: bool
    executor: Executor
    templates: Environment
    base_url: str = ""
    views: ViewCache = field(default_factory=ViewCache)
    decisions: Any = None  # the decisions' own thread limiter (anyio), set by create_app

    def link_for(self, user: str, run_id: str, *, minutes: float) -> dict[str, Any]:
        """A signed link to the approval page of ``run_id`` (``*``: the list)."""
        token = self.signer.link(user, run_id, minutes=minutes)
        path = "/review" if run_id == "*" else f"/review/{run_id}"
        from datetime import UTC, datetime, timedelta

        expires = datetime.now(UTC) + timedelta(minutes=minutes)
        return {
            "url": f"{self.base_url}{path}?link={token}",
            "user": user,
            "run_id": run_id,
            "expires_at": expires.isoformat(timespec="seconds"),
        }


def create_app(
    wb: Workbench,
    *,
    workers: int = 4,
    work_interval_s: float = 2.0,
    base_url: str = "",
    start_wait_s: float = 10.0,
) -> FastAPI:
    """The HTTP application over ``wb``.

    Args:
        wb: the workbench served (closed by its owner, after the app stops).
        workers: executor threads continuing runs.
        work_interval_s: seconds between passes continuing runs decided elsewhere (0: off).
        base_url: prefix of the links the API makes (``http://host:port``).
        start_wait_s: how long ``POST /runs`` waits for a free executor thread before
            answering ``503`` (``executor_busy``, with ``Retry-After``).

    Example:
        >>> app = create_app(ms.Workbench.open())   # doctest: +SKIP
        >>> uvicorn.run(app, host="127.0.0.1", port=8000)   # doctest: +SKIP
    """
    from master_sdk.server import api, page

    settings = wb.settings
    tokens = Tokens(settings.server, default_user=wb.user)
    signer, configured = signer_for(settings.server)
    state = ServerState(
        wb=wb,
        tokens=tokens,
        signer=signer,
        signed_with_config_key=configured,
        executor=Executor(
            wb, workers=workers, work_interval_s=work_interval_s, start_wait_s=start_wait_s
        ),
        templates=page.environment(),
        base_url=base_url.rstrip("/"),
    )
    app = FastAPI(
        title="master_sdk",
        summary="Runs, reviews and approvals of a master_sdk workbench.",
        version="1",
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/v1/docs",
        redoc_url=None,
    )
    import anyio

    state.decisions = anyio.CapacityLimiter(8)
    app.state.master = state
    app.include_router(api.router)
    app.include_router(page.router)
    _handlers(app, state)
    limit = settings.policy.max_input_bytes + BODY_OVERHEAD
    app.add_middleware(BodyLimits, max_bytes=limit)
    return app


def _handlers(app: FastAPI, state: ServerState) -> None:
    redact = state.wb.redact

    def respond(status: int, body: dict[str, Any], **headers: str) -> JSONResponse:
        return JSONResponse(redact(body), status_code=status, headers=headers or None)

    @app.exception_handler(HttpError)
    async def _http_error(_request: Request, exc: HttpError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
        return respond(exc.status, error_body(exc.code, exc.message, **exc.extra), **headers)

    @app.exception_handler(MasterError)
    async def _master_error(_request: Request, exc: MasterError) -> JSONResponse:
        status, body = from_master_error(exc)
        retry = str(getattr(exc, "retry_after_s", 1))
        headers = {"Retry-After": retry} if status == 503 else {}
        return respond(status, body, **headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        status, body = validation_errors(exc.errors(), redact)
        return respond(status, body)

    @app.exception_handler(StarletteHTTPException)
    async def _starlette(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed", 415: "unsupported_media"}
        code = codes.get(exc.status_code, "bad_request")
        message = "no such route" if exc.status_code == 404 else str(exc.detail)
        return respond(exc.status_code, error_body(code, message))

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, RecursionError | MemoryError):
            return respond(
                422, error_body("invalid_input", "the input is too large or too deeply nested")
            )
        log.error("unexpected error: %s: %s", type(exc).__name__, redact(str(exc)))
        return respond(500, error_body("internal", "the server failed; the log says why"))
