"""`master new product NAME` and `wb.new_product(name)` write a product that works at once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import master_sdk as ms


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    (root / "configs").mkdir(parents=True)
    return root


def test_a_new_product_validates_runs_to_its_form_and_completes(root: Path) -> None:
    """The scaffold passes validate; a run pauses at the form, submit completes it."""
    with ms.Workbench.open(root) as wb:
        folder = wb.new_product("notes")
        assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.*")) == [
            "components.py",
            "config/product.yaml",
            "flows/draft.yaml",
            "manifest.yaml",
            "notebooks/draft.ipynb",
        ]
        assert wb.validate() == []
        run = wb.run("notes/draft", {"topic": "  green   tea "})
        assert run.status == "waiting_input"
        assert run.form().fields["tone"].value == "plain"
        run.submit({"tone": "friendly"})
        assert run.status == "completed"
        assert run.output["tone"] == "friendly"
        assert run.steps()["status"].tolist() == ["completed"] * 3


def test_new_product_refuses_an_existing_folder_and_writes_nothing(root: Path) -> None:
    """A second scaffold of one name fails and leaves the first as it was."""
    with ms.Workbench.open(root) as wb:
        folder = wb.new_product("notes")
        (folder / "components.py").write_text("# mine\n", encoding="utf-8")
        with pytest.raises(ms.FlowError, match="already exists"):
            wb.new_product("notes")
        assert (folder / "components.py").read_text() == "# mine\n"


@pytest.mark.parametrize("name", ["", "1abc", "a b", "../x", "a/b", "é", "x" * 65])
def test_new_product_refuses_a_bad_name(root: Path, name: str) -> None:
    """A name that is not a product name is refused, and no folder appears."""
    with ms.Workbench.open(root) as wb, pytest.raises(ms.FlowError, match="not a product name"):
        wb.new_product(name)
    assert not any((root / "products").iterdir())


def test_the_cli_scaffolds_and_validates(root: Path) -> None:
    """`master new product` then `master validate` both succeed."""
    cli = [sys.executable, "-m", "master_sdk.cli", "--root", str(root)]
    made = subprocess.run([*cli, "new", "product", "notes"], capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    assert "notes/draft" in made.stdout
    checked = subprocess.run([*cli, "validate"], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    again = subprocess.run([*cli, "new", "product", "notes"], capture_output=True, text=True)
    assert again.returncode == 1 and "already exists" in again.stderr
