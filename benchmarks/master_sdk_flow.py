"""master_sdk's rows: the benchmark flow as a product, run through the public API.

The flow is the peers' (``benchmarks/peers/__init__.py``): ``echo`` tool -> ``hitl``
approval -> ``summary`` agent whose model is the same deterministic fake, plugged in
behind master_sdk's router as a ``FunctionModel`` (so budgets, the trace and cost accounting
run exactly as for a real model). Each run is started, pauses at the approval, is loaded
back from the store (``wb.get_run``) and approved, and completes; every run's summary is
checked. master_sdk keeps its full trace (12 events per run here), the approval audit and
every step's output — more than either peer stores.
"""

from __future__ import annotations

import gc
import textwrap
from pathlib import Path
from typing import Any

from benchmarks.harness import (
    Row,
    RunSample,
    count_statements,
    sqlite_pragmas,
    sqlite_store_bytes,
    time_runs,
)
from benchmarks.peers import APPROVAL, STEPS_PER_RUN, check_summary, fake_model, run_text

FLOW = """
id: durable
description: The benchmark flow - echo, approval, summary.
inputs:
  type: object
  properties: {text: {type: string}}
  required: [text]
steps:
  - {id: echo, type: tool, tool: echo, input: {text: "{{ inputs.text }}"}}
  - {id: approval, type: hitl, prompt: "Summarise this?", show: "{{ steps.echo.output }}"}
  - id: summary
    type: agent
    agent: summarizer
    input: {text: "{{ steps.echo.output.text }}"}
output: "{{ steps.summary.output }}"
"""

COMPONENTS = """
from pydantic import BaseModel

from master_sdk.authoring import AgentContext, AgentOutput, agent, tool


class Echoed(BaseModel):
    text: str


@tool
def echo(text: str) -> Echoed:
    return Echoed(text=text)


class Summary(AgentOutput):
    reply: str
    tokens_in: int
    tokens_out: int


@agent
def summarizer(ctx: AgentContext, text: str) -> Summary:
    reply = ctx.complete(text)
    return Summary(reply=reply.text, tokens_in=reply.tokens_in, tokens_out=reply.tokens_out)
"""

REF = "bench/durable"


def make_project(root: Path, *, synchronous: str = "FULL") -> Path:
    """Write the benchmark product and its settings under ``root``."""
    product = root / "products" / "bench"
    (product / "flows").mkdir(parents=True, exist_ok=True)
    (root / "configs").mkdir(parents=True, exist_ok=True)
    (product / "manifest.yaml").write_text("name: bench\nversion: '1.0'\n", encoding="utf-8")
    (product / "components.py").write_text(textwrap.dedent(COMPONENTS), encoding="utf-8")
    (product / "flows" / "durable.yaml").write_text(FLOW.lstrip(), encoding="utf-8")
    (root / "configs" / "app.yaml").write_text(
        f"synchronous: {synchronous}\ndefault_user: bench\n", encoding="utf-8"
    )
    return root


def fake_summary_model() -> Any:
    """The peers' fake model behind master_sdk's router (a ``FunctionModel``)."""
    from master_sdk.models.types import ModelResponse, Usage
    from master_sdk.testing import FunctionModel

    def answer(request: Any) -> ModelResponse:
        text = request.messages[-1].content
        fake = fake_model(text, None)
        return ModelResponse(
            text=fake["reply"],
            usage=Usage(tokens_in=fake["tokens_in"], tokens_out=fake["tokens_out"]),
            model=request.model,
        )

    return FunctionModel(answer)


def open_workbench(root: Path, store: Path) -> Any:
    """A workbench on the benchmark project with the fake model plugged in."""
    import master_sdk as ms

    return ms.Workbench.open(root, store=store, providers={"default": fake_summary_model()})


def one_run(wb: Any, index: int) -> str:
    """Start -> pause -> load from the store -> approve -> completed; checks the summary."""
    text = run_text(index)
    started = wb.run(REF, inputs={"text": text})
    if started.status != "waiting_approval":
        raise AssertionError(f"run {index} did not pause: {started.status} {started.error}")
    resumed = wb.get_run(started.id)
    resumed.approve(comment=APPROVAL["comment"], by=APPROVAL["by"])
    if resumed.status != "completed":
        raise AssertionError(f"run {index} did not complete: {resumed.status} {resumed.error}")
    check_summary(text, resumed.output)
    return str(resumed.id)


def measure(workdir: Path, n_runs: int, *, synchronous: str) -> RunSample:
    """Time ``n_runs`` runs on a fresh store; count commits, statements, bytes and events."""
    root = make_project(workdir / "project", synchronous=synchronous)
    store = workdir / "runs.sqlite3"
    wb = open_workbench(root, store)
    try:
        conn = wb.store.conn
        one_run(wb, -2)
        syncs = getattr(wb.store, "log_syncs", None)
        with count_statements(conn) as counted:
            one_run(wb, -1)
        synced = counted.commits - counted.relaxed
        if syncs is not None:  # the store syncs its log itself: count those syncs
            synced = wb.store.log_syncs - syncs
        size_before = sqlite_store_bytes(conn, store)
        gc.collect()
        timed = time_runs(n_runs, lambda i: one_run(wb, i))
        size_after = sqlite_store_bytes(conn, store)
        events = wb.store.count_events()
        runs = conn.execute("SELECT count(*) FROM runs").fetchone()[0]
        facts = sqlite_pragmas(conn)
        if syncs is not None and wb.store.synchronous == "FULL":
            # the writer runs at NORMAL and the store fdatasyncs the log after each commit
            # that must be synced, outside the write lock: FULL's guarantee
            facts["synchronous"] = "FULL"
            facts["log_sync"] = "fdatasync by the store after each synced commit"
    finally:
        wb.close()
    return RunSample.of(
        timed,
        counters={
            "commits_per_run": counted.commits,
            "synced_commits_per_run": synced,
            "statements_per_run": counted.statements,
            "bytes_per_run": (size_after - size_before) / n_runs,
            "trace_events_per_run": events / runs,
        },
        facts={**facts, "trace": "full (every step, tool call, model call, approval)"},
    )


THREADS = 8


def measure_threads(workdir: Path, n_runs: int, *, threads: int = THREADS) -> RunSample:
    """``n_runs`` runs shared by ``threads`` threads on ONE workbench (each thread its own
    runs, released together); runs/s is all of them over the wall time of the slowest."""
    import os
    import threading
    import time

    root = make_project(workdir / "project")
    wb = open_workbench(root, workdir / "runs.sqlite3")
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(threads + 1)

    def work(first: int) -> None:
        barrier.wait()
        for index in range(first, n_runs, threads):
            started = time.perf_counter()
            try:
                one_run(wb, index)
            except Exception as exc:  # reported: a wrong result aborts the benchmark
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}")
                return
            with lock:
                latencies.append(time.perf_counter() - started)

    try:
        one_run(wb, -1)
        gc.collect()
        syncs = getattr(wb.store, "log_syncs", None)
        pool = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
        for thread in pool:
            thread.start()
        cpu = os.times()
        began = time.perf_counter()
        barrier.wait()
        for thread in pool:
            thread.join()
        wall = time.perf_counter() - began
        after = os.times()
        runs = wb.store.conn.execute("SELECT count(*) FROM runs").fetchone()[0]
        counters = {"threads": float(threads), "runs_stored": float(runs)}
        if syncs is not None:  # how many runs shared each sync of the log
            counters["log_syncs_per_run"] = (wb.store.log_syncs - syncs) / n_runs
    finally:
        wb.close()
    if errors:
        raise AssertionError(f"{len(errors)} runs failed in threads, first: {errors[0]}")
    cpu_s = (after.user - cpu.user) + (after.system - cpu.system)
    return RunSample(
        tuple(latencies),
        wall,
        cpu_s,
        counters=counters,
        facts={"threads": f"{threads} threads, one Workbench"},
    )


def rows() -> list[Row]:
    """master_sdk at its default durability and with the NORMAL opt-in."""
    persisted = (
        "run state, every step's output, the full trace (12 events per run: steps, tool call, "
        "model call with tokens and cost, approval request and decision), the approval audit, "
        "and the flow text the run started from; everything redacted before it is written"
    )
    return [
        Row(
            name="master-full",
            title="master_sdk, default durability (WAL, synchronous=FULL)",
            measure=lambda workdir, n: measure(workdir, n, synchronous="FULL"),
            persisted=persisted,
            steps_per_run=STEPS_PER_RUN,
        ),
        Row(
            name="master-threads8",
            title=f"master_sdk, {THREADS} threads on one Workbench (FULL)",
            measure=measure_threads,
            persisted=persisted,
            steps_per_run=STEPS_PER_RUN,
        ),
        Row(
            name="master-threads64",
            title="master_sdk, 64 threads on one Workbench (FULL)",
            measure=lambda workdir, n: measure_threads(workdir, n, threads=64),
            persisted=persisted,
            steps_per_run=STEPS_PER_RUN,
        ),
        Row(
            name="master-normal",
            title="master_sdk, synchronous=NORMAL opt-in",
            measure=lambda workdir, n: measure(workdir, n, synchronous="NORMAL"),
            persisted=persisted,
            steps_per_run=STEPS_PER_RUN,
        ),
    ]
