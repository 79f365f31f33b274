"""``identity: database`` with real team roles: two LOGIN roles that are neither superusers
nor owners of the tables (made with CREATE ROLE on the throwaway server, given rights on
the tables), as a team sets them up. Four-eyes holds between them through the workbench,
and the database itself refuses a decision row, a run or a change naming anyone but the
signed-in role — by the store or by hand — while the owner may still copy runs in."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

import master_sdk as ms
from master_sdk.memory.postgres import PostgresStore
from master_sdk.memory.postgres.vectors import ensure_vector_tables
from master_sdk.memory.store import ApprovalRecord, Changes, InputRecord
from tests.contract.test_store_contract import advance, new_run
from tests.support import postgres
from tests.support.durability import make_ledger_project, tally


@dataclass
class Team:
    owner_url: str  # the role owning the tables (the tests' superuser)
    ana: str
    ben: str
    ana_url: str
    ben_url: str


@pytest.fixture
def team() -> Iterator[Team]:
    """A new database whose tables the owner made, and two plain login roles with rights
    to read and write them."""
    owner_url = postgres.fresh_url()
    store = PostgresStore(owner_url)  # the owner makes the tables, the vectors' too
    store.transaction(ensure_vector_tables)
    store.close()
    tag = uuid.uuid4().hex[:6]
    ana, ben = f"ana_{tag}", f"ben_{tag}"
    with psycopg.connect(owner_url, autocommit=True) as conn:
        for role in (ana, ben):
            conn.execute(f'CREATE ROLE "{role}" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE')
            conn.execute(
                f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO "{role}"'
            )
            conn.execute(f'GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO "{role}"')
        rolsuper = conn.execute(
            "SELECT bool_or(rolsuper) FROM pg_roles WHERE rolname IN (%s, %s)", (ana, ben)
        ).fetchone()
        assert rolsuper == (False,)
    as_role = owner_url.replace("postgresql://postgres@", "postgresql://{}@")
    yield Team(owner_url, ana, ben, as_role.format(ana), as_role.format(ben))


def test_four_eyes_holds_between_two_real_roles(team: Team, tmp_path: Path) -> None:
    """ana starts the run and may not approve it (four-eyes against her role), nor pass
    as ben; ben approves it and gives the input, both recorded as ben."""
    root = make_ledger_project(
        tmp_path / "project", app="identity: database\n", policy="policy:\n  four_eyes: true\n"
    )
    ledger = tmp_path / "ledger"
    with ms.Workbench.open(root, store=team.ana_url) as wb:
        assert wb.user == team.ana
        run = wb.run("ledger/pause", {"ledger": str(ledger)})
        with pytest.raises(ms.DecisionRefused, match="four_eyes"):
            run.approve()
        with pytest.raises(ms.DecisionRefused, match="identity"):
            run.approve(by=team.ben)
        assert run.status == "waiting_approval"
    with ms.Workbench.open(root, store=team.ben_url) as wb:
        wb.get_run(run.id).approve(comment="looks right")
    with (
        ms.Workbench.open(root, store=team.ana_url) as wb,
        pytest.raises(ms.DecisionRefused, match="four_eyes"),
    ):
        wb.get_run(run.id).submit({"say": "hi"})  # an input is a decision too
    with ms.Workbench.open(root, store=team.ben_url) as wb:
        done = wb.get_run(run.id).submit({"say": "hi"})
        assert done.status == "completed"
        assert list(wb.approvals()["by"]) == [team.ben]
        assert list(wb.runs()["created_by"]) == [team.ana]
    with psycopg.connect(team.owner_url) as conn:
        assert conn.execute("SELECT by_ FROM user_inputs").fetchall() == [(team.ben,)]
    assert tally(ledger) == {"after": 1, "done": 1}


def test_a_role_cannot_record_another_name_even_by_hand(team: Team) -> None:
    """By hand in SQL, as ana: a run started by ben, an approval or an input by ben, and
    changing the actor of a recorded decision are refused by the database; her own name
    goes in."""
    store = PostgresStore(team.ana_url, identity="database")
    try:
        run = new_run("r1")
        store.commit(run, Changes(), expect_version=None, label="start")
        assert store.load("r1")[0].created_by == team.ana
    finally:
        store.close()
    refused = psycopg.errors.InsufficientPrivilege
    with psycopg.connect(team.ana_url, autocommit=True) as conn:
        (pk,) = conn.execute("SELECT pk FROM runs WHERE run_id = 'r1'").fetchone()  # type: ignore[misc]  # one row
        approve = (
            "INSERT INTO approvals (run_pk, step_id, decision, by_, at_us) "
            "VALUES (%s, 'review', 'approved', %s, 1)"
        )
        with pytest.raises(refused, match=f"role {team.ana} may not record {team.ben}"):
            conn.execute(approve, (pk, team.ben))
        with pytest.raises(refused, match="may not record nobody"):
            conn.execute(approve, (pk, None))
        with pytest.raises(refused, match="identity: database"):
            conn.execute(
                "INSERT INTO user_inputs (run_pk, step_id, data, by_, at_us) "
                "VALUES (%s, 'ask', '{}', %s, 1)",
                (pk, team.ben),
            )
        with pytest.raises(refused, match="in runs"):
            conn.execute(
                "INSERT INTO runs (run_id, product, flow, status, version, cursor, created_us, "
                "updated_us, flow_hash, product_version, created_by) "
                "VALUES ('r2', 'demo', 'f', 'running', 1, 0, 1, 1, 'h1', '1.0', %s)",
                (team.ben,),
            )
        with pytest.raises(refused, match="may not change the recorded actor in runs"):
            conn.execute("UPDATE runs SET created_by = %s WHERE pk = %s", (team.ben, pk))
        conn.execute(approve, (pk, team.ana))  # her own name
        with pytest.raises(refused, match="may not change the recorded actor in approvals"):
            conn.execute("UPDATE approvals SET by_ = %s WHERE run_pk = %s", (team.ben, pk))
        # what the store itself writes on every commit still goes through
        conn.execute(
            "UPDATE runs SET version = version + 1, status = 'running' WHERE pk = %s", (pk,)
        )
    with psycopg.connect(team.owner_url) as conn:
        rows = conn.execute("SELECT by_ FROM approvals").fetchall()
        assert rows == [(team.ana,)]
        assert conn.execute("SELECT created_by FROM runs").fetchall() == [(team.ana,)]


def test_a_store_without_identity_database_naming_others_is_refused_by_the_server(
    team: Team,
) -> None:
    """ana's store opened with the default identity, committing an approval by ben: the
    commit fails with a StoreError saying what to do, and nothing of it is written."""
    store = PostgresStore(team.ana_url)
    try:
        run = new_run("r1", created_by=team.ana)
        store.commit(run, Changes(), expect_version=None, label="start")
        with pytest.raises(ms.StoreError, match="identity: database") as got:
            advance(
                store,
                run,
                Changes(
                    approvals=[ApprovalRecord("s", "approved", team.ben, None, 1)],
                    inputs=[InputRecord("s", {"x": 1}, team.ben, 2)],
                ),
                status="completed",
            )
        assert f"role {team.ana} may not record {team.ben}" in str(got.value)
        loaded, _ = store.load("r1")
        assert (loaded.version, loaded.status) == (1, "running")
        assert store.approvals() == []
    finally:
        store.close()


def test_the_owner_may_copy_in_runs_decided_by_others(team: Team, tmp_path: Path) -> None:
    """The tables' owner (an admin) writes runs recorded elsewhere with their actors, as
    ``master store copy`` does; ana, not the owner, may not."""
    from master_sdk.memory.sqlite import SQLiteStore

    source = SQLiteStore(tmp_path / "s.sqlite3")
    run = new_run("r1", created_by="carla")
    source.commit(run, Changes(), expect_version=None, label="start")
    advance(source, run, Changes(approvals=[ApprovalRecord("s", "approved", "dan", None, 1)]))
    runs, flows = list(source.read_runs()), source.flow_sources()
    source.close()
    ana = PostgresStore(team.ana_url)
    try:
        with pytest.raises(ms.StoreError, match="may not record carla"):
            ana.write_runs(runs, flows)
    finally:
        ana.close()
    owner = PostgresStore(team.owner_url)
    try:
        assert owner.write_runs(runs, flows) == ["r1"]
        assert [a.approval.by for a in owner.approvals()] == ["dan"]
        assert owner.load("r1")[0].created_by == "carla"
    finally:
        owner.close()
