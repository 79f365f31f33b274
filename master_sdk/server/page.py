"""The approval page for people: ``/review`` (the pending list) and ``/review/{run_id}``.

Small server-rendered HTML, no JavaScript. A person arrives with a signed, expiring link
(``?link=...``, made by ``POST /api/v1/runs/{id}/link`` or ``master link``): the link is
checked, kept in an HttpOnly, SameSite=Strict cookie scoped to that page, and the browser
is sent to the same page without it (so the link leaves the address bar and history).
Forms carry a CSRF token bound to that cookie and the run; a post without it, with a
wrong one, or from another origin is refused. The decision is committed in the request
under the link's user, with the same team rules as everywhere, and the run continues in
the server's executor.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from master_sdk.errors import FieldError, InputInvalid, MasterError
from master_sdk.server.auth import Caller, Link, LinkError
from master_sdk.server.errors import from_master_error
from master_sdk.server.forms import FormField, fields_of, option_text, parse_form

if TYPE_CHECKING:
    from jinja2 import Environment

    from master_sdk.server.app import ServerState

COOKIE = "master_review"

router = APIRouter(prefix="/review", include_in_schema=False)


TEMPLATES = Path(__file__).parent / "templates"


def environment() -> Environment:
    """The page templates of ``templates/`` (autoescaped: every value is text)."""
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    env = Environment(
        loader=FileSystemLoader(TEMPLATES), autoescape=True, undefined=StrictUndefined
    )
    env.globals["text"] = option_text
    return env


def _state(request: Request) -> ServerState:
    state: ServerState = request.app.state.master
    return state


def _html(state: ServerState, title: str, body: str, *, user: str, message: str | None = None,
          bad: bool = False, status: int = 200) -> HTMLResponse:  # fmt: skip
    from markupsafe import Markup

    page = state.templates.get_template("page.html").render(
        title=title, body=Markup(body), user=user, message=state.wb.redact(message), bad=bad  # noqa: S704  # body is rendered by the autoescaping templates
    )  # fmt: skip
    return HTMLResponse(page, status_code=status, headers=_SECURITY)


_SECURITY = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # "no-referrer" makes browsers send Origin: null
    "Cache-Control": "no-store",
}


def _refused(state: ServerState, message: str, status: int = 403) -> HTMLResponse:
    return _html(state, "Not allowed", "", user="(nobody)", message=message, bad=True,
                 status=status)  # fmt: skip


def _cookies(request: Request) -> list[str]:
    """Every ``master_review`` cookie sent (one per page path a link was opened for)."""
    out = []
    for part in request.headers.get("cookie", "").split(";"):
        name, _eq, value = part.strip().partition("=")
        if name == COOKIE and value:
            out.append(value)
    return out


def _session(state: ServerState, request: Request, run_id: str) -> tuple[Caller, str] | str:
    """The caller of a page and the link token acting as its session; or why not."""
    problem = "open a link to this page (ask for one: POST /api/v1/runs/{id}/link)"
    for token in _cookies(request):
        try:
            link = state.signer.check_link(token)
        except LinkError as exc:
            problem = str(exc)
            continue
        if not link.covers(run_id):
            problem = "your link does not open this page; ask for a link to it"
            continue
        roles = state.tokens.roles_of(link.user)
        if not roles:
            problem = f"{link.user} has no API token any more; ask an admin"
            continue
        return Caller(link.user, roles), token
    return problem


def _arrive(state: ServerState, request: Request, path: str, run_id: str) -> Response | None:
    """A request carrying ``?link=``: check it, keep it in a cookie, drop it from the URL."""
    given = request.query_params.get("link")
    if given is None:
        return None
    try:
        link: Link = state.signer.check_link(given)
    except LinkError as exc:
        return _refused(state, str(exc))
    if not link.covers(run_id):
        return _refused(state, "this link does not open this page; ask for a link to it")
    if not state.tokens.roles_of(link.user):
        return _refused(state, f"{link.user} has no API token any more; ask an admin")
    response = RedirectResponse(path, status_code=303, headers={"Cache-Control": "no-store"})
    response.set_cookie(
        COOKIE,
        given,
        max_age=max(1, link.expires - int(time.time())),
        path=path,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.get("")
def review_list(request: Request) -> Response:
    state = _state(request)
    arrived = _arrive(state, request, "/review", "*")
    if arrived is not None:
        return arrived
    session = _session(state, request, "*")
    if isinstance(session, str):
        return _refused(state, session, 401)
    who, _token = session
    from master_sdk.server.views import records

    frame = state.wb.pending()
    body = state.templates.get_template("list.html").render(items=records(frame))
    return _html(state, "Waiting for a decision", body, user=who.user)


@router.get("/{run_id}")
def review_run(request: Request, run_id: str) -> Response:
    state = _state(request)
    if len(run_id) > 128:
        return _refused(state, "no such run", 404)
    arrived = _arrive(state, request, f"/review/{run_id}", run_id)
    if arrived is not None:
        return arrived
    session = _session(state, request, run_id)
    if isinstance(session, str):
        return _refused(state, session, 401)
    who, token = session
    done = request.query_params.get("done")
    message = {"approve": "Approved.", "reject": "Rejected.", "submit": "Submitted."}.get(
        done or ""
    )
    if message:
        message += " The run continues on the server."
    return _render_run(state, who, token, run_id, message=message)


def _render_run(
    state: ServerState,
    who: Caller,
    token: str,
    run_id: str,
    *,
    message: str | None = None,
    bad: bool = False,
    status: int = 200,
    posted: dict[str, list[str]] | None = None,
    errors: list[FieldError] = (),  # type: ignore[assignment]  # read only
) -> Response:
    try:
        run = state.wb.get_run(run_id, recover=False)
    except MasterError as exc:
        code, body = from_master_error(exc)
        return _refused(state, body["error"]["message"], code)
    waiting = run.waiting_for
    approval = str(run.status) == "waiting_approval"
    fields: list[FormField] = []
    if waiting is not None and not approval:
        fields = fields_of(waiting.get("schema") or {})
    by_path: dict[str, list[str]] = {}
    for error in errors:
        by_path.setdefault(error.path, []).append(error.message)
    unplaced = [e for e in errors if not any(f.path == e.path for f in _flat(fields))]
    if unplaced:
        extra = "; ".join(f"{e.path or '(form)'}: {e.message}" for e in unplaced)
        message = f"{message} {extra}" if message else extra
    env = state.templates

    def render(field: FormField) -> Any:
        from markupsafe import Markup

        html = env.get_template("field.html").render(
            field=field, posted=posted, errors=by_path, render=render
        )
        return Markup(html)  # noqa: S704  # rendered by the autoescaping template

    # what the template shows is redacted already (the run's properties, errors); a
    # refused form's own values are shown again, redacted like everything shown
    posted = None if posted is None else state.wb.redact(posted)
    page_body = env.get_template("run.html").render(
        run=run,
        waiting=waiting,
        approval=approval,
        show=json.dumps(waiting.get("show"), indent=2, ensure_ascii=False) if waiting else "",
        csrf=state.signer.csrf(token, run_id),
        comment=(posted or {}).get("comment", [""])[-1],
        fields=fields,
        render=render,
    )
    title = "Approval" if approval else ("Input" if waiting else "Run")
    return _html(
        state, title, page_body, user=who.user, message=message, bad=bad, status=status
    )


def _flat(fields: list[FormField]) -> list[FormField]:
    out: list[FormField] = []
    for field in fields:
        out.append(field)
        out.extend(_flat(field.children))
    return out


@router.post("/{run_id}")
async def decide(request: Request, run_id: str) -> Response:
    state = _state(request)
    if len(run_id) > 128:
        return _refused(state, "no such run", 404)
    session = _session(state, request, run_id)
    if isinstance(session, str):
        return _refused(state, session, 401)
    who, token = session
    origin = request.headers.get("origin")
    if origin is not None and origin != f"{request.url.scheme}://{request.url.netloc}":
        return _refused(state, "this form was sent from another site; refused")
    if "application/x-www-form-urlencoded" not in request.headers.get("content-type", ""):
        return _refused(state, "send the page's form", 415)
    raw = await request.body()
    try:
        posted = parse_qs(raw.decode("utf-8"), keep_blank_values=True, max_num_fields=500)
    except (UnicodeDecodeError, ValueError):
        return _refused(state, "the form could not be read", 422)
    csrf = (posted.get("csrf") or [""])[-1]
    if not state.signer.check_csrf(csrf, token, run_id):
        return _refused(state, "the form's CSRF token is missing or wrong; reload the page")
    action = (posted.get("action") or [""])[-1]
    if action not in ("approve", "reject", "submit"):
        return _refused(state, "choose Approve, Reject or Submit", 422)
    if not who.may(action):
        return _refused(state, f"{who.user} may not {action} (roles: {', '.join(who.roles)})")
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(_decide_sync, state, who, token, run_id, action, posted)


def _decide_sync(
    state: ServerState,
    who: Caller,
    token: str,
    run_id: str,
    action: str,
    posted: dict[str, list[str]],
) -> Response:
    arguments: dict[str, Any]
    if action == "submit":
        try:
            run = state.wb.get_run(run_id, recover=False)
        except MasterError as exc:
            code, body = from_master_error(exc)
            return _refused(state, body["error"]["message"], code)
        waiting = run.waiting_for or {}
        data, errors = parse_form(fields_of(waiting.get("schema") or {}), posted)
        if errors:
            return _render_run(state, who, token, run_id, message="Please correct the fields.",
                               bad=True, status=422, posted=posted, errors=errors)  # fmt: skip
        arguments = {"data": data}
    else:
        arguments = {"comment": (posted.get("comment") or [""])[-1] or None}
    try:
        state.wb.resume(run_id, action, by=who.user, proceed=False, **arguments)
    except InputInvalid as exc:
        return _render_run(state, who, token, run_id, message="Please correct the fields.",
                           bad=True, status=422, posted=posted, errors=exc.errors)  # fmt: skip
    except MasterError as exc:
        code, body = from_master_error(exc)
        return _render_run(state, who, token, run_id, message=body["error"]["message"],
                           bad=True, status=code)  # fmt: skip
    state.executor.proceed(run_id)
    return RedirectResponse(f"/review/{run_id}?done={action}", status_code=303)
