"""The durability promises through PgBouncer 1.18 in transaction pooling (Debian's, started
by ``tests/support/postgres.py`` in front of the throwaway server): every transaction may
land on another server connection, and the pooler keeps no prepared statements.

Real processes, as in ``test_postgres_processes.py``: a writer killed with SIGKILL in the
middle of a step and two processes reopening the run at once (one resumes it, once), two
processes resuming the same pause, two claimers sharing a queue, and stores opening a new
database at once (the migration under a transaction-scoped advisory lock)."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path

import psycopg

import master_sdk as ms
from master_sdk.memory.postgres import PostgresStore
from master_sdk.memory.store import Changes
from tests.contract.test_store_contract import new_run
from tests.integration.durability.test_exactly_one_resume import paused_run, race
from tests.integration.durability.test_postgres_claims import claimer, paused_store
from tests.support import postgres
from tests.support.durability import (
    all_exit,
    last_json,
    lines,
    make_ledger_project,
    spawn,
    tally,
    wait_for,
)


def test_a_store_through_pgbouncer_prepares_nothing_and_a_direct_one_does() -> None:
    """Each connection finds out whether a pooler relays it: through PgBouncer statements
    are not prepared (1.18 would lose or mix them up), on the server directly they are,
    and ``?prepare=on`` still forces them."""
    url = postgres.bouncer().fresh_url()
    database = url.rsplit("/", 1)[1]
    through, direct = PostgresStore(url), PostgresStore(postgres.server().url(database))
    forced = PostgresStore(url + "?prepare=on")
    try:
        assert (through.prepared, direct.prepared, forced.prepared) == (False, True, True)
        for store in (through, direct):
            for _ in range(8):  # past psycopg's threshold of five runs of a statement
                store.find_runs()
        assert through.read(lambda conn: conn.prepare_threshold) is None
        assert direct.read(lambda conn: conn.prepare_threshold) == 5
        count = "SELECT count(*) FROM pg_prepared_statements"
        assert direct.read(lambda conn: conn.execute(count).fetchone())[0] >= 1
    finally:
        for store in (through, direct, forced):
            store.close()


def test_prepared_statements_forced_through_pgbouncer_1_18_fail_naming_the_fix() -> None:
    """Why the store finds out: with ``?prepare=on`` two stores reading at once through
    PgBouncer 1.18 soon land a statement prepared by one on the other's server connection
    (or miss their own), and the error says to add ``?prepare=off``. (Reads only: a
    statement run under another's name could do anything.)"""
    url = postgres.bouncer().fresh_url()
    seed = PostgresStore(url)
    seed.commit(new_run("r1"), Changes(), expect_version=None, label="start")
    seed.close()
    stores = [PostgresStore(url + "?prepare=on") for _ in range(2)]
    errors: list[str] = []

    def read(store: PostgresStore) -> None:
        for _ in range(400):
            try:
                store.load("r1")
                store.find_runs()
                store.count_events("r1")
            except ms.StoreError as exc:
                errors.append(str(exc))
                return

    threads = [threading.Thread(target=read, args=(s,)) for s in stores for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for store in stores:
        store.close()
    assert errors, "no prepared statement went astray in 1,600 reads through PgBouncer"
    assert all("add ?prepare=off to the store URL" in e for e in errors), errors


def test_a_writer_killed_mid_step_through_pgbouncer_is_resumed_once_by_two_reopeners(
    tmp_path: Path,
) -> None:
    """A process SIGKILLed inside an idempotent step, its connections to PgBouncer cut
    mid-session: two processes reopening the run at once see it interrupted; exactly one
    runs the step again (with the same key), the run completes, and ``after`` runs once."""
    root = make_ledger_project(
        tmp_path / "project",
        policy="policy:\n  auto_retry_idempotent: true\n  max_recoveries: 2\n",
    )
    url, ledger, gate = postgres.bouncer().fresh_url(), tmp_path / "ledger", tmp_path / "gate"
    inputs = json.dumps({"ledger": str(ledger), "gate": str(gate)})
    writer = spawn("start", root, url, "ledger/gated_keyed", inputs)
    wait_for(lambda: any(line.startswith("slow") for line in lines(ledger)), what="the step")
    writer.kill()
    writer.communicate(timeout=30)
    assert writer.returncode == -signal.SIGKILL
    gate.touch()

    with ms.Workbench.open(root, store=url) as wb:
        (run_id,) = [str(r) for r in wb.runs()["run_id"]]
        assert wb.get_run(run_id, recover=False).status == "interrupted"

    reopeners = [spawn("open", root, url, run_id) for _ in range(2)]
    outputs = all_exit(reopeners)
    reports = [last_json(out) for out in outputs]
    assert all(r is not None for r in reports), outputs
    slow = [line for line in lines(ledger) if line.startswith("slow")]
    assert slow == [f"slow key={run_id}:slow attempt=1", f"slow key={run_id}:slow attempt=2"]
    assert tally(ledger) == {"before": 1, "slow": 2, "after": 1}
    with ms.Workbench.open(root, store=url) as wb:
        run = wb.get_run(run_id)
        assert run.status == "completed"
        retried = run.trace().query("event == 'step_retried'")
        assert len(retried) == 1
        trace = run.trace()
        assert list(trace["seq"]) == list(range(1, len(trace) + 1))


def test_two_processes_resuming_one_pause_through_pgbouncer_one_wins(tmp_path: Path) -> None:
    """Both read the paused run before either writes; the compare-and-set on its version
    lets one through and the other gets AlreadyResumed; one decision is stored."""
    root = make_ledger_project(tmp_path / "project")
    url, ledger = postgres.bouncer().fresh_url(), tmp_path / "ledger"
    run_id = paused_run(root, url, ledger, at="approve")  # type: ignore[arg-type]  # a URL
    results = race(root, url, run_id, "approve", tmp_path / "barrier")  # type: ignore[arg-type]
    assert sorted(r["result"] for r in results) == ["already_resumed", "ok"], results
    winner = next(r for r in results if r["result"] == "ok")
    with ms.Workbench.open(root, store=url) as wb:
        assert list(wb.approvals()["by"]) == [winner["name"]]
        assert wb.get_run(run_id).status == "waiting_input"
    assert tally(ledger) == {"after": 1}


def test_two_claimers_through_pgbouncer_share_a_queue_without_overlap(tmp_path: Path) -> None:
    """Claims (``FOR NO KEY UPDATE SKIP LOCKED``) from two processes through the pooler:
    every paused run goes to exactly one of them."""
    url = postgres.bouncer().fresh_url()
    ids = paused_store(url, 30)
    go = tmp_path / "go"
    procs = {name: claimer(url, name, go, 1) for name in ("ana", "bo")}
    go.touch()
    got: dict[str, list[str]] = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        got[name] = json.loads(out)
    taken = got["ana"] + got["bo"]
    assert sorted(taken) == ids and len(set(taken)) == len(ids)


def test_stores_opening_a_new_database_through_pgbouncer_at_once_migrate_it_once() -> None:
    """Six stores opened at once through the pooler on an empty database: all open, the
    schema is made once (the advisory lock is held by the migrating transaction, so
    PgBouncer may hand the server connection on as soon as it ends)."""
    url = postgres.bouncer().fresh_url()
    errors: list[BaseException] = []
    versions: list[int] = []

    def open_one() -> None:
        try:
            store = PostgresStore(url)
            versions.append(store.schema_version)
            store.close()
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(set(versions)) == 1 and len(versions) == 6
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT key, value FROM master_meta WHERE key = 'schema_version'"
        ).fetchall()
    assert rows == [("schema_version", str(versions[0]))]
