"""Collecting a product's ``@tool`` and ``@agent`` definitions, refusing duplicate names.

Two definitions under one name would otherwise replace each other silently: a second
``@tool def echo`` in the same module rebinds the module's ``echo`` (the first is gone before
the loader can see it), and two modules may register the same name. Both are load-time
:class:`~master_sdk.errors.FlowError`\\ s naming each definition by ``file:line``. The first
case is found in the module's source (the decorated definitions, read with :mod:`ast`), the
second among the registered objects.
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from master_sdk.authoring import AGENT_ATTR, TOOL_ATTR, AgentSpec, ToolSpec
from master_sdk.errors import FlowError
from master_sdk.governance.names import name_problem

_DECORATORS = {"tool": "tool", "agent": "agent"}


@dataclass
class Registry:
    """The tools and agents of one product, with where each was defined."""

    tools: dict[str, ToolSpec] = field(default_factory=dict)
    agents: dict[str, AgentSpec] = field(default_factory=dict)
    _where: dict[tuple[str, str], str] = field(default_factory=dict)

    def collect(self, module: ModuleType, path: Path) -> None:
        """Register every tool and agent ``module`` exposes; refuse a name used twice."""
        _check_shadowed(path)
        for value in list(vars(module).values()):
            tool_spec = getattr(value, TOOL_ATTR, None)
            if isinstance(tool_spec, ToolSpec):
                self._add("tool", tool_spec.name, tool_spec, self.tools, path)
            agent_spec = getattr(value, AGENT_ATTR, None)
            if isinstance(agent_spec, AgentSpec):
                self._add("agent", agent_spec.name, agent_spec, self.agents, path)

    def _add(self, kind: str, name: str, spec: Any, into: dict[str, Any], path: Path) -> None:
        problem = name_problem(name)
        if problem is not None:
            raise FlowError(
                f"{kind} name {name!r} {problem}",
                file=str(path),
                field="components",
                hint=f"give @{kind}(name=...) a plain ASCII name",
            )
        where = _where(spec.fn)
        known = into.get(name)
        if known is not None and known is not spec:
            first = self._where[(kind, name)]
            if first != where:
                raise _duplicate(kind, name, first, where, path)
        if known is None:
            into[name] = spec
            self._where[(kind, name)] = where


def _where(fn: Any) -> str:
    target = inspect.unwrap(fn)
    code = getattr(target, "__code__", None)
    if code is None:
        return repr(fn)
    return f"{code.co_filename}:{code.co_firstlineno}"


def _duplicate(kind: str, name: str, first: str, second: str, path: Path) -> FlowError:
    return FlowError(
        f"two {kind}s are named '{name}': {first} and {second}",
        file=str(path),
        field="components",
        hint=f"rename one, or give it @{kind}(name='...')",
    )


def _check_shadowed(path: Path) -> None:
    """Refuse two decorated definitions of one name in a module's source."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, SyntaxError, ValueError, UnicodeDecodeError):
        return  # the import already succeeded; nothing more to learn here
    seen: dict[tuple[str, str], int] = {}
    for node in _definitions(tree.body):
        for decorator in node.decorator_list:
            found = _registered(decorator, node.name)
            if found is None:
                continue
            kind, name = found
            line = node.lineno
            if (kind, name) in seen:
                raise _duplicate(kind, name, f"{path}:{seen[(kind, name)]}", f"{path}:{line}", path)
            seen[(kind, name)] = line


def _definitions(body: Iterable[ast.stmt]) -> Iterable[ast.FunctionDef | ast.AsyncFunctionDef]:
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node
        elif isinstance(node, ast.If | ast.Try):  # definitions behind a guard still count
            yield from _definitions(node.body)
            yield from _definitions(node.orelse)


def _registered(decorator: ast.expr, function: str) -> tuple[str, str] | None:
    """``(kind, registered name)`` if ``decorator`` is ``@tool``/``@agent`` (or a call)."""
    call = decorator if isinstance(decorator, ast.Call) else None
    target = call.func if call is not None else decorator
    label = (
        target.id
        if isinstance(target, ast.Name)
        else target.attr
        if isinstance(target, ast.Attribute)
        else None
    )
    kind = _DECORATORS.get(label or "")
    if kind is None:
        return None
    name = function
    for keyword in call.keywords if call is not None else ():
        if keyword.arg == "name" and isinstance(keyword.value, ast.Constant):
            name = str(keyword.value.value)
    return kind, name
