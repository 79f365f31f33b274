"""When a collection's embedding model changes: detected, refused, re-embedded.

The ``mem`` product (``tests/support/memory_project.py``) declares ``notes`` on
``default_embedding``; the tests change that model in ``configs/models.yaml`` after entries
were stored, as a team switching embedding models would.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import master_sdk as ms
from master_sdk.memory.vector_memory import StaleCollection
from tests.support import postgres
from tests.support.memory_project import make_memory_project

TEXTS = ["my parcel arrived damaged", "reset my password", "refund a double charge"]
SMALLER = (
    "models:\n"
    "  default: {provider: fake}\n"
    "  default_embedding: {provider: fake, kind: embedding, dimensions: 96}\n"
)


def master(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "master_sdk.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest) -> str | None:
    """The default SQLite file, or a fresh database on the test PostgreSQL server."""
    return postgres.fresh_url() if request.param == "postgresql" else None


def test_a_changed_model_refuses_search_and_add_until_reembedded(
    tmp_path: Path, store: str | None
) -> None:
    """The stored vectors are kept and marked stale; reembed() swaps model and vectors."""
    root = make_memory_project(tmp_path / "project")
    with ms.Workbench.open(root, store=store) as wb:
        wb.memory("mem/notes").add(TEXTS, metadata=[{"tag": "a"}] * 3)
        before = wb.collections().set_index("collection").loc["mem/notes"]
        assert (before["entries"], before["dimensions"], before["stale"]) == (3, 384, False)
    (root / "configs" / "models.yaml").write_text(SMALLER, encoding="utf-8")
    with ms.Workbench.open(root, store=store) as wb:
        notes = wb.memory("mem/notes")
        row = wb.collections().set_index("collection").loc["mem/notes"]
        assert bool(row["stale"]) and row["dimensions"] == 384
        with pytest.raises(StaleCollection, match=r"384 dimensions.*96 dimensions.*reembed\(\)"):
            notes.search("parcel", k=1)
        with pytest.raises(StaleCollection, match="master memory reembed mem/notes"):
            notes.add(["another note"])
        assert notes.count() == 3 and len(notes.frame()) == 3  # still readable
        assert notes.reembed() == 3
        (hit,) = notes.search("the parcel came damaged", k=1)
        assert hit.text == "my parcel arrived damaged"
        after = wb.collections().set_index("collection").loc["mem/notes"]
        assert (after["dimensions"], after["stale"], after["entries"]) == (96, False, 3)
        notes.add(["another note"])
        assert notes.count() == 4


def test_a_workbench_that_loaded_the_old_vectors_is_told_after_another_reembeds(
    tmp_path: Path,
) -> None:
    """A reload after another process re-embedded with another size refuses, not crashes."""
    root = make_memory_project(tmp_path / "project")
    with ms.Workbench.open(root) as old:
        notes = old.memory("mem/notes")
        notes.add(TEXTS)
        assert len(notes.search("parcel", k=3)) == 3
        (root / "configs" / "models.yaml").write_text(SMALLER, encoding="utf-8")
        with ms.Workbench.open(root) as new:
            assert new.memory("mem/notes").reembed() == 3
        with pytest.raises(StaleCollection, match="96 dimensions"):
            notes.search("parcel", k=3)


def test_master_memory_lists_searches_and_reembeds(tmp_path: Path) -> None:
    """The CLI shows the stale collection, re-embeds it, then searches it."""
    root = make_memory_project(tmp_path / "project")
    with ms.Workbench.open(root) as wb:
        wb.memory("mem/notes").add(TEXTS, metadata=[{"tag": "a"}, {"tag": "b"}, {"tag": "b"}])
    (root / "configs" / "models.yaml").write_text(SMALLER, encoding="utf-8")
    listed = master("memory", "list", "--format", "json", cwd=root)
    assert listed.returncode == 0, listed.stderr
    rows = {r["collection"]: r for r in json.loads(listed.stdout)}
    assert rows["mem/notes"]["stale"] is True and rows["mem/notes"]["entries"] == 3
    assert rows["mem/secret"]["entries"] == 0 and rows["mem/secret"]["stale"] is False
    refused = master("memory", "search", "mem/notes", "parcel", cwd=root)
    assert refused.returncode == 1 and "master memory reembed mem/notes" in refused.stderr
    done = master("memory", "reembed", "mem/notes", cwd=root)
    assert done.returncode == 0, done.stderr
    assert "re-embedded 3 entries of mem/notes" in done.stdout
    found = master(
        "memory", "search", "mem/notes", "refund charge", "-k", "1",
        "--where", '{"tag": "b"}', "--format", "json", cwd=root,
    )  # fmt: skip
    assert found.returncode == 0, found.stderr
    (hit,) = json.loads(found.stdout)
    assert hit["text"] == "refund a double charge" and hit["tag"] == "b"
    bad = master("memory", "search", "mem/notes", "x", "--where", "{tag", cwd=root)
    assert bad.returncode == 1 and "--where: not JSON" in bad.stderr
