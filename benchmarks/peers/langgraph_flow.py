"""The benchmark flow in LangGraph, checkpointed by ``SqliteSaver``.

The approval is LangGraph's own human-in-the-loop primitive: the ``approval`` node calls
``interrupt()``, the invocation returns with the thread checkpointed, and the run is resumed
with ``Command(resume=APPROVAL)`` on the same ``thread_id``, which makes LangGraph load the
thread's last checkpoint and pending writes from SQLite. One thread per run.

``SqliteSaver.setup()`` puts the database in WAL mode and leaves ``synchronous`` at SQLite's
default (FULL); the saver is opened with ``SqliteSaver.from_conn_string``, as documented.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command, Durability, interrupt

from benchmarks.peers import (
    APPROVAL,
    FlowMismatch,
    check_summary,
    echo_tool,
    fake_model,
    run_text,
)

if TYPE_CHECKING:
    from benchmarks.harness import Row, RunSample

PERSISTED = (
    "checkpoints (full channel values after every super-step) and pending writes per thread; "
    "no trace of steps, tool or model calls, and no approval audit beyond the resume value"
)


class FlowState(TypedDict, total=False):
    """The graph's state: the input and each step's output."""

    text: str
    echo: dict[str, str]
    approval: dict[str, Any]
    summary: dict[str, Any]


def _echo(state: FlowState) -> FlowState:
    return {"echo": echo_tool(state["text"])}


def _approval(state: FlowState) -> FlowState:
    decision = interrupt({"prompt": "Send this text to the summariser?", "show": state["echo"]})
    return {"approval": decision}


def _summary(state: FlowState) -> FlowState:
    return {"summary": fake_model(state["echo"]["text"], None)}


def build_graph(checkpointer: SqliteSaver) -> CompiledStateGraph[Any, Any, Any, Any]:
    """The three-step flow, compiled with ``checkpointer``."""
    builder = StateGraph(FlowState)
    builder.add_node("echo", _echo)
    builder.add_node("approval", _approval)
    builder.add_node("summary", _summary)
    builder.add_edge(START, "echo")
    builder.add_edge("echo", "approval")
    builder.add_edge("approval", "summary")
    builder.add_edge("summary", END)
    return builder.compile(checkpointer=checkpointer)


def thread_config(thread_id: str) -> RunnableConfig:
    """The config that names one run's thread."""
    return {"configurable": {"thread_id": thread_id}}


def start(
    graph: CompiledStateGraph[Any, Any, Any, Any],
    thread_id: str,
    text: str,
    durability: Durability | None,
) -> None:
    """Runs a new thread until the approval interrupt; fails if it did not pause there."""
    extra: dict[str, Any] = {} if durability is None else {"durability": durability}
    out = graph.invoke({"text": text}, thread_config(thread_id), **extra)
    if "__interrupt__" not in out:
        raise FlowMismatch(f"thread {thread_id} did not pause for approval: {out!r}")


def resume(
    graph: CompiledStateGraph[Any, Any, Any, Any],
    thread_id: str,
    text: str,
    durability: Durability | None,
) -> None:
    """Resumes a paused thread from the checkpointer with the approval; checks the result."""
    extra: dict[str, Any] = {} if durability is None else {"durability": durability}
    out = graph.invoke(Command(resume=APPROVAL), thread_config(thread_id), **extra)
    check_summary(text, out.get("summary"))


def verify_pause_is_stored(db_path: Path, thread_id: str) -> None:
    """Checks, through a second connection, that a paused thread waits at the approval."""
    with SqliteSaver.from_conn_string(str(db_path)) as other:
        snapshot = build_graph(other).get_state(thread_config(thread_id))
    waiting = [i for task in snapshot.tasks for i in task.interrupts]
    if snapshot.next != ("approval",) or not waiting:
        raise FlowMismatch(f"thread {thread_id} is not stored as waiting: {snapshot!r}")


@contextmanager
def open_saver(db_path: Path) -> Iterator[SqliteSaver]:
    """A ``SqliteSaver`` on ``db_path`` with its tables created."""
    with SqliteSaver.from_conn_string(str(db_path)) as saver:
        saver.setup()
        yield saver


def _measure(workdir: Path, n_runs: int, durability: Durability | None) -> RunSample:
    # The harness is imported here, not at the top, so that the cold-resume child process,
    # which imports this module for the graph, pays for LangGraph's imports and nothing else.
    from benchmarks.harness import (
        RunSample,
        count_statements,
        sqlite_pragmas,
        sqlite_store_bytes,
        time_runs,
    )

    db_path = workdir / "langgraph.sqlite3"
    with open_saver(db_path) as saver:
        graph = build_graph(saver)

        def one_run(index: int, prefix: str = "run") -> None:
            text = run_text(index)
            start(graph, f"{prefix}-{index}", text, durability)
            resume(graph, f"{prefix}-{index}", text, durability)

        # Untimed warm-up: the first run also proves the pause is stored, the second is
        # traced to count what one run asks of SQLite.
        start(graph, "warmup-0", run_text(0), durability)
        verify_pause_is_stored(db_path, "warmup-0")
        resume(graph, "warmup-0", run_text(0), durability)
        with count_statements(saver.conn) as traced:
            one_run(1, prefix="warmup")
        bytes_before = sqlite_store_bytes(saver.conn, db_path)

        timed = time_runs(n_runs, one_run)

        bytes_after = sqlite_store_bytes(saver.conn, db_path)
        threads = n_runs + 2
        checkpoints = saver.conn.execute("SELECT COUNT(*) FROM checkpoints").fetchone()[0]
        writes = saver.conn.execute("SELECT COUNT(*) FROM writes").fetchone()[0]
        facts = sqlite_pragmas(saver.conn)
    facts["durability"] = durability or "default (async)"
    return RunSample.of(
        timed,
        counters={
            "bytes_per_run": (bytes_after - bytes_before) / n_runs,
            "store_bytes": float(bytes_after),
            "commits_per_run": float(traced.commits),
            "statements_per_run": float(traced.statements),
            "checkpoints_per_run": checkpoints / threads,
            "writes_per_run": writes / threads,
        },
        facts=facts,
    )


def measure_default(workdir: Path, n_runs: int) -> RunSample:
    """LangGraph + SqliteSaver with the default durability (``"async"`` in 1.x)."""
    return _measure(workdir, n_runs, None)


def measure_sync(workdir: Path, n_runs: int) -> RunSample:
    """LangGraph + SqliteSaver with ``durability="sync"``: each checkpoint is written before
    the next step starts."""
    return _measure(workdir, n_runs, "sync")


def rows() -> list[Row]:
    """The LangGraph rows of the table."""
    from benchmarks.harness import Row  # see _measure for why it is imported here

    return [
        Row(
            name="langgraph-default",
            title="LangGraph + SqliteSaver, default durability (async)",
            measure=measure_default,
            persisted=PERSISTED,
        ),
        Row(
            name="langgraph-sync",
            title='LangGraph + SqliteSaver, durability="sync"',
            measure=measure_sync,
            persisted=PERSISTED,
        ),
    ]
