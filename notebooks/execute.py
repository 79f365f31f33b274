"""Execute the notebooks and refresh their committed outputs: what nbval compares against.

Usage::

    python notebooks/execute.py                  # every notebook in this folder
    python notebooks/execute.py 02_forms         # some of them, by name

The same as ``master test --update notebooks/...``: each notebook runs top to bottom in a
fresh kernel started in this folder, with a throwaway store, deterministic run ids and
clock, and network model calls blocked (:mod:`master_sdk.notebook_tests`). A cell whose
outputs read the same as before keeps them byte for byte, execution count included, and the
stored widget state changes only when a cell showing widgets changed, so an unchanged
notebook is not rewritten at all. A failing cell stops the run and leaves the file untouched.
The repository comes first on ``PYTHONPATH`` so the checkout's ``master_sdk`` is the one
the kernels import.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p
)

from master_sdk.notebook_tests import format_report, update_notebook  # noqa: E402


def main(argv: list[str]) -> int:
    names = argv or sorted(p.stem for p in HERE.glob("[0-9]*.ipynb"))
    results = [update_notebook(HERE / f"{Path(name).stem}.ipynb") for name in names]
    print(format_report(results, root=ROOT))
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
