"""Vector collections travel in store exports and come back on import.

A whole-store export (``.jsonl`` or ``.sqlite3``) carries every collection; importing it
into another project's store (SQLite or PostgreSQL) gives the same entries, vectors and
search hits; importing twice adds nothing; a damaged or conflicting file is refused
before anything is written, naming the file and what to do.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import master_sdk as ms
from master_sdk.errors import StoreError
from tests.support import postgres
from tests.support.memory_project import make_memory_project

TEXTS = ["my parcel arrived damaged", "reset my password", "refund a double charge"]


def filled(root: Path) -> Path:
    with ms.Workbench.open(root) as wb:
        run = wb.run("mem/remember", inputs={"texts": TEXTS, "tag": "a"})
        assert run.status == "completed", run.error
    return root


def vectors_of(wb: ms.Workbench) -> dict[str, np.ndarray]:
    snapshot = wb._memory.store.load("mem/notes")  # the stored vectors themselves
    return dict(zip(snapshot.ids, snapshot.vectors, strict=True))


@pytest.mark.parametrize("suffix", [".jsonl", ".sqlite3"])
@pytest.mark.parametrize("target_store", ["sqlite", "postgresql"])
def test_a_whole_store_export_carries_collections_into_another_store(
    tmp_path: Path, suffix: str, target_store: str
) -> None:
    """Same ids, texts, metadata, vectors and hits after the round trip; twice adds none."""
    source = filled(make_memory_project(tmp_path / "a"))
    export = tmp_path / f"all{suffix}"
    with ms.Workbench.open(source) as wb:
        report = wb.export_store(export)
        assert report.collections == ("mem/notes",)
        assert "1 vector collection(s): mem/notes" in str(report)
        before = wb.memory("mem/notes").frame().drop(columns=["added_at"])
        expected = vectors_of(wb)
        hits = [h.id for h in wb.memory("mem/notes").search("parcel damaged", k=3)]
    other = make_memory_project(tmp_path / "b")
    url = postgres.fresh_url() if target_store == "postgresql" else None
    with ms.Workbench.open(other, store=url) as wb:
        first = wb.import_store(export)
        assert first.collections == ("mem/notes",) and len(first.runs) == 1
        notes = wb.memory("mem/notes")
        after = notes.frame().drop(columns=["added_at"])
        assert (
            after.sort_values("id")
            .reset_index(drop=True)
            .equals(before.sort_values("id").reset_index(drop=True))
        )
        got = vectors_of(wb)
        assert got.keys() == expected.keys()
        assert all(np.array_equal(got[k], expected[k]) for k in got)
        assert [h.id for h in notes.search("parcel damaged", k=3)] == hits
        wb.import_store(export)
        assert notes.count() == len(TEXTS)


def test_an_export_of_chosen_runs_carries_collections_only_when_asked(tmp_path: Path) -> None:
    """Memory belongs to the product: chosen runs travel alone unless collections= says."""
    root = filled(make_memory_project(tmp_path / "a"))
    with ms.Workbench.open(root) as wb:
        (run_id,) = list(wb.runs()["run_id"])
        alone = wb.export_store(tmp_path / "one.jsonl", runs=[str(run_id)])
        assert alone.collections == ()
        text = (tmp_path / "one.jsonl").read_text(encoding="utf-8")
        assert '"kind":"vector"' not in text
        both = wb.export_store(tmp_path / "two.jsonl", runs=[str(run_id)], collections=True)
        assert both.collections == ("mem/notes",)
        none = wb.export_store(tmp_path / "three.jsonl", collections=False)
        assert none.collections == ()


def test_master_store_export_and_import_carry_collections(tmp_path: Path) -> None:
    """The CLI's whole-store export and import go through the same path."""
    root = filled(make_memory_project(tmp_path / "a"))
    other = make_memory_project(tmp_path / "b")
    export = tmp_path / "all.jsonl"

    def master(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "master_sdk.cli", *args],
            cwd=cwd, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip

    out = master("store", "export", str(export), cwd=root)
    assert out.returncode == 0 and "vector collection(s): mem/notes" in out.stdout, out.stderr
    back = master("store", "import", str(export), cwd=other)
    assert back.returncode == 0 and "vector collection(s): mem/notes" in back.stdout, back.stderr
    found = master("memory", "search", "mem/notes", "password", "-k", "1", cwd=other)
    assert "reset my password" in found.stdout, found.stderr


def damaged(export: Path, change: dict[str, object]) -> None:
    lines = export.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if '"kind":"vector"' in line:
            lines[i] = json.dumps({**json.loads(line), **change})
            break
    export.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"vector": base64.b64encode(b"\0" * 12).decode()}, r"vector of 12 bytes.*384 float32"),
        (
            {"vector": base64.b64encode(np.full(384, np.nan, "<f4").tobytes()).decode()},
            "NaN or infinite",
        ),
        ({"vector": "not base64!"}, "not base64"),
        ({"id": ""}, "an id must be a non-empty string"),
        ({"colour": "red"}, "unknown field.*colour"),
    ],
)
def test_a_damaged_entry_refuses_the_import_naming_the_line(
    tmp_path: Path, change: dict[str, object], message: str
) -> None:
    """Nothing is imported, runs included; the message names the file and line."""
    root = filled(make_memory_project(tmp_path / "a"))
    export = tmp_path / "all.jsonl"
    with ms.Workbench.open(root) as wb:
        wb.export_store(export)
    damaged(export, change)
    with ms.Workbench.open(make_memory_project(tmp_path / "b")) as wb:
        with pytest.raises(StoreError, match=rf"all\.jsonl, line \d+: .*{message}"):
            wb.import_store(export)
        assert wb.runs().empty and wb.memory("mem/notes").count() == 0


def test_a_collection_of_another_model_here_refuses_the_whole_import(tmp_path: Path) -> None:
    """Vectors of two models cannot share a collection: re-embed one side first."""
    root = filled(make_memory_project(tmp_path / "a"))
    export = tmp_path / "all.sqlite3"
    with ms.Workbench.open(root) as wb:
        wb.export_store(export)
    other = make_memory_project(tmp_path / "b")
    (other / "configs" / "models.yaml").write_text(
        "models:\n  default: {provider: fake}\n"
        "  default_embedding: {provider: fake, kind: embedding, dimensions: 96}\n",
        encoding="utf-8",
    )
    with ms.Workbench.open(other) as wb:
        wb.memory("mem/notes").add(["a note here"])
        with pytest.raises(StoreError, match=r"384 dimensions.*here it holds.*\(96\).*reembed"):
            wb.import_store(export)
        assert wb.runs().empty and wb.memory("mem/notes").count() == 1
