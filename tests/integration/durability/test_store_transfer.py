"""Sharing runs: export a store (or some runs) to one file, import it into another store."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import master_sdk as ms
from master_sdk.memory.schema import SCHEMA_VERSION
from master_sdk.memory.sqlite import SQLiteStore
from tests.support.durability import (
    REPO,
    copy_hello_project,
    driver_env,
    lines,
    make_ledger_project,
    spawn,
    wait_for,
)


@pytest.fixture
def source(tmp_path: Path) -> tuple[Path, ms.Workbench, list[str]]:
    """A hello_world store with a completed, a rejected and a paused run."""
    root = copy_hello_project(tmp_path / "hello")
    wb = ms.Workbench.open(root, store=tmp_path / "source.sqlite3")
    done = wb.run("hello_world/greet", {"text": "finished"}, by="ana")
    done.approve("fine", by="ana")
    done.submit({"audience": "board"}, by="ana")
    rejected = wb.run("hello_world/greet", {"text": "no"}, by="ana")
    rejected.reject("not this", by="bo")
    paused = wb.run("hello_world/greet", {"text": "to be continued"}, by="ana")
    yield root, wb, [done.id, rejected.id, paused.id]  # type: ignore[misc]  # fixture generator
    wb.close()


def same_data(one: ms.Workbench, two: ms.Workbench, run_ids: list[str]) -> None:
    """The runs, their traces, steps and approvals read the same from both stores."""
    columns = ["run_id", "status", "created_at", "updated_at", "steps", "total_tokens", "error"]
    pd.testing.assert_frame_equal(
        one.runs()[columns].sort_values("run_id").reset_index(drop=True),
        two.runs()[columns].sort_values("run_id").reset_index(drop=True),
    )
    for run_id in run_ids:
        pd.testing.assert_frame_equal(
            one.get_run(run_id, recover=False).trace(), two.get_run(run_id, recover=False).trace()
        )
        pd.testing.assert_frame_equal(
            one.get_run(run_id, recover=False).steps(), two.get_run(run_id, recover=False).steps()
        )
    pd.testing.assert_frame_equal(one.approvals(), two.approvals())


@pytest.mark.parametrize("suffix", [".jsonl", ".sqlite3"])
def test_an_exported_store_imports_into_another_with_everything_and_resumes(
    source: tuple[Path, ms.Workbench, list[str]], tmp_path: Path, suffix: str
) -> None:
    """Every run, trace event, step and approval arrives; the paused run continues there."""
    root, wb, ids = source
    target = tmp_path / f"share{suffix}"
    report = wb.export_store(target)
    assert report.runs == tuple(ids)
    assert str(report) == f"exported 3 run(s) to {target} ({report.fmt})"

    with ms.Workbench.open(root, store=tmp_path / "colleague.sqlite3") as other:
        imported = other.import_store(target)
        assert imported.runs == tuple(ids) and imported.skipped == ()
        same_data(wb, other, ids)
        paused = other.get_run(ids[2])
        paused.approve(by="colleague")
        paused.submit({"audience": "team"}, by="colleague")
        assert paused.status == "completed"
        assert other.store_info()["integrity"] == "ok"
    assert wb.get_run(ids[2]).status == "waiting_approval"  # the source is untouched


def test_a_sqlite_export_is_one_standalone_file_holding_only_the_chosen_runs(
    source: tuple[Path, ms.Workbench, list[str]], tmp_path: Path
) -> None:
    """The backup is a single file in rollback-journal mode that plain sqlite3 reads, with
    the other runs' data gone from its pages."""
    _, wb, ids = source
    target = tmp_path / "one.sqlite3"
    wb.export_store(target, runs=[ids[0]])
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("one")) == ["one.sqlite3"]
    conn = sqlite3.connect(f"{target.as_uri()}?mode=ro", uri=True)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert [r[0] for r in conn.execute("SELECT run_id FROM runs")] == [ids[0]]
    finally:
        conn.close()
    copy = tmp_path / "copy" / "one.sqlite3"
    copy.parent.mkdir()
    shutil.copyfile(target, copy)
    checked = SQLiteStore(copy)
    assert checked.integrity_check() == "ok"
    assert checked.count_events() == len(wb.get_run(ids[0]).trace())
    checked.close()
    data = target.read_bytes()
    assert ids[0].encode() in data
    assert ids[1].encode() not in data and b"to be continued" not in data


def test_a_jsonl_export_is_readable_one_run_per_line(
    source: tuple[Path, ms.Workbench, list[str]], tmp_path: Path
) -> None:
    """A header line, the flow text once, then one line per run with its records decoded."""
    _, wb, ids = source
    target = tmp_path / "two.jsonl"
    wb.export_store(target, runs=[ids[1], ids[0]])
    records = [json.loads(line) for line in lines(target)]
    header, flow, *runs = records
    assert header["format"] == "master_sdk.store" and header["schema_version"] == SCHEMA_VERSION
    assert header["runs"] == 2
    assert flow["kind"] == "flow" and "id: greet" in flow["source"]
    assert [r["run"]["run_id"] for r in runs] == [ids[0], ids[1]]
    first = runs[0]
    assert first["run"]["inputs"] == {"text": "finished"}
    assert first["approvals"][0]["decided_by"] == "ana"
    assert first["user_inputs"][0]["data"] == {"audience": "board"}
    assert [e["seq"] for e in first["trace"]] == list(range(1, len(first["trace"]) + 1))


def test_a_jsonl_export_of_schema_version_1_imports_with_everything(
    source: tuple[Path, ms.Workbench, list[str]], tmp_path: Path
) -> None:
    """Trace events in JSON Lines are one object each, as version 1 wrote them: a file whose
    header says version 1 imports into a current store with the same data."""
    root, wb, ids = source
    target = tmp_path / "share.jsonl"
    wb.export_store(target)
    records = lines(target)
    header = json.loads(records[0])
    header["schema_version"] = 1
    older = tmp_path / "v1.jsonl"
    older.write_text("\n".join([json.dumps(header), *records[1:]]) + "\n", encoding="utf-8")
    with ms.Workbench.open(root, store=tmp_path / "colleague.sqlite3") as other:
        assert other.import_store(older).runs == tuple(ids)
        same_data(wb, other, ids)


def test_a_sqlite_export_of_some_runs_keeps_only_the_names_their_traces_use(
    source: tuple[Path, ms.Workbench, list[str]], tmp_path: Path
) -> None:
    """The rejected run never reached the input or summary steps: its export's trace_names
    holds only the names its events use, and its trace reads the same from the export."""
    root, wb, ids = source
    target = tmp_path / "rejected.sqlite3"
    wb.export_store(target, runs=[ids[1]])
    conn = sqlite3.connect(f"{target.as_uri()}?mode=ro", uri=True)
    try:
        names = {r[0] for r in conn.execute("SELECT text FROM trace_names")}
    finally:
        conn.close()
    assert names == {"echo", "review"}
    with ms.Workbench.open(root, store=tmp_path / "colleague.sqlite3") as other:
        other.import_store(target)
        pd.testing.assert_frame_equal(other.traces(), wb.traces(run_id=ids[1]))


def test_importing_runs_already_present_skips_them_with_a_report_or_refuses(
    source: tuple[Path, ms.Workbench, list[str]], tmp_path: Path
) -> None:
    """A second import of the same file adds nothing and lists every run as skipped;
    ``on_duplicate="error"`` refuses the whole import instead."""
    root, wb, ids = source
    target = tmp_path / "share.jsonl"
    wb.export_store(target, runs=ids[:2])
    with ms.Workbench.open(root, store=tmp_path / "colleague.sqlite3") as other:
        other.import_store(target)
        again = other.import_store(target)
        assert again.runs == () and again.skipped == tuple(ids[:2])
        assert "skipped 2 already in the store" in str(again)
        wb.export_store(tmp_path / "all.jsonl")
        with pytest.raises(ms.StoreError, match="already in") as caught:
            other.import_store(tmp_path / "all.jsonl", on_duplicate="error")
        assert "nothing was imported" in str(caught.value)
        assert len(other.runs()) == 2
        merged = other.import_store(tmp_path / "all.jsonl")
        assert merged.runs == (ids[2],) and len(other.runs()) == 3


def test_export_refuses_to_overwrite_and_leaves_no_partial_file(
    source: tuple[Path, ms.Workbench, list[str]], tmp_path: Path
) -> None:
    """An existing target needs overwrite=True; an unknown run id fails before any file
    is left behind."""
    _, wb, ids = source
    target = tmp_path / "out.jsonl"
    target.write_text("keep me", encoding="utf-8")
    with pytest.raises(ms.StoreError, match="exists"):
        wb.export_store(target)
    assert target.read_text(encoding="utf-8") == "keep me"
    wb.export_store(target, overwrite=True)
    assert lines(target)[0].startswith('{"format"')
    for suffix in (".jsonl", ".sqlite3"):
        with pytest.raises(ms.NotFound, match="no run 'nope'"):
            wb.export_store(tmp_path / f"missing{suffix}", runs=[ids[0], "nope"])
    assert sorted(p.name for p in tmp_path.iterdir() if "missing" in p.name) == []
    with pytest.raises(ms.StoreError, match="suffix"):
        wb.export_store(tmp_path / "out.csv")


def test_imports_from_a_newer_version_or_of_a_foreign_file_are_refused(
    source: tuple[Path, ms.Workbench, list[str]], tmp_path: Path
) -> None:
    """A JSON Lines export from a newer schema, or a file that is not an export at all,
    is refused with a message naming the file (and line); nothing is imported."""
    root, wb, _ = source
    target = tmp_path / "share.jsonl"
    wb.export_store(target)
    records = lines(target)
    header = json.loads(records[0])
    header["schema_version"] = SCHEMA_VERSION + 1
    newer = tmp_path / "newer.jsonl"
    newer.write_text("\n".join([json.dumps(header), *records[1:]]) + "\n", encoding="utf-8")
    foreign = tmp_path / "foreign.jsonl"
    foreign.write_text('{"hello": "world"}\n', encoding="utf-8")
    with ms.Workbench.open(root, store=tmp_path / "colleague.sqlite3") as other:
        with pytest.raises(ms.StoreError, match="is newer than this master_sdk"):
            other.import_store(newer)
        with pytest.raises(ms.StoreError, match=r"foreign.jsonl, line 1: not a master_sdk export"):
            other.import_store(foreign)
        assert len(other.runs()) == 0


def test_an_imported_run_that_was_mid_step_shows_as_interrupted_not_running(
    tmp_path: Path,
) -> None:
    """A run exported while another process was executing its step arrives without that
    owner: the importing store sees it interrupted, never running on someone else's
    machine."""
    root = make_ledger_project(tmp_path / "project")
    store, ledger, gate = tmp_path / "s.sqlite3", tmp_path / "ledger", tmp_path / "gate"
    inputs = json.dumps({"ledger": str(ledger), "gate": str(gate)})
    proc = spawn("start", root, store, "ledger/gated", inputs)
    try:
        wait_for(lambda: "slow" in lines(ledger), what="the step to start")
        with ms.Workbench.open(root, store=store) as wb:
            assert list(wb.runs()["status"]) == ["running"]  # its owner is alive
            wb.export_store(tmp_path / "mid.jsonl")
    finally:
        gate.touch()
        proc.communicate(timeout=60)
    with ms.Workbench.open(root, store=tmp_path / "colleague.sqlite3") as other:
        other.import_store(tmp_path / "mid.jsonl")
        assert list(other.runs()["status"]) == ["interrupted"]


def test_imported_values_pass_through_this_stores_redaction(
    source: tuple[Path, ms.Workbench, list[str]], tmp_path: Path
) -> None:
    """A value that is a secret in the importing project is redacted on the way in."""
    _, wb, _ = source
    leaked = wb.run("hello_world/greet", {"text": "key tok-4f9a77c2e1"})
    wb.export_store(tmp_path / "share.jsonl", runs=[leaked.id])
    root = copy_hello_project(tmp_path / "careful")
    (root / "secrets").mkdir()
    (root / "secrets" / "secrets.yaml").write_text("vendor: {key: tok-4f9a77c2e1}\n")
    with ms.Workbench.open(root, store=tmp_path / "careful.sqlite3") as other:
        other.import_store(tmp_path / "share.jsonl")
        run = other.get_run(leaked.id)
        assert run.inputs == {"text": "key <SECRET>"}
        assert "tok-4f9a77c2e1" not in json.dumps(run.waiting_for)


def cli(root: Path, store: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "master_sdk.cli", "--root", str(root), "--store", str(store), *args],
        env=driver_env(),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_cli_exports_imports_and_reports_on_stores(
    source: tuple[Path, ms.Workbench, list[str]], tmp_path: Path
) -> None:
    """``master store export|import|info`` do the same through the public API."""
    root, wb, ids = source
    store = wb.store.path
    target = tmp_path / "cli.jsonl"
    done = cli(root, store, "store", "export", str(target), "--run", ids[0], "--run", ids[2])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"exported 2 run(s) to {target} (jsonl)"
    again = cli(root, store, "store", "export", str(target))
    assert again.returncode == 1 and "exists" in again.stderr

    other = tmp_path / "colleague.sqlite3"
    done = cli(root, other, "store", "import", str(target))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"imported 2 run(s) from {target} (jsonl)"
    done = cli(root, other, "store", "import", str(target), "--on-duplicate", "error")
    assert done.returncode == 1 and "nothing was imported" in done.stderr

    info = cli(root, other, "store", "info")
    assert info.returncode == 0, info.stderr
    shown = dict(line.split(": ", 1) for line in info.stdout.strip().splitlines())
    assert shown["journal_mode"] == "wal"
    assert shown["synchronous"] == "FULL"
    assert shown["integrity"] == "ok"
    assert shown["runs"] == "2"
    assert json.loads(shown["runs_by_status"]) == {"completed": 1, "waiting_approval": 1}
