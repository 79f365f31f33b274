"""The JSON API under ``/api/v1``: the workbench's reviewing and running surface.

Every handler authenticates the caller (``Authorization: Bearer <token>``), checks the
caller's roles, and acts through the public API under the caller's user name (``by`` is
never read from a body). Decisions are committed in the request with ``proceed=False``;
the run then continues in the server's executor and the answer is ``202`` with the run's
URL (also in ``Location``). Starting a run answers the same way once its first commit is
durable.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from master_sdk.server.auth import Caller
from master_sdk.server.errors import HttpError
from master_sdk.server.views import API, flow_view, records, run_url, run_view

if TYPE_CHECKING:
    from master_sdk.server.app import ServerState

RUN_ID = r"^[A-Za-z0-9_.:-]{1,128}$"
NAME = r"^[A-Za-z0-9_.:-]{1,128}$"

bearer = HTTPBearer(auto_error=False, description="An API token from the secrets file.")

RunId = Annotated[str, Path(pattern=RUN_ID, description="A run id.")]


class StartRun(BaseModel):
    """Start ``flow`` (``product/flow``) with ``inputs`` (validated by its schema)."""

    model_config = ConfigDict(extra="forbid")

    flow: str = Field(min_length=3, max_length=300, pattern=r"^[^/\s]+/[^/\s]+$")
    inputs: dict[str, Any] = Field(default_factory=dict)


class Decision(BaseModel):
    """Approve or reject, with an optional comment."""

    model_config = ConfigDict(extra="forbid")

    comment: str | None = Field(default=None, max_length=100_000)


class Submission(BaseModel):
    """The data a paused ``user_input`` step asks for (validated by its JSON Schema)."""

    model_config = ConfigDict(extra="forbid")

    data: dict[str, Any]


class ReserveRequest(BaseModel):
    """Reserve for ``minutes`` (default: the policy's ceiling); 0 releases."""

    model_config = ConfigDict(extra="forbid")

    minutes: float | None = Field(default=None, ge=0, le=10_080)


class LinkRequest(BaseModel):
    """A signed link to the approval page, for ``user`` (default: the caller; another
    user needs the ``admin`` role), valid ``minutes``."""

    model_config = ConfigDict(extra="forbid")

    user: str | None = Field(default=None, min_length=1, max_length=200)
    minutes: float = Field(default=60, gt=0, le=10_080)


def _state(request: Request) -> ServerState:
    state: ServerState = request.app.state.master
    return state


async def caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Caller:
    """The authenticated caller, or 401 (on the event loop: a hash and a few compares
    cost less than a hop to a worker thread)."""
    tokens = _state(request).tokens
    if tokens.open_access:
        return tokens.default
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HttpError(401, "unauthenticated", "send an API token: Authorization: Bearer TOKEN")
    found = tokens.caller(credentials.credentials)
    if found is None:
        raise HttpError(401, "unauthenticated", "the API token is not valid")
    return found


Authenticated = Annotated[Caller, Depends(caller)]


def need(who: Caller, action: str) -> None:
    """403 unless one of the caller's roles allows ``action``."""
    if not who.may(action):
        raise HttpError(
            403,
            "forbidden",
            f"{who.user} (roles: {', '.join(who.roles)}) may not {action}; "
            "ask an admin for a token with a role that may",
        )


def _json(state: ServerState, data: Any, status: int = 200, **headers: str) -> JSONResponse:
    return JSONResponse(state.wb.redact(data), status_code=status, headers=headers or None)


def _accepted(state: ServerState, run_id: str, status: str, **extra: Any) -> JSONResponse:
    url = run_url(run_id)
    body = {"run_id": run_id, "status": status, "url": url, **extra}
    return _json(state, body, 202, Location=url)


router = APIRouter(prefix=API, tags=["api"])


@router.get("/me", summary="who the token belongs to")
def me(request: Request, who: Authenticated) -> JSONResponse:
    return _json(_state(request), {"user": who.user, "roles": list(who.roles)})


@router.get("/products", summary="product names")
def products(request: Request, who: Authenticated) -> JSONResponse:
    need(who, "read")
    return _json(_state(request), {"products": _state(request).wb.products()})


@router.get("/flows", summary="flows with their input JSON Schemas")
def flows(
    request: Request,
    who: Authenticated,
    product: Annotated[str | None, Query(max_length=200)] = None,
) -> JSONResponse:
    need(who, "read")
    wb = _state(request).wb
    return _json(_state(request), {"flows": [flow_view(wb, ref) for ref in wb.flows(product)]})


@router.get("/flows/{product}/{flow}", summary="one flow: inputs schema and steps")
def flow(
    request: Request,
    who: Authenticated,
    product: Annotated[str, Path(pattern=NAME)],
    flow: Annotated[str, Path(pattern=NAME)],
) -> JSONResponse:
    need(who, "read")
    return _json(_state(request), flow_view(_state(request).wb, f"{product}/{flow}"))


@router.post("/runs", status_code=202, summary="start a run (it goes on in the executor)")
def start_run(request: Request, who: Authenticated, body: StartRun) -> JSONResponse:
    need(who, "start")
    state = _state(request)
    run_id = state.executor.start(body.flow, body.inputs, by=who.user)
    return _accepted(state, run_id, "running")


@router.get("/runs", summary="runs, newest first")
def runs(
    request: Request,
    who: Authenticated,
    product: Annotated[str | None, Query(max_length=200)] = None,
    flow: Annotated[str | None, Query(max_length=200)] = None,
    status: Annotated[str | None, Query(max_length=40)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> JSONResponse:
    need(who, "read")
    frame = _state(request).wb.runs(product=product, flow=flow, status=status)
    return _json(_state(request), {"runs": records(frame.head(limit))})


@router.get("/runs/{run_id}", summary="a run: status, steps, output, what it waits for")
async def get_run(
    request: Request,
    who: Authenticated,
    run_id: RunId,
    steps: Annotated[bool, Query(description="include the steps")] = True,
) -> Response:
    """Polled by many clients at once: one read of the run, and the kept view of a run
    that cannot change until it moves (``ViewCache``) instead of its steps frame."""
    from starlette.concurrency import run_in_threadpool

    need(who, "read")
    state = _state(request)

    def answer() -> bytes:
        run = state.wb.get_run(run_id, recover=False)
        key = state.views.key(run, steps=steps)
        kept = None if key is None else state.views.get(key)
        if kept is None:
            kept = bytes(_json(state, run_view(run, steps=steps)).body)
            if key is not None:
                state.views.put(key, kept)
        return kept

    return Response(await run_in_threadpool(answer), media_type="application/json")


@router.get(
    "/runs/{run_id}/trace",
    summary="a run's trace events: JSON, CSV or Arrow IPC stream",
    responses={200: {"content": {"text/csv": {}, "application/vnd.apache.arrow.stream": {}}}},
)
def trace(
    request: Request,
    who: Authenticated,
    run_id: RunId,
    format: Annotated[Literal["json", "csv", "arrow"], Query()] = "json",
) -> Response:
    import json

    need(who, "read")
    state = _state(request)
    frame = state.wb.get_run(run_id, recover=False).trace().copy()
    frame["attrs"] = [None if a is None else json.dumps(a, ensure_ascii=False) for a in
                      frame["attrs"]]  # fmt: skip
    if format == "csv":
        text = state.wb.redact(frame.to_csv(index=False))
        return Response(text, media_type="text/csv; charset=utf-8")
    if format == "arrow":
        return Response(_arrow(frame), media_type="application/vnd.apache.arrow.stream")
    return _json(state, {"run_id": run_id, "events": records(frame)})


def _arrow(frame: Any) -> bytes:
    import pyarrow as pa

    table = pa.Table.from_pandas(frame, preserve_index=False)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    data: bytes = sink.getvalue().to_pybytes()
    return data


@router.get("/pending", summary="paused runs waiting for a decision (wb.pending())")
def pending(
    request: Request,
    who: Authenticated,
    product: Annotated[str | None, Query(max_length=200)] = None,
    flow: Annotated[str | None, Query(max_length=200)] = None,
    step: Annotated[str | None, Query(max_length=200)] = None,
    kind: Annotated[Literal["approval", "input"] | None, Query()] = None,
    experiment: Annotated[str | None, Query(max_length=200)] = None,
    older_than: Annotated[float | None, Query(ge=0, le=1e9)] = None,
) -> JSONResponse:
    need(who, "read")
    frame = _state(request).wb.pending(
        product=product,
        flow=flow,
        step=step,
        kind=kind,
        experiment=experiment,
        older_than=older_than,
    )
    frame = frame.assign(waited=frame["waited"].dt.total_seconds())
    items = records(frame)
    for item in items:
        item["url"] = run_url(item["run_id"])
    return _json(_state(request), {"items": items})


async def _decide(
    request: Request, who: Caller, run_id: str, action: str, **arguments: Any
) -> JSONResponse:
    """Commit the decision in a thread of the decisions' own limiter (so decisions never
    queue behind the polls of many clients for worker threads), then hand the run to the
    executor."""
    import anyio.to_thread

    need(who, action)
    state = _state(request)

    def commit() -> str:
        ctx = state.wb.resume(run_id, action, by=who.user, proceed=False, **arguments)
        return str(ctx.run.status)

    status = await anyio.to_thread.run_sync(commit, limiter=state.decisions)
    state.executor.proceed(run_id)
    return _accepted(state, run_id, status, decision=action, by=who.user)


@router.post("/runs/{run_id}/approve", status_code=202, summary="approve a paused step")
async def approve(
    request: Request, who: Authenticated, run_id: RunId, body: Decision
) -> JSONResponse:
    return await _decide(request, who, run_id, "approve", comment=body.comment)


@router.post("/runs/{run_id}/reject", status_code=202, summary="reject a paused step")
async def reject(
    request: Request, who: Authenticated, run_id: RunId, body: Decision
) -> JSONResponse:
    return await _decide(request, who, run_id, "reject", comment=body.comment)


@router.post("/runs/{run_id}/submit", status_code=202, summary="give a paused step its input")
async def submit(
    request: Request, who: Authenticated, run_id: RunId, body: Submission
) -> JSONResponse:
    return await _decide(request, who, run_id, "submit", data=body.data)


@router.post("/runs/{run_id}/reserve", summary="reserve a paused run (minutes=0 releases)")
def reserve(
    request: Request, who: Authenticated, run_id: RunId, body: ReserveRequest
) -> JSONResponse:
    need(who, "reserve")
    state = _state(request)
    held = state.wb.reserve(run_id, body.minutes, by=who.user)
    from datetime import UTC, datetime

    until = datetime.fromtimestamp(held.until_us / 1e6, tz=UTC).isoformat()
    return _json(state, {"run_id": run_id, "reserved_by": held.by, "reserved_until": until})


@router.post("/runs/{run_id}/link", summary="a signed, expiring link to the approval page")
def link(request: Request, who: Authenticated, run_id: RunId, body: LinkRequest) -> JSONResponse:
    user = body.user or who.user
    if user != who.user:
        need(who, "link")
    state = _state(request)
    if not state.tokens.roles_of(user):
        raise HttpError(404, "not_found", f"no token is configured for user {user!r}")
    state.wb.get_run(run_id, recover=False)  # 404 for an unknown run
    # made here from the run id, a configured user name and the signature: nothing stored
    # or given is in it, and redaction would take the host's address and the signature
    return JSONResponse(state.link_for(user, run_id, minutes=body.minutes))


@router.get("/experiments", summary="experiments, newest first")
def experiments(request: Request, who: Authenticated) -> JSONResponse:
    need(who, "read")
    return _json(_state(request), {"experiments": records(_state(request).wb.experiments())})


@router.get("/experiments/{name}", summary="an experiment: results per case and summary")
def experiment(
    request: Request, who: Authenticated, name: Annotated[str, Path(pattern=NAME)]
) -> JSONResponse:
    need(who, "read")
    exp = _state(request).wb.experiment(name)
    body = {
        "name": exp.name,
        "status": str(exp.status),
        "ref": exp.ref,
        "results": records(exp.results),
        "summary": records(exp.summary().reset_index()),
    }
    return _json(_state(request), body)
