"""Pytest set-up for the whole repository: the notebooks in ``notebooks/`` are tests.

``pytest`` with no arguments runs them with nbval: each notebook is executed in a fresh
kernel and every cell's outputs are compared with the committed ones, after the values
that change from run to run (run ids, durations, timestamps, temporary paths) are
rewritten by ``notebooks/sanitize.cfg``. Notebooks elsewhere (test fixtures) are not
collected. ``-p no:nbval`` turns this off; with ``--master-notebooks`` the master_sdk plugin
runs them instead (as ``master test`` does), and nbval stays off.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent
NOTEBOOKS = ROOT / "notebooks"
SANITIZE = NOTEBOOKS / "sanitize.cfg"


def pytest_configure(config: pytest.Config) -> None:
    """Turn nbval on with the committed sanitize file, unless told otherwise."""
    option = config.option
    if not hasattr(option, "nbval"):  # nbval not installed or disabled with -p no:nbval
        return
    if getattr(option, "master_notebooks", False):
        return  # the master_sdk plugin collects the notebooks; nbval would run them twice
    if not option.nbval_lax:
        option.nbval = True
    if option.nbval_sanitize_with is None:
        option.nbval_sanitize_with = str(SANITIZE)
    # Kernels are separate processes: give them this checkout's master_sdk, as the test
    # process has it through pyproject's ``pythonpath``.
    paths = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    os.environ["PYTHONPATH"] = os.pathsep.join(paths)


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Collect notebooks from ``notebooks/`` only, and never Jupyter's checkpoint copies."""
    if ".ipynb_checkpoints" in collection_path.parts:
        return True
    if collection_path.suffix == ".ipynb" and NOTEBOOKS not in collection_path.parents:
        return True
    return None
