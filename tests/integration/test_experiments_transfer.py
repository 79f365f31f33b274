"""Experiments in `wb.export_store` / `wb.import_store` / `copy_store` and `master store`:
an imported store answers experiments(), results and compare as the exporting one did."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import master_sdk as ms
from master_sdk.errors import StoreError
from tests.support.experiments import LabelModel, open_triage, triage_cases

EXACT = ms.scorers.exact("label", expected="expected_label")


def _source(root: Path) -> ms.Workbench:
    """A store holding two scored experiments over the same six cases."""
    wb = open_triage(root, providers={"default": LabelModel()})
    wb.evaluate("triage/classify", triage_cases(6), name="v1", scorers=[EXACT], progress=False)
    wb.evaluate(
        "triage/classify", triage_cases(6, style="v2"), name="v2", scorers=[EXACT], progress=False
    )
    return wb


def _same_experiments(a: ms.Workbench, b: ms.Workbench) -> None:
    columns = ["name", "ref", "flow_hash", "status", "cases"]
    listed_a, listed_b = a.experiments(), b.experiments()
    pd.testing.assert_frame_equal(
        listed_a[columns].reset_index(drop=True), listed_b[columns].reset_index(drop=True)
    )
    for name in ("v1", "v2"):
        pd.testing.assert_frame_equal(a.experiment(name).results, b.experiment(name).results)
        pd.testing.assert_frame_equal(a.experiment(name).summary(), b.experiment(name).summary())
    pd.testing.assert_frame_equal(a.compare("v1", "v2").cases, b.compare("v1", "v2").cases)
    pd.testing.assert_frame_equal(a.compare("v1", "v2").summary, b.compare("v1", "v2").summary)


@pytest.mark.parametrize("suffix", [".jsonl", ".sqlite3"])
def test_an_imported_export_reproduces_experiments_results_and_compare(
    tmp_path: Path, suffix: str
) -> None:
    """Export every run; import into an empty project: the same experiments, the same
    results and summaries, the same comparison; the case tags of the runs come along."""
    target = tmp_path / f"out{suffix}"
    with _source(tmp_path / "a") as source:
        report = source.export_store(target)
        assert report.experiments == ("v1", "v2")
        assert "2 experiment(s): v1, v2" in str(report)
        with open_triage(tmp_path / "b") as copy:
            imported = copy.import_store(target)
            assert imported.experiments == ("v1", "v2")
            _same_experiments(source, copy)
            assert copy.store.tagged_runs("v1") == source.store.tagged_runs("v1")
            again = copy.import_store(target)
            assert again.experiments == () and again.skipped_experiments == ("v1", "v2")


def test_an_export_of_some_runs_holds_only_their_experiments(tmp_path: Path) -> None:
    """Exporting the runs of one experiment carries that experiment alone."""
    target = tmp_path / "some.jsonl"
    with _source(tmp_path / "a") as source:
        ids = source.experiment("v2").results["run_id"].tolist()
        report = source.export_store(target, runs=ids)
        assert report.experiments == ("v2",)
        with open_triage(tmp_path / "b") as copy:
            copy.import_store(target)
            assert copy.experiments()["name"].tolist() == ["v2"]
            pd.testing.assert_frame_equal(
                copy.experiment("v2").results, source.experiment("v2").results
            )


def test_copy_store_carries_experiments(tmp_path: Path) -> None:
    """copy_store to another store adds its experiments too; a second copy adds none."""
    with _source(tmp_path / "a") as source:
        other = tmp_path / "b" / "copy.sqlite3"
        first = source.copy_store(other)
        assert first.experiments == ("v1", "v2")
        assert source.copy_store(other).skipped_experiments == ("v1", "v2")
        with open_triage(tmp_path / "a", store=other) as copy:
            _same_experiments(source, copy)


def test_a_malformed_experiment_line_is_refused_naming_line_and_field(tmp_path: Path) -> None:
    """An experiment entry with a wrong field fails the import with the line and every
    failing field named; nothing of the file is imported."""
    target = tmp_path / "out.jsonl"
    with _source(tmp_path / "a") as source:
        source.export_store(target)
    lines = target.read_text(encoding="utf-8").splitlines()
    number = next(i for i, line in enumerate(lines) if '"kind":"experiment"' in line)
    record = json.loads(lines[number])
    record["experiment"]["created_us"] = "yesterday"
    record["cases"][0]["row"] = ["not", "an", "object"]
    lines[number] = json.dumps(record)
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with open_triage(tmp_path / "b") as copy:
        with pytest.raises(StoreError) as caught:
            copy.import_store(target)
        message = str(caught.value)
        assert f"line {number + 1}" in message
        assert "experiment.created_us must be int, not str" in message
        assert "cases[1].row must be dict, not list" in message
        assert copy.runs().empty and copy.experiments().empty


def test_master_store_export_and_import_carry_experiments(tmp_path: Path) -> None:
    """`master store export` then `master store import` in other processes."""
    target = tmp_path / "out.jsonl"
    _source(tmp_path / "a").close()
    open_triage(tmp_path / "b").close()

    def master(root: Path, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "master_sdk.cli", *args],
            cwd=root, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "2 experiment(s): v1, v2" in master(tmp_path / "a", "store", "export", str(target))
    assert "2 experiment(s): v1, v2" in master(tmp_path / "b", "store", "import", str(target))
    listed = master(tmp_path / "b", "experiments")
    assert "v1" in listed and "v2" in listed
    with open_triage(tmp_path / "a") as source, open_triage(tmp_path / "b") as copy:
        _same_experiments(source, copy)
