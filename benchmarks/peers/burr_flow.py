"""The benchmark flow in Apache Burr, persisted by Burr's ``SQLitePersister``.

The approval is Burr's idiom for a human in the loop: the application runs with
``halt_after=["echo"]``, the persister has saved the state after ``echo``, and the run is
resumed by *rebuilding* the application from the persister
(``ApplicationBuilder.initialize_from(persister, resume_at_next_action=True, ...)`` with the
same ``app_id``) and running the ``approve`` action with the decision as its input.

``SQLitePersister`` (``burr.core.persistence``; ``burr.integrations.persisters`` holds only
the async and server-backed ones) opens a plain ``sqlite3`` connection and sets no pragma:
as shipped it runs in SQLite's rollback-journal mode (``journal_mode=DELETE``) with SQLite's
default ``synchronous=FULL``. The WAL row hands it a connection switched to
``journal_mode=WAL`` and changes nothing else, so ``synchronous`` stays FULL there too.
Burr's telemetry was removed upstream (``burr.telemetry`` is a no-op stub) and no tracker is
configured, so nothing leaves the process.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from burr.core import Application, ApplicationBuilder, State, action
from burr.core.persistence import SQLitePersister

from benchmarks.harness import (
    Row,
    RunSample,
    count_statements,
    sqlite_pragmas,
    sqlite_store_bytes,
    time_runs,
)
from benchmarks.peers import (
    APPROVAL,
    FlowMismatch,
    check_summary,
    echo_tool,
    fake_model,
    run_text,
)

PERSISTED = (
    "the whole state after every action (one row per action, JSON), with position and "
    "status; no trace of tool or model calls unless a tracker is added"
)


@action(reads=["text"], writes=["echo"])
def echo(state: State[Any]) -> tuple[dict[str, Any], State[Any]]:
    """Step 1: the echo tool."""
    result = echo_tool(state["text"])
    return result, state.update(echo=result)


@action(reads=[], writes=["approval"])
def approve(state: State[Any], approval: dict[str, Any]) -> tuple[dict[str, Any], State[Any]]:
    """Step 2: records the human decision, given as the action's input on resume."""
    return approval, state.update(approval=approval)


@action(reads=["echo"], writes=["summary"])
def summary(state: State[Any]) -> tuple[dict[str, Any], State[Any]]:
    """Step 3: the fake model call."""
    result = fake_model(state["echo"]["text"], None)
    return result, state.update(summary=result)


def build_application(
    persister: SQLitePersister, app_id: str, default_state: dict[str, Any]
) -> Application[Any]:
    """The flow for ``app_id``, loaded from ``persister`` if it has it, else new.

    The same builder starts a run (nothing stored yet: ``default_state`` at ``echo``) and
    resumes one (the stored state, at the action after the stored position).
    """
    return (
        ApplicationBuilder()  # type: ignore[no-untyped-call]  # Burr's builder is unannotated
        .with_actions(echo=echo, approve=approve, summary=summary)
        .with_transitions(("echo", "approve"), ("approve", "summary"))
        .initialize_from(
            persister,
            resume_at_next_action=True,
            default_state=default_state,
            default_entrypoint="echo",
        )
        .with_identifiers(app_id=app_id)
        .with_state_persister(persister)
        .build()
    )


def start(persister: SQLitePersister, app_id: str, text: str) -> None:
    """Runs a new application until it halts after ``echo``."""
    app = build_application(persister, app_id, {"text": text})
    last, _, _ = app.run(halt_after=["echo"])
    if last.name != "echo":
        raise FlowMismatch(f"{app_id} halted at {last.name}, not after echo")


def resume(persister: SQLitePersister, app_id: str, text: str) -> None:
    """Rebuilds the application from the persister and runs it to the end with the approval."""
    app = build_application(persister, app_id, {})
    waiting_at = app.get_next_action()
    if waiting_at is None or waiting_at.name != "approve":
        raise FlowMismatch(f"{app_id} was not stored waiting for approval")
    _, _, state = app.run(halt_after=["summary"], inputs={"approval": APPROVAL})
    check_summary(text, state["summary"])


def verify_pause_is_stored(db_path: Path, app_id: str) -> None:
    """Checks, through a second connection, that the paused run is stored after ``echo``."""
    other = SQLitePersister(str(db_path))
    try:
        loaded = other.load(None, app_id)
    finally:
        other.cleanup()  # type: ignore[no-untyped-call]  # unannotated in Burr
    if loaded is None or loaded["position"] != "echo" or loaded["status"] != "completed":
        raise FlowMismatch(f"{app_id} is not stored as halted after echo: {loaded!r}")


def _measure(workdir: Path, n_runs: int, *, wal: bool) -> RunSample:
    db_path = workdir / "burr.sqlite3"
    if wal:
        conn = sqlite3.connect(db_path)
        conn.execute("PRAGMA journal_mode=WAL").fetchall()
        persister = SQLitePersister(str(db_path), connection=conn)
    else:
        persister = SQLitePersister(str(db_path))
        # The connection Burr opened itself: read below, never reconfigured. Burr assigns it
        # unannotated in both branches of __init__, so mypy cannot type it.
        conn = persister.connection  # type: ignore[has-type]
    try:
        persister.initialize()  # type: ignore[no-untyped-call]  # unannotated in Burr

        def one_run(index: int, prefix: str = "run") -> None:
            text = run_text(index)
            start(persister, f"{prefix}-{index}", text)
            resume(persister, f"{prefix}-{index}", text)

        # Untimed warm-up: the first run also proves the pause is stored, the second is
        # traced to count what one run asks of SQLite.
        start(persister, "warmup-0", run_text(0))
        verify_pause_is_stored(db_path, "warmup-0")
        resume(persister, "warmup-0", run_text(0))
        with count_statements(conn) as traced:
            one_run(1, prefix="warmup")
        bytes_before = sqlite_store_bytes(conn, db_path)

        timed = time_runs(n_runs, one_run)

        bytes_after = sqlite_store_bytes(conn, db_path)
        table = persister.table_name
        rows_total = conn.execute(
            f"SELECT COUNT(*) FROM {table}"  # noqa: S608 -- Burr's own table name, not input
        ).fetchone()[0]
        facts = sqlite_pragmas(conn)
    finally:
        persister.cleanup()  # type: ignore[no-untyped-call]  # unannotated in Burr
    return RunSample.of(
        timed,
        counters={
            "bytes_per_run": (bytes_after - bytes_before) / n_runs,
            "store_bytes": float(bytes_after),
            "commits_per_run": float(traced.commits),
            "statements_per_run": float(traced.statements),
            "state_rows_per_run": rows_total / (n_runs + 2),
        },
        facts=facts,
    )


def measure_default(workdir: Path, n_runs: int) -> RunSample:
    """Burr + SQLitePersister as shipped (rollback journal, synchronous=FULL)."""
    return _measure(workdir, n_runs, wal=False)


def measure_wal(workdir: Path, n_runs: int) -> RunSample:
    """Burr + SQLitePersister on a connection switched to WAL (synchronous left at FULL)."""
    return _measure(workdir, n_runs, wal=True)


def rows() -> list[Row]:
    """The Burr rows of the table."""
    return [
        Row(
            name="burr-default",
            title="Burr + SQLitePersister as shipped (journal_mode=DELETE)",
            measure=measure_default,
            persisted=PERSISTED,
        ),
        Row(
            name="burr-wal",
            title="Burr + SQLitePersister, connection in WAL",
            measure=measure_wal,
            persisted=PERSISTED,
        ),
    ]
