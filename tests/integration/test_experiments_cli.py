"""`master eval`, `master experiments`, `master compare` in real subprocesses.

The fake model echoes the prompt, so the triage flow's label is the text's last word.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.support.triage import write_triage

CASES = [
    {"case_key": "a", "text": "buy now spam", "style": "v1", "expected_label": "spam"},
    {"case_key": "b", "text": "see you ham", "style": "v1", "expected_label": "ham"},
    {"case_key": "c", "text": "ambiguous ham", "style": "v1", "expected_label": "spam"},
]


def master(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "master_sdk.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return write_triage(tmp_path / "proj")


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_eval_reads_a_case_file_scores_it_and_prints_the_summary(root: Path, suffix: str) -> None:
    """Each case file format runs; the summary names the score; exit 0."""
    frame = pd.DataFrame(CASES)
    path = root / f"cases{suffix}"
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_parquet(path, index=False)
    done = master(
        "eval", "triage/classify", "--cases", str(path), "--name", "v1",
        "--score", "exact:label=expected_label", "--concurrency", "2", cwd=root,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "completed, 3 cases" in done.stdout
    assert "exact_label" in done.stdout and "0.6667" in done.stdout


def test_experiments_lists_and_compare_pairs_two_experiments(root: Path) -> None:
    """Two runs of the same table compare case by case; experiments lists both."""
    path = root / "cases.csv"
    pd.DataFrame(CASES).to_csv(path, index=False)
    for name in ("one", "two"):
        done = master("eval", "triage/classify", "--cases", str(path), "--name", name,
                      "--score", "exact:label=expected_label", cwd=root)  # fmt: skip
        assert done.returncode == 0, done.stderr
    listed = master("experiments", cwd=root)
    assert listed.returncode == 0, listed.stderr
    assert "one" in listed.stdout and "two" in listed.stdout and "completed" in listed.stdout
    compared = master("compare", "one", "two", "--cases", cwd=root)
    assert compared.returncode == 0, compared.stderr
    assert "3 paired cases" in compared.stdout
    assert "outputs changed: 0 of 3" in compared.stdout


def test_eval_with_answers_and_a_bad_scorer_spec(root: Path) -> None:
    """--answers scripts the human steps; a malformed --score is a usage error (exit 1)."""
    path = root / "cases.csv"
    pd.DataFrame(CASES).to_csv(path, index=False)
    answers = json.dumps({"check": "approve", "note": {"note": "cli"}})
    done = master("eval", "triage/review", "--cases", str(path), "--name", "r",
                  "--answers", answers, cwd=root)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "completed 3" in done.stdout
    bad = master("eval", "triage/classify", "--cases", str(path), "--name", "x",
                 "--score", "nonsense", cwd=root)  # fmt: skip
    assert bad.returncode == 1
    assert "--score 'nonsense'" in bad.stderr


def test_a_duplicate_name_is_an_error_naming_resume(root: Path) -> None:
    """A second eval with the same name fails with one line; --resume continues it."""
    path = root / "cases.csv"
    pd.DataFrame(CASES).to_csv(path, index=False)
    assert master("eval", "triage/classify", "--cases", str(path), "--name", "n",
                  cwd=root).returncode == 0  # fmt: skip
    again = master("eval", "triage/classify", "--cases", str(path), "--name", "n", cwd=root)
    assert again.returncode == 1
    assert "already stored" in again.stderr and again.stderr.count("\n") == 1
    resumed = master("eval", "triage/classify", "--cases", str(path), "--name", "n",
                     "--resume", cwd=root)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
