"""``identity: database``: on a shared PostgreSQL store the actor is the role the store
signs in as. A run's starter and a decision's actor are that role whatever ``by=`` says,
a ``by=`` naming anyone else is refused, and four-eyes holds against the roles."""

from __future__ import annotations

import uuid
from pathlib import Path

import psycopg
import pytest

import master_sdk as ms
from master_sdk.memory.postgres import PostgresStore
from master_sdk.memory.store import ApprovalRecord, Changes
from tests.support import postgres
from tests.support.durability import make_ledger_project


def role_url(url: str, role: str) -> str:
    """``url`` signing in as a new login role (trusted on loopback by the test server)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN SUPERUSER')
    return url.replace("postgresql://postgres@", f"postgresql://{role}@")


@pytest.fixture
def roles(tmp_path: Path) -> tuple[Path, str, str]:
    """A ledger project with four_eyes and identity: database, and the URLs of one
    database for two roles."""
    root = make_ledger_project(
        tmp_path / "project",
        app="identity: database\n",
        policy="policy:\n  four_eyes: true\n",
    )
    url, tag = postgres.fresh_url(), uuid.uuid4().hex[:6]
    return root, role_url(url, f"starter_{tag}"), role_url(url, f"checker_{tag}")


def test_the_database_role_is_the_starter_and_the_actor_whatever_by_says(
    roles: tuple[Path, str, str], tmp_path: Path
) -> None:
    """The starter role may not approve its own run (four-eyes against roles), a by=
    naming another person is refused, and the other role's approval is recorded as that
    role."""
    root, starter_url, checker_url = roles
    starter = starter_url.split("//")[1].split("@")[0]
    checker = checker_url.split("//")[1].split("@")[0]
    ledger = str(tmp_path / "ledger")
    with ms.Workbench.open(root, store=starter_url) as wb:
        assert wb.user == starter
        with pytest.raises(ms.DecisionRefused, match="identity: database"):
            wb.run("ledger/pause", {"ledger": ledger}, by="somebody_else")
        run = wb.run("ledger/pause", {"ledger": ledger})
        assert run.status == "waiting_approval"
        with pytest.raises(ms.DecisionRefused, match="four_eyes"):
            run.approve()
        with pytest.raises(ms.DecisionRefused, match="identity"):
            run.approve(by=checker)  # naming the other role does not make one that role
    with ms.Workbench.open(root, store=checker_url) as wb:
        wb.get_run(run.id).approve(comment="fine")
        assert list(wb.approvals()["by"]) == [checker]
        assert list(wb.runs()["created_by"]) == [starter]


def test_a_store_with_identity_database_records_its_role_even_for_other_names(
    roles: tuple[Path, str, str],
) -> None:
    """Below the workbench too: a commit naming someone else as starter or approver is
    recorded with the store's role."""
    _root, starter_url, _checker_url = roles
    from tests.contract.test_store_contract import advance, new_run

    store = PostgresStore(starter_url, identity="database")
    try:
        role = store.role
        assert role is not None and role.startswith("starter_")
        run = new_run("r1", created_by="mallory")
        store.commit(run, Changes(), expect_version=None, label="start")
        advance(
            store, run, Changes(approvals=[ApprovalRecord("s", "approved", "mallory", None, 1)])
        )
        assert store.load("r1")[0].created_by == role
        assert [a.approval.by for a in store.approvals()] == [role]
    finally:
        store.close()


def test_identity_database_on_a_sqlite_store_is_a_config_error(tmp_path: Path) -> None:
    """A SQLite file has no signed-in role: identity: database is refused, saying why."""
    root = make_ledger_project(tmp_path / "project", app="identity: database\n")
    with pytest.raises(ms.ConfigError, match="identity: database needs a PostgreSQL store"):
        ms.Workbench.open(root, store=tmp_path / "runs.sqlite3")
