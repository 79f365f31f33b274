"""Opening a store: every accepted way of naming one, and a one-line error for the rest.

``Workbench.open(store=)``, ``store:`` in ``configs/app.yaml``, ``MASTER_STORE`` and the
CLI's ``--store`` all go through ``memory/open.py``.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import master_sdk as ms
from master_sdk.memory.inmemory import InMemoryStore
from master_sdk.memory.open import store_location

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the hello_world project (products and configs)."""
    root = tmp_path / "project"
    shutil.copytree(REPO / "products", root / "products")
    shutil.copytree(REPO / "configs", root / "configs")
    return root


def completes_a_run(wb: ms.Workbench) -> str:
    run = wb.run("hello_world/greet", {"text": "hi"})
    run.approve(by="ana")
    run.submit({"audience": "board"}, by="ana")
    assert run.status == "completed"
    assert len(wb.runs()) == 1 and len(run.trace()) == 16 and len(wb.approvals()) == 1
    return run.id


@pytest.mark.parametrize(
    ("spec", "where"),
    [
        ("runs/a.sqlite3", "project/runs/a.sqlite3"),
        ("sqlite:///runs/b.sqlite3", "project/runs/b.sqlite3"),
        ("sqlite:////{tmp}/abs/c.sqlite3", "abs/c.sqlite3"),
        ("{tmp}/abs/d.sqlite3", "abs/d.sqlite3"),
    ],
)
def test_a_path_or_sqlite_url_opens_that_file(
    project: Path, tmp_path: Path, spec: str, where: str
) -> None:
    """A relative path and ``sqlite:///relative`` are under the project folder; an
    absolute path and ``sqlite:////absolute`` are where they say."""
    named = spec.format(tmp=str(tmp_path).lstrip("/") if spec.startswith("sqlite") else tmp_path)
    with ms.Workbench.open(project, store=named) as wb:
        completes_a_run(wb)
        assert wb.store_info()["path"] == str(tmp_path / where)
    assert (tmp_path / where).is_file()


def test_a_home_relative_path_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``~/x.sqlite3`` is in the user's home folder, not a folder named ``~``."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert store_location("~/runs/x.sqlite3", tmp_path / "p") == tmp_path / "home/runs/x.sqlite3"


def test_memory_store_runs_a_whole_flow_and_keeps_nothing_on_disk(project: Path) -> None:
    """``memory://``: runs, traces, steps and approvals work; no store file is created."""
    with ms.Workbench.open(project, store="memory://") as wb:
        completes_a_run(wb)
        info = wb.store_info()
        assert (info["kind"], info["path"], info["runs"]) == ("memory", "memory://", 1)
        assert "memory://" in repr(wb)
    assert not (project / "storage").exists()


def test_a_store_object_is_used_as_it_is(project: Path) -> None:
    """``store=`` given a Store object: the workbench writes to that very object, and
    leaves it open when it closes (its owner closes it)."""
    mine = InMemoryStore()
    with ms.Workbench.open(project, store=mine) as wb:
        run_id = completes_a_run(wb)
        assert wb.store is mine
    assert [r for r, _ in mine.find_runs()] == [run_id]


def test_app_yaml_and_the_environment_name_the_store_too(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``store: memory://`` in configs/app.yaml opens a memory store; MASTER_STORE wins
    over the file, and store= over both."""
    app = project / "configs" / "app.yaml"
    app.write_text(app.read_text(encoding="utf-8").replace(
        "store: storage/master.sqlite3", "store: memory://"), encoding="utf-8")  # fmt: skip
    with ms.Workbench.open(project) as wb:
        assert wb.store_info()["kind"] == "memory"
    monkeypatch.setenv("MASTER_STORE", "sqlite:///env/e.sqlite3")
    with ms.Workbench.open(project) as wb:
        assert wb.store_info()["path"] == str(project / "env" / "e.sqlite3")
    with ms.Workbench.open(project, store="memory://") as wb:
        assert wb.store_info()["kind"] == "memory"


BAD_NAMES = [
    ("", ms.ConfigError, "the store name is empty"),
    ("   ", ms.ConfigError, "the store name is empty"),
    (":memory:", ms.ConfigError, "use store='memory://'"),
    ("file:runs.db?mode=memory", ms.ConfigError, "file: URIs are not accepted"),
    ("ftp://host/runs.db", ms.ConfigError, "unknown store scheme 'ftp://'"),
    ("postgresql://ana:pw-77@db/runs", ms.ConfigError, "must not hold a password"),
    ("postgresql://ana@db/runs?password=pw-77", ms.ConfigError, "use password_ref"),
    ("postgresql:///runs", ms.ConfigError, "names its server"),
    ("sqlite://host/runs.db", ms.ConfigError, "a sqlite URL has no host"),
    ("sqlite:///runs.db?mode=ro", ms.ConfigError, "sqlite URLs take no options"),
    ("sqlite:///", ms.ConfigError, "names no file"),
    ("memory://shared", ms.ConfigError, "memory:// takes nothing after it"),
    ("mailto:x", ms.ConfigError, "is not a store name"),
]


@pytest.mark.parametrize(("spec", "error", "says"), BAD_NAMES)
def test_a_name_that_is_not_a_store_is_one_config_error_saying_what_to_give(
    project: Path, spec: str, error: type[Exception], says: str
) -> None:
    """Each malformed name is a ConfigError naming it and the accepted forms; nothing is
    created."""
    with pytest.raises(error) as caught:
        ms.Workbench.open(project, store=spec)
    message = str(caught.value)
    assert says in message and "\n" not in message
    assert not (project / "storage").exists()


def test_a_directory_or_a_file_under_a_file_is_one_store_error(
    project: Path, tmp_path: Path
) -> None:
    """A directory where the file should be, and a path whose folder is a file, are
    StoreErrors saying so (never IsADirectoryError or a sqlite3 error)."""
    (tmp_path / "folder").mkdir()
    with pytest.raises(ms.StoreError, match="is a directory; the store is a file"):
        ms.Workbench.open(project, store=tmp_path / "folder")
    (tmp_path / "plain").write_text("x", encoding="utf-8")
    with pytest.raises(ms.StoreError, match="is not a directory"):
        ms.Workbench.open(project, store=tmp_path / "plain" / "s.sqlite3")


def test_a_file_that_is_not_a_database_is_one_store_error(project: Path, tmp_path: Path) -> None:
    """Garbage where the store should be: StoreError naming the file, no traceback of
    sqlite3.DatabaseError."""
    garbage = tmp_path / "garbage.sqlite3"
    garbage.write_bytes(b"not a database at all" * 100)
    with pytest.raises(ms.StoreError, match="cannot open the store") as caught:
        ms.Workbench.open(project, store=garbage)
    assert str(garbage) in str(caught.value)
    assert caught.value.__cause__ is None or isinstance(caught.value.__cause__, ms.MasterError)


@contextlib.contextmanager
def read_only_mount(folder: Path) -> Iterator[Path]:
    """A real read-only filesystem mounted at ``folder`` (skips where mounting is not
    allowed)."""
    folder.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a read-only filesystem here: {done.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=False)


def test_a_store_on_a_read_only_mount_is_refused_saying_read_only(
    project: Path, tmp_path: Path
) -> None:
    """A store file (or its folder) on a read-only mount: StoreError saying "read-only"
    and what to do, through the API and the CLI (exit 1, one line on stderr)."""
    with read_only_mount(tmp_path / "ro") as ro:
        for spec in (ro / "s.sqlite3", ro / "sub" / "s.sqlite3"):
            with pytest.raises(ms.StoreError, match="read-only") as caught:
                ms.Workbench.open(project, store=spec)
            assert "writable folder" in str(caught.value)
        done = cli(project, str(ro / "s.sqlite3"), "runs")
        assert done.returncode == 1
        assert done.stderr.count("\n") == 1 and "read-only" in done.stderr


def cli(root: Path, store: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "master_sdk.cli", "--root", str(root), "--store", store, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("", "the store name is empty"),
        ("ftp://x/y", "unknown store scheme"),
        (":memory:", "memory://"),
        ("{tmp}", "is a directory"),
    ],
)
def test_the_cli_store_option_fails_with_one_line(
    project: Path, tmp_path: Path, spec: str, says: str
) -> None:
    """``master --store X runs`` with a bad X: exit 1 and one ``error:`` line on stderr."""
    done = cli(project, spec.format(tmp=tmp_path), "runs")
    assert done.returncode == 1, done.stdout
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
    assert says in done.stderr


def test_the_cli_runs_on_a_sqlite_url(project: Path) -> None:
    """``master --store sqlite:///runs/c.sqlite3 store info`` opens that file."""
    done = cli(project, "sqlite:///runs/c.sqlite3", "store", "info")
    assert done.returncode == 0, done.stderr
    assert f"path: {project / 'runs' / 'c.sqlite3'}" in done.stdout
