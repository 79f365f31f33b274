"""Vector memory on a PostgreSQL store: durable, shared between processes, crash-safe.

The ``mem`` product (``tests/support/memory_project.py``) runs on a workbench opened with
a ``postgresql://`` store on the test server; other processes open the same database.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import master_sdk as ms
from master_sdk.orchestrator.crashpoints import CRASH_EXIT_CODE
from tests.support import postgres
from tests.support.durability import REPO, driver_env
from tests.support.memory_project import make_memory_project

TEXTS = [f"note number {i} about parcels" for i in range(20)]
REMEMBER = """
import json, sys
import master_sdk as ms
wb = ms.Workbench.open(sys.argv[1], store=sys.argv[2])
run = wb.run("mem/remember", inputs={"texts": json.loads(sys.argv[3]), "tag": "crash"})
print(json.dumps({"status": run.status, "id": run.id}))
"""
SEARCH = """
import json, sys
import master_sdk as ms
with ms.Workbench.open(sys.argv[1], store=sys.argv[2]) as wb:
    hits = wb.memory("mem/notes").search(sys.argv[3], k=3)
    print(json.dumps([[h.id, h.text, h.score] for h in hits]))
"""


def child(script: str, *args: str, crash: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        env=driver_env({"MASTER_CRASH_POINT": crash} if crash else None),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def stored(url: str) -> list[tuple[str, int]]:
    import psycopg

    with psycopg.connect(url) as conn:
        return [(str(r[0]), int(r[1])) for r in conn.execute("SELECT id, attempt FROM vectors")]


def test_entries_added_in_one_process_are_searched_in_another(tmp_path: Path) -> None:
    """A tool run adds through PostgreSQL; a fresh process finds the best match; a later
    add is seen by a workbench that had already loaded the collection."""
    root = make_memory_project(tmp_path / "project")
    url = postgres.fresh_url()
    with ms.Workbench.open(root, store=url) as wb:
        run = wb.run("mem/remember", inputs={"texts": ["parcel arrived damaged"], "tag": "a"})
        assert run.status == "completed", run.error
        notes = wb.memory("mem/notes")
        assert [h.text for h in notes.search("parcel", k=1)] == ["parcel arrived damaged"]
        found = child(SEARCH, str(root), url, "the parcel came damaged")
        assert found.returncode == 0, found.stderr
        assert json.loads(found.stdout)[0][1] == "parcel arrived damaged"
        added = child(REMEMBER, str(root), url, json.dumps(["reset my password please"]))
        assert added.returncode == 0, added.stderr
        assert notes.search("reset my password", k=1)[0].text == "reset my password please"
        assert notes.count() == 2
        frame = notes.frame()
        assert sorted(frame["text"]) == ["parcel arrived damaged", "reset my password please"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("point", "committed"), [("commit:vectors", False), ("after_vectors", True)]
)
def test_a_crash_around_the_vector_write_leaves_each_entry_exactly_once(
    tmp_path: Path, point: str, committed: bool
) -> None:
    """Killed at ``point`` on PostgreSQL; the next process retries; 20 entries, no copies."""
    root = make_memory_project(tmp_path / "project")
    url = postgres.fresh_url()
    crashed = child(REMEMBER, str(root), url, json.dumps(TEXTS), crash=point)
    assert crashed.returncode == CRASH_EXIT_CODE, crashed.stderr
    assert len(stored(url)) == (len(TEXTS) if committed else 0)
    with ms.Workbench.open(root, store=url) as wb:
        (run_id,) = list(wb.runs()["run_id"])
        run = wb.get_run(str(run_id))  # recovers the idempotent step
        assert run.status == "completed", run.error
        assert wb.memory("mem/notes").count() == len(TEXTS)
    rows = stored(url)
    assert sorted(key for key, _ in rows) == sorted(f"{run_id}:add:{i}" for i in range(20))
    assert {attempt for _, attempt in rows} == {2}
