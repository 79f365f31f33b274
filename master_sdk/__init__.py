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
    "ConfigError",
    "FieldError",
    "FlowChanged",
    "FlowError",
    "InputInvalid",
    "MasterError",
    "ModelCallError",
    "NotFound",
    "NotWaiting",
    "PolicyViolation",
    "Run",
    "RunError",
    "StoreBusy",
    "StoreError",
    "ToolContext",
    "Workbench",
    "agent",
    "tool",
]

_LOCATIONS = {
    "AgentContext": "master_sdk.authoring",
    "AgentOutput": "master_sdk.authoring",
    "ToolContext": "master_sdk.authoring",
    "agent": "master_sdk.authoring",
    "tool": "master_sdk.authoring",
    "Run": "master_sdk.workbench",
    "Workbench": "master_sdk.workbench",
}

if TYPE_CHECKING:
    from master_sdk.authoring import AgentContext, AgentOutput, ToolContext, agent, tool
    from master_sdk.errors import (
        AlreadyResumed,
        ConfigError,
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
    from master_sdk.workbench import Run, Workbench


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'master_sdk' has no attribute {name!r}")
    import importlib

    module = importlib.import_module(_LOCATIONS.get(name, "master_sdk.errors"))
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
