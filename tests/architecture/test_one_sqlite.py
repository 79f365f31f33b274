"""One SQLite library per process touches a store file (DESIGN.md §5).

A second copy of SQLite in the same process — a driver that bundles its own, such as the
ADBC SQLite driver — does not share POSIX advisory locks with the first: closing its
connection drops the locks of the ``sqlite3`` connection, another process then believes it
is the last user of the store and deletes the WAL still being written. So ``master_sdk``
imports no SQLite binding but the standard library's, and a process that has used every
store reader has exactly one SQLite library mapped.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

# other SQLite bindings, or libraries carrying their own SQLite (duckdb's sqlite scanner)
OTHER_SQLITE = (
    "adbc_driver_sqlite",
    "adbc_driver_manager",
    "apsw",
    "pysqlite3",
    "sqlean",
    "sqlcipher3",
    "duckdb",
)
OTHER_SQLITE_DISTS = ("adbc-driver-sqlite", "apsw", "pysqlite3", "sqlean-py", "duckdb")


def imported_modules(source: str) -> list[tuple[int, str]]:
    """``(line, module)`` of every import in ``source``, ``importlib.import_module("x")``
    and ``__import__("x")`` with a literal name included."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            first = node.args[0]
            if name in ("import_module", "__import__") and isinstance(first, ast.Constant):
                found.append((node.lineno, str(first.value)))
    return found


def other_sqlite_imports(root: Path) -> list[str]:
    """``file:line module`` for every import of another SQLite binding under ``root``."""
    hits = []
    for path in sorted(root.rglob("*.py")):
        for line, module in imported_modules(path.read_text(encoding="utf-8")):
            if module.split(".")[0] in OTHER_SQLITE:
                hits.append(f"{path.relative_to(root.parent)}:{line} {module}")
    return hits


def test_master_sdk_imports_no_sqlite_binding_but_the_standard_library() -> None:
    """No module of master_sdk imports adbc*, apsw, pysqlite3, sqlean or duckdb."""
    assert other_sqlite_imports(REPO_ROOT / "master_sdk") == []


def test_the_check_finds_a_planted_second_sqlite_binding(tmp_path: Path) -> None:
    """The import check reports plain, from- and importlib imports of another binding."""
    package = tmp_path / "master_sdk" / "memory"
    package.mkdir(parents=True)
    (package / "reader.py").write_text(
        textwrap.dedent(
            """
            import sqlite3
            import apsw
            from adbc_driver_sqlite import dbapi
            import importlib
            duck = importlib.import_module("duckdb")
            """
        ),
        encoding="utf-8",
    )
    assert other_sqlite_imports(tmp_path / "master_sdk") == [
        "master_sdk/memory/reader.py:3 apsw",
        "master_sdk/memory/reader.py:4 adbc_driver_sqlite",
        "master_sdk/memory/reader.py:6 duckdb",
    ]


def test_no_dependency_brings_a_second_sqlite() -> None:
    """pyproject.toml's dependencies and extras name no other SQLite binding."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    wanted = list(project["project"]["dependencies"])
    for extra in project["project"].get("optional-dependencies", {}).values():
        wanted.extend(extra)
    names = {
        w.split(";")[0].split("[")[0].split("<")[0].split(">")[0].split("=")[0].strip()
        for w in wanted
    }
    assert names.isdisjoint(OTHER_SQLITE_DISTS), names & set(OTHER_SQLITE_DISTS)


READ_EVERYTHING = textwrap.dedent(
    """
    import json, shutil, sys
    from pathlib import Path
    sys.modules.setdefault("rfc3987_syntax", None)
    import master_sdk as ms

    repo, tmp = Path(sys.argv[1]), Path(sys.argv[2])
    for name in ("products", "configs"):
        shutil.copytree(repo / name, tmp / name)
    with ms.Workbench.open(tmp, store=tmp / "s.sqlite3") as wb:
        run = wb.run("hello_world/greet", {"text": "hi"})
        run.approve(by="ana")
        wb.runs(); wb.traces(); wb.approvals(); wb.store_info()
        run.trace(); run.steps(); run.budget()
        wb.export_store(tmp / "out.jsonl"); wb.export_store(tmp / "out.sqlite3")
    with open("/proc/self/maps") as maps:
        mapped = sorted({line.split()[-1] for line in maps if "sqlite" in line.lower()})
    print(json.dumps({"mapped": mapped, "modules": sorted(sys.modules)}))
    """
)


def test_a_process_that_used_every_store_reader_maps_one_sqlite_library(tmp_path: Path) -> None:
    """After a run, every frame, store info and both exports, the process has loaded no
    other SQLite binding and maps no SQLite library but the one ``sqlite3`` uses."""
    done = subprocess.run(
        [sys.executable, "-c", READ_EVERYTHING, str(REPO_ROOT), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=REPO_ROOT,
    )
    assert done.returncode == 0, done.stderr
    import json

    report = json.loads(done.stdout.strip().splitlines()[-1])
    loaded = [m for m in report["modules"] if m.split(".")[0] in OTHER_SQLITE]
    assert loaded == []
    libraries = [
        Path(p).name
        for p in report["mapped"]
        if not Path(p).name.startswith("_sqlite3.")  # the stdlib module, not a library
    ]
    assert len(libraries) <= 1, libraries  # one libsqlite3, or none when linked statically
    assert all(name.startswith("libsqlite3") for name in libraries), libraries
