"""Opening a PostgreSQL store: by URL, app.yaml or MASTER_STORE; the password only from the
secrets file; a newer schema refused; a missing driver named with its install command.

Runs against the throwaway server of ``tests/support/postgres.py``."""

from __future__ import annotations

import shutil
import sys
import uuid
from pathlib import Path

import psycopg
import pytest

import master_sdk as ms
from master_sdk.memory.postgres import PostgresStore
from tests.support import postgres

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the hello_world project (products and configs)."""
    root = tmp_path / "project"
    shutil.copytree(REPO / "products", root / "products")
    shutil.copytree(REPO / "configs", root / "configs")
    return root


def greet(wb: ms.Workbench) -> ms.Run:
    run = wb.run("hello_world/greet", {"text": "hi"})
    run.approve(by="ana")
    run.submit({"audience": "board"}, by="ana")
    return run


def test_a_workbench_opened_on_a_postgresql_url_runs_flows_into_the_database(
    project: Path,
) -> None:
    """store="postgresql://..." runs a flow there; a second workbench sees the run, its
    trace and its approval."""
    url = postgres.fresh_url()
    with ms.Workbench.open(project, store=url) as wb:
        run = greet(wb)
        assert run.status == "completed"
        info = wb.store_info()
        assert (info["kind"], info["path"]) == ("postgresql", url)
    with ms.Workbench.open(project, store=url) as other:
        assert list(other.runs()["run_id"]) == [run.id]
        assert len(other.get_run(run.id).trace()) > 0
        assert list(other.approvals()["by"]) == ["ana"]


def test_app_yaml_and_master_store_name_a_postgresql_store(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """store: in configs/app.yaml opens the database; MASTER_STORE overrides it."""
    first, second = postgres.fresh_url(), postgres.fresh_url()
    app = project / "configs" / "app.yaml"
    app.write_text(app.read_text(encoding="utf-8").replace(
        "store: storage/master.sqlite3", f"store: {first}"), encoding="utf-8")  # fmt: skip
    with ms.Workbench.open(project) as wb:
        assert wb.store_info()["path"] == first
    monkeypatch.setenv("MASTER_STORE", second)
    with ms.Workbench.open(project) as wb:
        assert wb.store_info()["path"] == second


def _role_with_password(password: str) -> str:
    """A database owned by the role ``ana``, who signs in with ``password``; its URL."""
    server = postgres.server()
    name = "p_" + uuid.uuid4().hex[:12]
    with psycopg.connect(server.url(), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'ana'").fetchone()
        if exists is None:
            conn.execute("CREATE ROLE ana LOGIN")
        conn.execute(f"ALTER ROLE ana PASSWORD '{password}'")
        conn.execute(f'CREATE DATABASE "{name}" OWNER ana')
    return f"postgresql://ana@127.0.0.1:{server.port}/{name}"


def test_the_password_comes_from_the_secrets_file_and_is_redacted_from_runs(
    project: Path,
) -> None:
    """password_ref names the secret; the workbench signs in with it, and the password is
    one of the values redacted from everything stored."""
    url = _role_with_password("pw-4be1c9d7")
    (project / "secrets").mkdir()
    (project / "secrets" / "secrets.yaml").write_text("postgres:\n  password: pw-4be1c9d7\n")
    app = project / "configs" / "app.yaml"
    app.write_text(app.read_text(encoding="utf-8") + "password_ref: postgres.password\n")
    with ms.Workbench.open(project, store=url) as wb:
        run = wb.run("hello_world/greet", {"text": "say pw-4be1c9d7"})
        assert "pw-4be1c9d7" not in str(wb.store.load(run.id)[0].inputs)
        assert wb.store_info()["kind"] == "postgresql"


def test_a_wrong_or_missing_password_is_one_store_error_naming_password_ref(
    project: Path,
) -> None:
    """Without the right password the server refuses: a StoreError naming the URL and
    password_ref, never the password."""
    url = _role_with_password("pw-right-1")
    with pytest.raises(ms.StoreError) as caught:
        PostgresStore(url, password="pw-wrong-2", connect_timeout_s=5)
    assert url in str(caught.value) and "password_ref" in str(caught.value)
    assert "pw-wrong-2" not in str(caught.value)


def test_a_missing_secret_named_by_password_ref_is_a_config_error(project: Path) -> None:
    """password_ref naming nothing in secrets.yaml is a ConfigError saying so."""
    app = project / "configs" / "app.yaml"
    app.write_text(app.read_text(encoding="utf-8") + "password_ref: postgres.password\n")
    with pytest.raises(ms.ConfigError, match=r"password_ref .postgres\.password."):
        ms.Workbench.open(project, store="memory://")


def test_a_url_with_a_password_is_refused_without_showing_it(project: Path) -> None:
    """The password in a URL never reaches a message: it is shown as ***."""
    with pytest.raises(ms.ConfigError) as caught:
        ms.Workbench.open(project, store="postgresql://ana:pw-93f1@db.example:5432/runs")
    message = str(caught.value)
    assert "pw-93f1" not in message and "ana:***@db.example:5432" in message


def test_a_database_with_a_newer_schema_is_refused_and_left_unchanged() -> None:
    """A schema version above this master_sdk's is a StoreError naming both versions."""
    url = postgres.fresh_url()
    PostgresStore(url).close()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE master_meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(ms.StoreError, match="schema is version 99, newer"):
        PostgresStore(url)
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT value FROM master_meta WHERE key = 'schema_version'"
        ).fetchone()
        assert row == ("99",)


def test_without_psycopg_the_error_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """When psycopg cannot be imported, opening is a StoreError with the pip command."""
    url = postgres.fresh_url()
    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(ms.StoreError, match=r"pip install 'master-sdk\[postgres\]'"):
        PostgresStore(url)


def test_many_processes_opening_a_new_database_migrate_it_once() -> None:
    """Stores opened at once from many threads on an empty database all succeed (the
    advisory lock serialises the migration)."""
    import threading

    url = postgres.fresh_url()
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            PostgresStore(url).close()
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_prepare_off_in_the_url_runs_flows_without_prepared_statements(project: Path) -> None:
    """``?prepare=off`` (for a pooler that does not track prepared statements) is taken out
    of the URL before connecting; flows run as usual, repeated statements included."""
    url = postgres.fresh_url() + "?prepare=off"
    with ms.Workbench.open(project, store=url) as wb:
        assert wb.store.prepared is False
        runs = [greet(wb) for _ in range(6)]  # past psycopg's prepare threshold
        assert {r.status for r in runs} == {"completed"}
    with ms.Workbench.open(project, store=url.removesuffix("?prepare=off")) as wb:
        assert wb.store.prepared is True
        assert len(wb.runs()) == 6


def test_a_bad_prepare_option_is_a_config_error_naming_the_values(project: Path) -> None:
    """``prepare=`` takes on or off; anything else is refused, saying what to give."""
    with pytest.raises(ms.ConfigError, match="prepare=on or prepare=off"):
        ms.Workbench.open(project, store=postgres.fresh_url() + "?prepare=maybe")


def test_a_lost_prepared_statement_says_to_turn_prepare_off() -> None:
    """The error a pooler causes when it hands this client another server connection names
    the remedy."""
    from master_sdk.memory.postgres.connecting import pooler_hint

    hint = pooler_hint(RuntimeError('prepared statement "_pg3_0" does not exist'))
    assert "?prepare=off" in hint and "max_prepared_statements" in hint
    assert pooler_hint(RuntimeError("relation does not exist")) == ""
