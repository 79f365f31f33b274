"""A PostgreSQL store over TLS (``sslmode=require``) on a server with ``ssl=on`` and a
self-signed certificate (``tests/support/postgres.py``: ``ssl_server``, which refuses
connections without TLS), and pooled connections lost between two steps of a run: ended
by the server (``pg_terminate_backend`` on every backend of the store) or dropped on the
way (a relay cutting them). The pool replaces them; the run goes on; nothing committed is
lost (langgraph#5675)."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

import master_sdk as ms
from master_sdk.memory.postgres import PostgresStore
from tests.support import postgres
from tests.support.durability import make_ledger_project, tally
from tests.support.relay import Relay


@pytest.fixture
def tls_url() -> str:
    """A new database on the TLS-only server, its URL asking for TLS."""
    return postgres.ssl_server().fresh_database() + "?sslmode=require"


def backends(url: str) -> list[tuple[int, bool]]:
    """``(pid, ssl)`` of the store's server connections to the database of ``url``."""
    database = url.split("?")[0].rsplit("/", 1)[1]
    with psycopg.connect(url) as conn:
        return [
            (int(pid), bool(ssl))
            for pid, ssl in conn.execute(
                "SELECT a.pid, s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) "
                "WHERE a.datname = %s AND a.application_name = 'master_sdk'",
                (database,),
            )
        ]


def terminate_all(url: str) -> int:
    """End every backend of the store on the server; how many there were."""
    pids = [pid for pid, _ in backends(url)]
    with psycopg.connect(url, autocommit=True) as conn:
        for pid in pids:
            conn.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))
    return len(pids)


def check_run(wb: ms.Workbench, run_id: str, ledger: Path) -> None:
    """The run completed once, with every commit of it stored."""
    run = wb.get_run(run_id)
    assert run.status == "completed"
    assert tally(ledger) == {"after": 1, "done": 1}
    assert list(wb.approvals()["by"]) == ["ana"]
    steps = run.steps()
    assert list(steps["step_id"]) == ["review", "after", "ask", "done"]
    assert set(steps["status"]) == {"completed"}
    trace = run.trace()
    assert list(trace["seq"]) == list(range(1, len(trace) + 1))
    assert trace["event"].iloc[-1] == "run_completed"


def test_a_store_asking_for_tls_runs_flows_over_it_and_one_without_is_refused(
    tls_url: str, tmp_path: Path
) -> None:
    """``sslmode=require``: every connection of the store is encrypted; the same URL with
    ``sslmode=disable`` is refused by the server, and the error says where it failed."""
    root = make_ledger_project(tmp_path / "project")
    ledger = tmp_path / "ledger"
    with ms.Workbench.open(root, store=tls_url) as wb:
        run = wb.run("ledger/pause", {"ledger": str(ledger)})
        run.approve(by="ana")
        run.submit({"say": "hi"}, by="ana")
        check_run(wb, run.id, ledger)
        seen = backends(tls_url)
        assert seen and all(ssl for _, ssl in seen), seen
    plain = tls_url.replace("sslmode=require", "sslmode=disable")
    with pytest.raises(ms.StoreError, match="cannot connect to the PostgreSQL server") as got:
        PostgresStore(plain, connect_timeout_s=2)
    assert "no encryption" in str(got.value) and "add ?sslmode=require" in str(got.value)


def test_every_backend_of_the_store_ended_between_two_steps_the_run_goes_on(
    tls_url: str, tmp_path: Path
) -> None:
    """The run pauses after its first step; the server ends every backend of the store
    (over TLS the client only learns it when it next reads); the approval and the input
    that follow are committed on new connections, without an error, and all is there."""
    root = make_ledger_project(tmp_path / "project")
    ledger = tmp_path / "ledger"
    with ms.Workbench.open(root, store=tls_url) as wb:
        run = wb.run("ledger/pause", {"ledger": str(ledger)})
        assert run.status == "waiting_approval"
        before = {pid for pid, _ in backends(tls_url)}
        assert terminate_all(tls_url) >= 1
        run.approve(by="ana")
        assert run.status == "waiting_input"
        after = {pid for pid, _ in backends(tls_url)}
        assert after and not after & before  # new server connections
        assert terminate_all(tls_url) >= 1
        run.submit({"say": "hi"}, by="ana")
        check_run(wb, run.id, ledger)
    with ms.Workbench.open(root, store=tls_url) as wb:  # and from a fresh store
        check_run(wb, run.id, ledger)


def test_connections_dropped_on_the_way_between_two_steps_are_replaced(
    tls_url: str, tmp_path: Path
) -> None:
    """The store reaches the server through a relay that cuts every connection (as a
    pooler or load balancer dropping idle TLS connections does) between the steps of a
    run: the run goes on, on new connections, and all is stored."""
    root = make_ledger_project(tmp_path / "project")
    ledger = tmp_path / "ledger"
    port = postgres.ssl_server().port
    with Relay(port) as relay:
        url = tls_url.replace(f":{port}/", f":{relay.port}/")
        with ms.Workbench.open(root, store=url) as wb:
            run = wb.run("ledger/pause", {"ledger": str(ledger)})
            opened = relay.accepted
            assert relay.cut() >= 1
            run.approve(by="ana")
            assert relay.cut() >= 1
            run.submit({"say": "hi"}, by="ana")
            check_run(wb, run.id, ledger)
            assert relay.accepted > opened
