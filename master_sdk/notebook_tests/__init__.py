"""Your notebooks as regression tests: ``master test`` and ``pytest --master-notebooks``.

Each notebook is executed in a fresh kernel with a throwaway store, deterministic ids and
clock, and network model calls blocked; each code cell's outputs are compared, as
sanitised text, with the ones committed in the file. ``update_notebook`` rewrites the
committed outputs with a minimal diff. ``product_notebook`` writes a starter notebook for a
product flow that passes at once.

Names are imported on first use: the starter notebook (which a product scaffold writes) needs
neither nbclient nor a kernel.

Example:
    >>> from pathlib import Path
    >>> from master_sdk.notebook_tests import check_notebook, format_report
    >>> result = check_notebook(Path("products/demo/notebooks/demo.ipynb"))  # doctest: +SKIP
    >>> print(format_report([result]))                                       # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = [
    "DEFAULT_PATTERNS",
    "CellMismatch",
    "Execution",
    "NotebookResult",
    "Rule",
    "Sanitizer",
    "cell_text",
    "check_notebook",
    "execute_notebook",
    "find_notebooks",
    "format_report",
    "merge_outputs",
    "product_notebook",
    "product_notebook_text",
    "read_rules",
    "run_tests",
    "update_notebook",
    "write_product_notebook",
]

_LOCATIONS = {
    "DEFAULT_PATTERNS": "checks",
    "NotebookResult": "checks",
    "check_notebook": "checks",
    "find_notebooks": "checks",
    "format_report": "checks",
    "merge_outputs": "checks",
    "run_tests": "checks",
    "update_notebook": "checks",
    "CellMismatch": "compare",
    "cell_text": "compare",
    "Execution": "runner",
    "execute_notebook": "runner",
    "Rule": "sanitize",
    "Sanitizer": "sanitize",
    "read_rules": "sanitize",
    "product_notebook": "starter",
    "product_notebook_text": "starter",
    "write_product_notebook": "starter",
}

if TYPE_CHECKING:
    from master_sdk.notebook_tests.checks import (
        DEFAULT_PATTERNS,
        NotebookResult,
        check_notebook,
        find_notebooks,
        format_report,
        merge_outputs,
        run_tests,
        update_notebook,
    )
    from master_sdk.notebook_tests.compare import CellMismatch, cell_text
    from master_sdk.notebook_tests.runner import Execution, execute_notebook
    from master_sdk.notebook_tests.sanitize import Rule, Sanitizer, read_rules
    from master_sdk.notebook_tests.starter import (
        product_notebook,
        product_notebook_text,
        write_product_notebook,
    )


def __getattr__(name: str) -> Any:
    if name not in _LOCATIONS:
        raise AttributeError(f"module 'master_sdk.notebook_tests' has no attribute {name!r}")
    import importlib

    module = importlib.import_module(f"master_sdk.notebook_tests.{_LOCATIONS[name]}")
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
