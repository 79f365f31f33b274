"""A commit the engine marks ``sync=False`` (a step's start, a decision continued at once,
a model reservation) is written on PostgreSQL with ``synchronous_commit = off`` for its own
transaction: it does not wait for its WAL flush. WAL is flushed in order, so the next
synced commit (a step's result, a pause, the end) makes it durable too, whichever
connection or process writes that one. The same promise as the SQLite store's commits at
``synchronous=NORMAL`` (README *Durability*).

Shown on a server of its own, crashed with ``pg_ctl stop -m immediate`` (the server
processes quit at once, the WAL buffers in shared memory are lost, as in a power cut for
everything the WAL writer had not written yet) and started again; its WAL writer slowed to
10 s, so an unsynced commit stays in those buffers until a synced one flushes them.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from master_sdk.errors import NotFound
from master_sdk.memory.postgres import PostgresStore
from master_sdk.memory.store import Changes, StepAttempt
from tests.contract.test_store_contract import TS, event, new_run
from tests.support import postgres


@pytest.fixture
def own_server() -> Iterator[postgres.Server]:
    """A PostgreSQL server for this test alone (crashing it touches no other test)."""
    server = postgres._start()
    try:
        with psycopg.connect(server.url(), autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET wal_writer_delay = '10s'")
            conn.execute("SELECT pg_reload_conf()")
        yield server
    finally:
        server.stop()


def crash_and_restart(server: postgres.Server) -> None:
    """Stop the server the way a crash would (no WAL flush, no checkpoint), start again
    (crash recovery replays what WAL reached the disk)."""
    pg_ctl = str(server.pg_bin / "pg_ctl")
    data = str(server.folder / "data")
    postgres._run(server, [pg_ctl, "-D", data, "-m", "immediate", "-w", "stop"])
    opts = (
        f"-c listen_addresses=127.0.0.1 -c port={server.port} "
        f"-c unix_socket_directories={server.folder} -c fsync=off -c max_connections=200"
    )
    log = str(server.folder / "log")
    postgres._run(server, [pg_ctl, "-D", data, "-l", log, "-o", opts, "-w", "-t", "30", "start"])


def step_start(run_id: str) -> tuple[object, Changes]:
    run = new_run(run_id)
    attempt = StepAttempt(0, "echo", "tool", "running", 1, TS, None)
    changes = Changes(
        steps={0: attempt},
        events=[event(1, "run_started"), event(2, step_id="echo", step_type="tool")],
    )
    return run, changes


def test_an_unsynced_start_is_lost_by_a_crash_unless_a_synced_commit_follows(
    own_server: postgres.Server,
) -> None:
    """A start written unsynced and nothing after it: the crash loses it (so the commit
    really skipped its flush). A start written unsynced, then a synced commit of ANOTHER
    run on another connection: both survive the crash."""
    url = own_server.fresh_database()
    store = PostgresStore(url)
    try:
        run, changes = step_start("alone")
        store.commit(run, changes, expect_version=None, label="step_start", sync=False)  # type: ignore[arg-type]
        assert store.load("alone")[0].version == 1  # written, visible to every reader
    finally:
        store.close()
    crash_and_restart(own_server)

    store = PostgresStore(url, pool_size=2)
    try:
        with pytest.raises(NotFound):
            store.load("alone")
        run, changes = step_start("covered")
        store.commit(run, changes, expect_version=None, label="step_start", sync=False)  # type: ignore[arg-type]
        other = PostgresStore(url)
        try:
            run2, changes2 = step_start("synced")
            other.commit(run2, changes2, expect_version=None, label="start", sync=True)  # type: ignore[arg-type]
        finally:
            other.close()
    finally:
        store.close()
    crash_and_restart(own_server)

    store = PostgresStore(url)
    try:
        for run_id in ("covered", "synced"):
            loaded, steps = store.load(run_id)
            assert loaded.status == "running"
            assert [(s.step_id, s.status) for s in steps] == [("echo", "running")]
        assert store.count_events("covered") == 2
    finally:
        store.close()


WRITER = textwrap.dedent(
    """
    import json, sys
    from master_sdk.memory.postgres import PostgresStore
    from master_sdk.memory.store import Changes, StepAttempt
    from tests.contract.test_store_contract import TS, event, new_run

    store = PostgresStore(sys.argv[1])
    for i in range(10_000):
        run = new_run(f"r{i}")
        running = StepAttempt(0, "echo", "tool", "running", 1, TS, None)
        store.commit(run, Changes(steps={0: running}, events=[event(1, "run_started"),
                     event(2, step_id="echo", step_type="tool")]),
                     expect_version=None, label="step_start", sync=False)
        done = StepAttempt(0, "echo", "tool", "completed", 1, TS, TS + 5, {"i": i})
        run.version, run.status = 2, "waiting_approval"
        store.commit(run, Changes(steps={0: done}, events=[event(3, "step_completed",
                     step_id="echo", step_type="tool")]), expect_version=1, label="pause")
        print(json.dumps({"synced": run.run_id}), flush=True)
        # the next step's start, unsynced: the kill and the crash may come before or
        # after it is flushed
        run.version, run.status = 3, "running"
        nxt = StepAttempt(1, "summary", "agent", "running", 1, TS + 6, None)
        store.commit(run, Changes(steps={1: nxt}, events=[event(4, step_id="summary",
                     step_type="agent")]), expect_version=2, label="step_start", sync=False)
    """
)


def test_a_killed_writer_and_a_crashed_server_keep_every_start_a_synced_commit_covered(
    own_server: postgres.Server, tmp_path: Path
) -> None:
    """A writer process commits, run after run, a start record unsynced then the step's
    result synced; it is SIGKILLed and the server crashed right after. Every run whose
    synced commit had returned is found with its start record and its result; none is
    half-written."""
    url = own_server.fresh_database()
    script = tmp_path / "writer.py"
    script.write_text(WRITER, encoding="utf-8")
    root = Path(__file__).resolve().parents[3]
    proc = subprocess.Popen(
        [sys.executable, str(script), url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
    )
    assert proc.stdout is not None
    synced: list[str] = []
    for line in proc.stdout:
        synced.append(json.loads(line)["synced"])
        if len(synced) == 40:
            break
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    crash_and_restart(own_server)

    store = PostgresStore(url)
    try:
        for run_id in synced:
            run, _ = store.load(run_id)
            attempts = store.attempts(run_id)
            assert (attempts[0].step_id, attempts[0].status) == ("echo", "completed"), run_id
            # the start's two events, the result's one; a later start (version 3) is
            # there whole (its attempt and its event) or not at all
            assert (run.version, run.status) in {(2, "waiting_approval"), (3, "running")}
            assert len(attempts) == run.version - 1, run_id
            assert store.count_events(run_id) == run.version + 1, run_id
    finally:
        store.close()
