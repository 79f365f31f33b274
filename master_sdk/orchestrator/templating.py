"""Templates in flow files, compiled once per flow.

Strings in flow YAML may hold Jinja2 templates, rendered in a sandboxed environment
with strict undefined (:mod:`master_sdk.orchestrator.sandbox`: no escapes, output capped
at ``max_rendered_chars``, CPU time at ``max_render_ms``). A string that is a single
expression (``"{{ steps.echo.output }}"``) yields the native value, not its string.
Plain dotted paths — by far the most common template — are resolved by a small path
getter without touching Jinja at all; anything else is compiled once by the sandboxed
environment. Values coming from users, tools or models are data: they are never rendered
as templates.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from master_sdk.contracts.limits import MAX_RENDER_MS, MAX_RENDERED_CHARS
from master_sdk.errors import MasterError

if TYPE_CHECKING:
    from master_sdk.orchestrator.sandbox import DataEnvironment

Scope = Mapping[str, Any]
Path = tuple[str, ...]
T = TypeVar("T")

_SIMPLE_PATH = re.compile(r"^\s*\{\{\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)\s*\}\}\s*$")
_SINGLE_EXPR = re.compile(r"^\s*\{\{(.*)\}\}\s*$", re.DOTALL)
_MARKERS = ("{{", "{%", "{#")
_LITERALS = frozenset({"true", "false", "none", "True", "False", "None"})
# Names Jinja itself provides (sandbox globals, loop and macro variables): not flow data.
_JINJA_NAMES = frozenset(
    {"range", "dict", "namespace", "cycler", "joiner", "loop", "caller", "varargs", "kwargs"}
)


class TemplateError(MasterError):
    """A template failed to compile or render; ``path`` names the undefined part if any."""


@dataclass(slots=True)
class Compiled:
    """A compiled template value: call :meth:`render` with the run's scope.

    ``refs`` lists every variable path the template reads (``("steps", "echo", "output")``)
    so the loader can check them before any run starts.
    """

    render: Callable[[Scope], Any]
    refs: list[Path] = field(default_factory=list)
    dynamic: bool = False


def resolve_path(scope: Scope, path: Path) -> Any:
    """Look ``path`` up in ``scope`` (mapping keys and list indices), strictly."""
    value: Any = scope
    for depth, part in enumerate(path):
        if isinstance(value, Mapping):
            try:
                value = value[part]
                continue
            except KeyError:
                pass
        elif isinstance(value, list | tuple) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
            continue
        where = ".".join(path[:depth]) or "scope"
        if value is None:
            raise TemplateError(f"'{'.'.join(path)}' is undefined: '{where}' is None")
        raise TemplateError(f"'{'.'.join(path)}' is undefined: '{where}' has no '{part}'")
    return value


@dataclass(frozen=True, slots=True)
class RenderLimits:
    """What one render may produce and spend (the policy's ``max_rendered_chars`` and
    ``max_render_ms``)."""

    max_chars: int = MAX_RENDERED_CHARS
    max_ms: int = MAX_RENDER_MS


class TemplateEngine:
    """Compiles flow templates; owns the (lazily created) sandboxed Jinja environment.

    Args:
        max_rendered_chars: the default output cap, and the cap on any intermediate value.
        max_render_ms: the default CPU time one render may take.

    ``compile`` takes per-flow :class:`RenderLimits` (from the flow's policy), which may
    only be lower than these.
    """

    def __init__(
        self, *, max_rendered_chars: int = MAX_RENDERED_CHARS, max_render_ms: int = MAX_RENDER_MS
    ) -> None:
        self._env: DataEnvironment | None = None
        self.max_rendered_chars = max_rendered_chars
        self.limits = RenderLimits(max_rendered_chars, max_render_ms)

    @property
    def env(self) -> DataEnvironment:
        """The sandboxed environment (imported on first use: most flows never need it)."""
        if self._env is None:
            from master_sdk.orchestrator.sandbox import DataEnvironment

            self._env = DataEnvironment(max_chars=self.max_rendered_chars)
        return self._env

    def _limits(self, limits: RenderLimits | None) -> RenderLimits:
        if limits is None:
            return self.limits
        return RenderLimits(
            min(limits.max_chars, self.limits.max_chars), min(limits.max_ms, self.limits.max_ms)
        )

    def compile(self, value: Any, *, limits: RenderLimits | None = None) -> Compiled:
        """Compile a YAML value: strings may be templates; dicts and lists recursively."""
        if isinstance(value, str):
            return self._compile_str(value, self._limits(limits))
        if isinstance(value, Mapping):
            items = [(str(k), self.compile(v, limits=limits)) for k, v in value.items()]
            if not any(c.dynamic for _, c in items):
                return Compiled(render=_constant(dict(value)))
            refs = [r for _, c in items for r in c.refs]

            def render_dict(scope: Scope) -> Any:
                return {k: c.render(scope) for k, c in items}

            return Compiled(render=render_dict, refs=refs, dynamic=True)
        if isinstance(value, list):
            parts = [self.compile(v, limits=limits) for v in value]
            if not any(c.dynamic for c in parts):
                return Compiled(render=_constant(list(value)))
            refs = [r for c in parts for r in c.refs]

            def render_list(scope: Scope) -> Any:
                return [c.render(scope) for c in parts]

            return Compiled(render=render_list, refs=refs, dynamic=True)
        return Compiled(render=_constant(value))

    def compile_guard(self, expression: str, *, limits: RenderLimits | None = None) -> Compiled:
        """Compile a ``when:`` guard: a Jinja expression without braces; renders to bool."""
        if any(m in expression for m in _MARKERS):
            raise TemplateError("a `when:` guard is an expression without {{ }} braces")
        simple = re.fullmatch(r"\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)\s*", expression)
        if simple and simple.group(1).split(".")[0] not in _LITERALS:
            path = tuple(simple.group(1).split("."))
            return Compiled(
                render=lambda scope: bool(resolve_path(scope, path)), refs=[path], dynamic=True
            )
        expr = self._expression(expression, self._limits(limits))
        return Compiled(render=lambda scope: bool(expr.render(scope)), refs=expr.refs, dynamic=True)

    def _compile_str(self, text: str, limits: RenderLimits) -> Compiled:
        if not any(m in text for m in _MARKERS):
            return Compiled(render=_constant(text))
        simple = _SIMPLE_PATH.match(text)
        if simple and simple.group(1).split(".")[0] not in _LITERALS:
            path = tuple(simple.group(1).split("."))
            return Compiled(
                render=lambda scope: resolve_path(scope, path), refs=[path], dynamic=True
            )
        single = _SINGLE_EXPR.match(text)
        if single and not any(m in single.group(1) for m in ("{{", "}}", "{%", "{#")):
            return self._expression(single.group(1), limits)
        return self._template(text, limits)

    def _expression(self, source: str, limits: RenderLimits) -> Compiled:
        from jinja2 import TemplateSyntaxError

        from master_sdk.orchestrator.sandbox import BUDGET_VAR, RenderBudget, measure

        env = self.env
        try:
            ast = env.parse("{{ " + source + " }}")
            expr = _guarded(lambda: env.compile_expression(source, undefined_to_none=False))
        except TemplateSyntaxError as exc:
            raise TemplateError(f"template syntax error: {exc.message}") from None
        refs = _refs(ast)
        max_chars, max_ms = limits.max_chars, limits.max_ms

        def render(scope: Scope) -> Any:
            budget = RenderBudget(max_chars, max_ms)
            with budget:
                value = _guarded(lambda: expr(**scope, **{BUDGET_VAR: budget}))
            # the value is stored and printed as it is: measure it the way printing would
            if not isinstance(value, bool | int | float | None) and measure(value, max_chars) > (
                max_chars
            ):
                raise TemplateError(
                    f"rendered value is longer than {max_chars} characters (max_rendered_chars)"
                )
            return value

        return Compiled(render=render, refs=refs, dynamic=True)

    def _template(self, text: str, limits: RenderLimits) -> Compiled:
        from jinja2 import TemplateSyntaxError

        from master_sdk.orchestrator.sandbox import BUDGET_VAR, RenderBudget

        env = self.env
        try:
            ast = env.parse(text)
            template = _guarded(lambda: env.from_string(text))
        except TemplateSyntaxError as exc:
            raise TemplateError(f"template syntax error: {exc.message}") from None
        refs = _refs(ast)
        max_chars, max_ms = limits.max_chars, limits.max_ms

        def collect(scope: Scope) -> str:
            budget = RenderBudget(max_chars, max_ms)
            out: list[str] = []
            size = 0
            with budget:
                for chunk in template.generate(**scope, **{BUDGET_VAR: budget}):
                    size += len(chunk)
                    if size > max_chars:
                        raise TemplateError(
                            f"rendered text is longer than {max_chars} characters "
                            "(max_rendered_chars)"
                        )
                    out.append(chunk)
            return "".join(out)

        def render(scope: Scope) -> Any:
            return _guarded(lambda: collect(scope))

        return Compiled(render=render, refs=refs, dynamic=True)


def _constant(value: Any) -> Callable[[Scope], Any]:
    return lambda scope: value


def _guarded(call: Callable[[], T]) -> T:
    """Run a compile or render step; every failure becomes a :class:`TemplateError`."""
    try:
        return call()
    except TemplateError:
        raise
    except RecursionError:
        raise TemplateError("the template recurses too deeply (a macro calling itself?)") from None
    except MemoryError:
        raise TemplateError("the template ran out of memory") from None
    except Exception as exc:  # a template must fail its step, never the process
        # imported here, not above: the success path is hot and Jinja is loaded by then
        from jinja2 import TemplateError as JinjaError
        from jinja2 import TemplateSyntaxError
        from jinja2.exceptions import SecurityError

        if isinstance(exc, TemplateSyntaxError):
            raise
        if isinstance(exc, SecurityError):
            raise TemplateError(f"refused by the template sandbox: {exc}") from None
        if isinstance(exc, JinjaError):
            raise TemplateError(str(exc.message or exc)) from None
        if isinstance(exc, OverflowError):
            raise TemplateError(str(exc)) from None
        raise TemplateError(f"{type(exc).__name__}: {exc}") from None


def _refs(ast: Any) -> list[Path]:
    """Variable paths a Jinja AST reads: ``steps.echo.output.text`` -> a tuple."""
    from jinja2 import nodes

    assigned = {n.name for n in ast.find_all(nodes.Name) if n.ctx in ("store", "param")}
    assigned |= _JINJA_NAMES
    paths: list[Path] = []
    chained: set[int] = set()

    def chain(node: Any) -> Path | None:
        parts: list[str] = []
        while True:
            if isinstance(node, nodes.Getattr):
                parts.append(node.attr)
                node = node.node
            elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
                parts.append(str(node.arg.value))
                node = node.node
            else:
                break
        if isinstance(node, nodes.Name) and node.ctx == "load":
            chained.add(id(node))
            return (node.name, *reversed(parts))
        return None

    for node in ast.find_all((nodes.Getattr, nodes.Getitem)):
        path = chain(node)
        if path and path[0] not in assigned:
            paths.append(path)
    for name in ast.find_all(nodes.Name):
        if name.ctx == "load" and id(name) not in chained and name.name not in assigned:
            paths.append((name.name,))
    # keep the longest path per chain: drop strict prefixes of other paths
    unique = sorted(set(paths), key=len, reverse=True)
    kept: list[Path] = []
    for path in unique:
        if not any(other[: len(path)] == path for other in kept):
            kept.append(path)
    return kept
