"""The SQLite store's durability settings and health check, on real files."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

import master_sdk as ms
from master_sdk.memory.sqlite import SQLiteStore

REPO = Path(__file__).resolve().parents[3]


def project(tmp_path: Path, app: str = "") -> Path:
    root = tmp_path / "project"
    (root / "configs").mkdir(parents=True)
    (root / "configs" / "app.yaml").write_text(app, encoding="utf-8")
    return root


def test_a_store_is_opened_in_wal_with_synchronous_full_by_default(tmp_path: Path) -> None:
    """Without settings: WAL, synchronous=FULL (a committed step survives power loss),
    a 5 s busy timeout — as SQLite itself reports them after opening."""
    with ms.Workbench.open(project(tmp_path)) as wb:
        info = wb.store_info()
    assert info["journal_mode"] == "wal"
    assert info["synchronous"] == "FULL"
    assert info["busy_timeout_ms"] == 5000
    assert info["schema_version"] >= 1
    assert info["integrity"] == "ok"


def test_synchronous_normal_is_an_explicit_opt_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``synchronous: NORMAL`` in app.yaml, or MASTER_SYNCHRONOUS, switches it; the busy
    timeout follows its setting too."""
    with ms.Workbench.open(project(tmp_path, "synchronous: NORMAL\nbusy_timeout_ms: 250\n")) as wb:
        info = wb.store_info()
    assert (info["synchronous"], info["busy_timeout_ms"]) == ("NORMAL", 250)
    monkeypatch.setenv("MASTER_SYNCHRONOUS", "FULL")
    with ms.Workbench.open(tmp_path / "project") as wb:
        assert wb.store_info()["synchronous"] == "FULL"


def test_an_unknown_synchronous_level_is_a_config_error(tmp_path: Path) -> None:
    """OFF (or anything else) is refused when the settings load, naming the key."""
    with pytest.raises(ms.ConfigError) as caught:
        ms.Workbench.open(project(tmp_path, "synchronous: 'OFF'\n"))
    assert "synchronous" in str(caught.value) and "app.yaml" in str(caught.value)
    with pytest.raises(ms.StoreError, match="FULL or NORMAL"):
        SQLiteStore(tmp_path / "x.sqlite3", synchronous="EXTRA")


def test_integrity_check_is_ok_for_a_healthy_store_with_approvals_and_inputs(
    tmp_path: Path,
) -> None:
    """A store holding approvals and user inputs checks ``ok`` (SQLite 3.40-3.41 falsely
    report their NOT NULL columns; the store confirms such findings against the rows)."""
    store = SQLiteStore(tmp_path / "s.sqlite3")
    store.conn.execute("INSERT INTO approvals VALUES (1, 'review', 'approved', 'ana', NULL, 5)")
    store.conn.execute("INSERT INTO user_inputs VALUES (1, 'ask', '{}', 'ana', 6)")
    assert store.integrity_check() == "ok"
    store.close()


def test_integrity_check_still_reports_a_real_null_in_a_not_null_column(tmp_path: Path) -> None:
    """A NULL that really is there (here smuggled in by editing the schema) is reported."""
    path = tmp_path / "s.sqlite3"
    store = SQLiteStore(path)
    store.conn.execute("INSERT INTO approvals VALUES (1, 'review', 'approved', NULL, NULL, 5)")
    store.close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA writable_schema = ON")
    (sql,) = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'approvals'").fetchone()
    conn.execute(
        "UPDATE sqlite_master SET sql = ? WHERE name = 'approvals'",
        (sql.replace("decided_by TEXT", "decided_by TEXT NOT NULL"),),
    )
    conn.close()
    store = SQLiteStore(path)
    assert store.integrity_check() == "NULL value in approvals.decided_by"
    store.close()


def test_a_full_disk_during_a_commit_is_a_store_error_and_nothing_is_written(
    tmp_path: Path,
) -> None:
    """When SQLite cannot write (here: the file may not grow), the error is a StoreError
    naming the store, the transaction is rolled back, and the store stays usable."""
    root = tmp_path / "project"
    shutil.copytree(REPO / "products", root / "products")
    shutil.copytree(REPO / "configs", root / "configs")
    with ms.Workbench.open(root, store=tmp_path / "s.sqlite3") as wb:
        # no free page left to reuse (creating a store migrates a version 1 trace table away)
        wb.store.conn.execute("VACUUM")
        (pages,) = wb.store.conn.execute("PRAGMA page_count").fetchone()
        wb.store.conn.execute(f"PRAGMA max_page_count = {pages}")
        with pytest.raises(ms.StoreError, match="could not write") as caught:
            wb.run("hello_world/greet", {"text": "x" * 4000})  # needs a new page
        assert "nothing was written" in str(caught.value)
        assert len(wb.runs()) == 0
        wb.store.conn.execute("PRAGMA max_page_count = 1073741823")
        assert wb.run("hello_world/greet", {"text": "fits now"}).status == "waiting_approval"
        assert wb.store_info()["integrity"] == "ok"
