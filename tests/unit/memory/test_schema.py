"""Schema versions: released stores open, older ones migrate in place, newer ones are refused.

``tests/fixtures/stores/v<N>.sqlite3`` is a store made by the release that introduced
schema version N (one completed and one paused hello_world run), with the project it was
made with in ``v<N>_project/``. The migration machinery is proven with a synthetic next
version, patched in for the test only.
"""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from pathlib import Path

import pytest

import master_sdk as ms
from master_sdk.memory import schema
from master_sdk.memory.sqlite import SQLiteStore

FIXTURES = Path(__file__).parents[2] / "fixtures" / "stores"
RELEASED = sorted(FIXTURES.glob("v*.sqlite3"))


def copy_release(path: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of a released store and of its project, to open and change freely."""
    project = tmp_path / "project"
    shutil.copytree(path.with_name(f"{path.stem}_project"), project)
    store = tmp_path / path.name
    shutil.copyfile(path, store)
    return project, store


def user_version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


def columns(path: Path, table: str) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
    finally:
        conn.close()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_fixture_is_kept_for_every_released_schema_version() -> None:
    """There is a store file for each version from 1 to the current one."""
    versions = sorted(int(p.stem[1:]) for p in RELEASED)
    assert versions == list(range(1, schema.SCHEMA_VERSION + 1))
    for path in RELEASED:
        assert user_version(path) == int(path.stem[1:])


@pytest.mark.parametrize("release", RELEASED, ids=lambda p: p.stem)
def test_a_released_store_opens_reads_and_resumes_its_paused_run(
    release: Path, tmp_path: Path
) -> None:
    """The current code opens a store of each released version (migrating it), shows its
    runs, trace and approvals, and continues the run that was paused in it."""
    project, store = copy_release(release, tmp_path)
    with ms.Workbench.open(project, store=store) as wb:
        assert user_version(store) == schema.SCHEMA_VERSION
        runs = wb.runs().set_index("status")
        assert sorted(runs.index) == ["completed", "waiting_approval"]
        done = wb.get_run(runs.loc["completed", "run_id"])
        assert done.output["audience"] == "the board"
        assert "A finished run" in done.output["summary"]
        assert list(done.trace()["event"])[-1] == "run_completed"
        assert list(wb.approvals()["by"]) == ["ana"]

        paused = wb.get_run(runs.loc["waiting_approval", "run_id"])
        assert paused.waiting_for is not None and paused.waiting_for["step"] == "review"
        paused.approve(by="bo")
        paused.submit({"audience": "a colleague"}, by="bo")
        assert paused.status == "completed"
        assert paused.output["audience"] == "a colleague"
        assert wb.store_info()["integrity"] == "ok"


def _next_version(monkeypatch: pytest.MonkeyPatch, *steps: schema.Migration) -> None:
    base = schema.SCHEMA_VERSION
    monkeypatch.setattr(schema, "SCHEMA_VERSION", base + len(steps))
    monkeypatch.setattr(
        schema, "MIGRATIONS", {**schema.MIGRATIONS, **{base + i: s for i, s in enumerate(steps)}}
    )


def test_an_older_store_is_migrated_in_place_inside_one_transaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Opening a store one version behind runs the migration inside the opening
    transaction, sets the new version and keeps every run."""
    _, store = copy_release(RELEASED[-1], tmp_path)
    seen: list[bool] = []

    def add_labels(conn: sqlite3.Connection) -> None:
        seen.append(conn.in_transaction)
        conn.execute("ALTER TABLE runs ADD COLUMN labels TEXT")
        conn.execute("UPDATE runs SET labels = '[]'")

    _next_version(monkeypatch, add_labels)
    opened = SQLiteStore(store)
    assert seen == [True]
    assert user_version(store) == schema.SCHEMA_VERSION
    assert "labels" in columns(store, "runs")
    assert opened.info()["runs"] == 2
    opened.close()
    SQLiteStore(store).close()  # already current: the migration does not run again
    assert seen == [True]


def test_a_failing_migration_rolls_back_every_step_and_names_the_versions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two migrations where the second fails: StoreError names the failing step, and the
    file is left at its old version without the first step's change."""
    _, store = copy_release(RELEASED[-1], tmp_path)
    old = schema.SCHEMA_VERSION

    def add_labels(conn: sqlite3.Connection) -> None:
        conn.execute("ALTER TABLE runs ADD COLUMN labels TEXT")

    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE tags (name TEXT)")
        raise ValueError("bad data in runs")

    _next_version(monkeypatch, add_labels, broken)
    with pytest.raises(ms.StoreError) as caught:
        SQLiteStore(store)
    message = str(caught.value)
    assert f"from schema version {old + 1} to {old + 2} failed" in message
    assert "ValueError: bad data in runs" in message
    assert f"still at version {old}" in message and str(store) in message
    assert user_version(store) == old
    assert "labels" not in columns(store, "runs")
    assert columns(store, "tags") == []


def test_a_missing_migration_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A code version that forgot a migration step says so instead of half-upgrading."""
    _, store = copy_release(RELEASED[-1], tmp_path)
    monkeypatch.setattr(schema, "SCHEMA_VERSION", schema.SCHEMA_VERSION + 1)
    with pytest.raises(ms.StoreError, match="no migration from store schema version"):
        SQLiteStore(store)
    assert user_version(store) == schema.SCHEMA_VERSION - 1


def test_a_store_from_a_newer_version_is_refused_and_left_unchanged(tmp_path: Path) -> None:
    """A store written by a newer schema (user_version = current + 1) is refused with a
    message naming both versions and what to do; the file is not touched."""
    _, store = copy_release(RELEASED[-1], tmp_path)
    conn = sqlite3.connect(store)
    conn.execute(f"PRAGMA user_version = {schema.SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    before = digest(store)
    with pytest.raises(ms.StoreError) as caught:
        SQLiteStore(store)
    message = str(caught.value)
    assert f"schema version {schema.SCHEMA_VERSION + 1} is newer" in message
    assert f"understands ({schema.SCHEMA_VERSION})" in message
    assert "upgrade master_sdk" in message and str(store) in message
    assert digest(store) == before
    assert not Path(f"{store}-wal").exists()


def test_a_sqlite_file_that_is_not_a_store_is_refused(tmp_path: Path) -> None:
    """Tables without a schema version: refused, not adopted."""
    other = tmp_path / "other.sqlite3"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE notes (x)")
    conn.commit()
    conn.close()
    with pytest.raises(ms.StoreError, match="not a master_sdk store"):
        SQLiteStore(other)
    garbage = tmp_path / "garbage.sqlite3"
    garbage.write_bytes(b"not a database at all" * 100)
    with pytest.raises(ms.StoreError, match="cannot open the store"):
        SQLiteStore(garbage)
