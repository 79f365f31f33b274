"""Execute the notebooks in place and keep their outputs: what nbval compares against.

Usage::

    python notebooks/execute.py                  # every notebook in this folder
    python notebooks/execute.py 02_forms         # some of them, by name

Each notebook runs top to bottom in a fresh ``python3`` kernel started in this folder, with
the repository first on ``PYTHONPATH`` so the checkout's ``master_sdk`` is the one imported.
Widget state is stored with the outputs, so the forms also render in a static view. Only
outputs, execution counts and widget state change; sources and cell metadata stay as
written. A failing cell stops the run and leaves the notebook file untouched.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CELL_TIMEOUT_S = 120


def execute(path: Path) -> float:
    """Run ``path`` and write it back with its new outputs; return the seconds it took."""
    nb = nbformat.read(path, as_version=4)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    client = NotebookClient(
        nb,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(HERE)}},
        record_timing=False,
    )
    started = time.perf_counter()
    client.execute(env=env)
    seconds = time.perf_counter() - started
    nbformat.validate(nb)
    nbformat.write(nb, path)
    return seconds


def main(argv: list[str]) -> int:
    names = argv or sorted(p.stem for p in HERE.glob("[0-9]*.ipynb"))
    for name in names:
        path = HERE / f"{Path(name).stem}.ipynb"
        seconds = execute(path)
        print(f"{path.name}: executed in {seconds:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
