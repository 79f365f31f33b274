"""Refusals as JSON with a stable code: every error a caller can get, and its status.

Body: ``{"error": {"code": ..., "message": ..., "errors": [{"path", "message"}]?,
"rule": ...?}}``. Messages are redacted; no traceback ever leaves the server.

=====  =====================  ==============================================================
401    ``unauthenticated``    no token, or one that is not configured
403    ``forbidden``          the caller's roles do not allow this
403    ``decision_refused``   a team rule (``rule``: approvers, four_eyes, reservation, ...)
403    ``link_invalid``       an approval link forged, malformed or expired; a CSRF failure
404    ``not_found``          no such product, flow, run, experiment or route
409    ``already_resumed``    another reviewer or executor decided or continued it first
409    ``not_waiting``        the run is not paused for that
409    ``flow_changed``       the flow changed since the run started
409    ``flow_error``         the product or flow cannot be loaded
413    ``too_large``          the request body is over the cap
415    ``unsupported_media``  the body is not JSON (API) or a form (page)
422    ``invalid_input``      every failing field in ``errors`` (a path in the input given)
503    ``store_busy``         the store stayed locked; retrying is safe
503    ``executor_busy``      every executor thread stayed busy; nothing was started
=====  =====================  ==============================================================
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from master_sdk.errors import (
    AlreadyResumed,
    DecisionRefused,
    FlowChanged,
    FlowError,
    InputInvalid,
    MasterError,
    NotFound,
    NotWaiting,
    PolicyViolation,
    StoreBusy,
)


class ExecutorBusy(MasterError):
    """Every executor thread stayed busy while a run waited to start: nothing was stored,
    starting it again later is safe (``Retry-After`` says when)."""

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(message)


class HttpError(Exception):
    """A refusal the server decided on itself (auth, roles, limits)."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra
        super().__init__(message)


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    """The JSON body of a refusal."""
    return {"error": {"code": code, "message": message, **extra}}


def from_master_error(exc: MasterError) -> tuple[int, dict[str, Any]]:
    """The status and body for an error raised by the workbench."""
    message = str(exc)
    if isinstance(exc, InputInvalid):
        errors = [{"path": e.path, "message": e.message} for e in exc.errors]
        return 422, error_body("invalid_input", message, errors=errors)
    if isinstance(exc, DecisionRefused):
        return 403, error_body("decision_refused", message, rule=exc.rule)
    if isinstance(exc, AlreadyResumed):
        return 409, error_body("already_resumed", message)
    if isinstance(exc, NotWaiting):
        return 409, error_body("not_waiting", message)
    if isinstance(exc, FlowChanged):
        return 409, error_body("flow_changed", message)
    if isinstance(exc, PolicyViolation):
        return 403, error_body("policy_violation", message, rule=exc.rule)
    if isinstance(exc, NotFound):
        return 404, error_body("not_found", message)
    if isinstance(exc, FlowError):
        return 409, error_body("flow_error", message)
    if isinstance(exc, StoreBusy):
        return 503, error_body("store_busy", message)
    if isinstance(exc, ExecutorBusy):
        return 503, error_body("executor_busy", message)
    return 400, error_body("bad_request", message)


def validation_errors(
    errors: Sequence[dict[str, Any]], redact: Callable[[Any], Any]
) -> tuple[int, dict[str, Any]]:
    """A 422 for request validation errors (FastAPI's ``RequestValidationError``): every
    failing field as a dotted path (``body.inputs``, ``query.limit``); values never echoed."""
    out = []
    for error in errors:
        loc = [str(p) for p in error.get("loc", ())]
        out.append({"path": redact(".".join(loc)), "message": str(error.get("msg", "invalid"))})
    listed = "; ".join(f"{e['path']}: {e['message']}" for e in out)
    return 422, error_body("invalid_input", f"invalid request: {listed}", errors=out)
