"""master_sdk: governed, durable agentic flows for Jupyter.

Example:
    >>> import master_sdk as ms
    >>> wb = ms.Workbench.open()                                     # doctest: +SKIP
    >>> run = wb.run("hello_world/greet", inputs={"text": "Hello"})  # doctest: +SKIP

Names are imported on first use, so ``import master_sdk`` stays cheap (the CLI and
fresh kernels pay only for what they touch).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "AgentContext",
    "AgentOutput",
    "AlreadyResumed",
    "CollectionError",
    "Comparison",
    "ConfigError",
    "DecisionRefused",
    "Experiment",
    "FieldError",
    "FlowChanged",
    "FlowError",
    "InMemoryStore",
    "InputInvalid",
    "MasterError",
    "ModelCallError",
    "NotFound",
    "NotWaiting",
    "PolicyViolation",
    "PostgresStore",
    "Run",
    "RunError",
    "RunStatus",
    "SQLiteStore",
    "Store",
    "StoreBusy",
    "StoreError",
    "ToolContext",
    "Workbench",
    "agent",
    "diff",
    "scorers",
    "tool",
]

_LOCATIONS = {
    "AgentContext": "master_sdk.authoring",
    "AgentOutput": "master_sdk.authoring",
    "ToolContext": "master_sdk.authoring",
    "agent": "master_sdk.authoring",
    "tool": "master_sdk.authoring",
    "Run": "master_sdk.run",
    "RunStatus": "master_sdk.contracts.status",
    "Workbench": "master_sdk.workbench",
    "Comparison": "master_sdk.experiments.compare",
    "Experiment": "master_sdk.experiments.experiment",
    "InMemoryStore": "master_sdk.memory.inmemory",
    "SQLiteStore": "master_sdk.memory.sqlite",
    "PostgresStore": "master_sdk.memory.postgres",
    "Store": "master_sdk.memory.store",
    "diff": "master_sdk.diffing",
}

if TYPE_CHECKING:
    from master_sdk.authoring import AgentContext, AgentOutput, ToolContext, agent, tool
    from master_sdk.contracts.status import RunStatus
    from master_sdk.diffing import diff
    from master_sdk.errors import (
        AlreadyResumed,
        CollectionError,
        ConfigError,
        DecisionRefused,
        FieldError,
        FlowChanged,
        FlowError,
        InputInvalid,
        MasterError,
        ModelCallError,
        NotFound,
        NotWaiting,
        PolicyViolation,
        RunError,
        StoreBusy,
        StoreError,
    )
    from master_sdk.experiments import scorers
    from master_sdk.experiments.compare import Comparison
    from master_sdk.experiments.experiment import Experiment
    from master_sdk.memory.inmemory import InMemoryStore
    from master_sdk.memory.postgres import PostgresStore
    from master_sdk.memory.sqlite import SQLiteStore
    from master_sdk.memory.store import Store
    from master_sdk.run import Run
    from master_sdk.workbench import Workbench


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'master_sdk' has no attribute {name!r}")
    import importlib

    if name == "scorers":
        value = importlib.import_module("master_sdk.experiments.scorers")
        globals()[name] = value
        return value
    module = importlib.import_module(_LOCATIONS.get(name, "master_sdk.errors"))
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])


def _short_errors_in_notebooks() -> None:
    """In an IPython kernel, show a MasterError as its message (traceback one click away;
    see master_sdk.notebook.tracebacks). Costs nothing outside IPython."""
    import sys

    if "IPython" not in sys.modules:
        return
    from contextlib import suppress

    with suppress(Exception):  # a display nicety must never break the import
        from master_sdk.notebook.tracebacks import install

        install()


_short_errors_in_notebooks()
