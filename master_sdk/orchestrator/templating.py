"""Templates in flow files, compiled once per flow.

Strings in flow YAML may hold Jinja2 templates, rendered in a sandboxed environment
with strict undefined. A string that is a single expression (``"{{ steps.echo.output }}"``)
yields the native value, not its string. Plain dotted paths — by far the most common
template — are resolved by a small path getter without touching Jinja at all; anything
else is compiled once by the sandboxed environment. Values coming from users, tools or
models are data: they are never rendered as templates.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from master_sdk.errors import MasterError

if TYPE_CHECKING:
    from jinja2.sandbox import ImmutableSandboxedEnvironment

Scope = Mapping[str, Any]
Path = tuple[str, ...]

_SIMPLE_PATH = re.compile(r"^\s*\{\{\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)\s*\}\}\s*$")
_SINGLE_EXPR = re.compile(r"^\s*\{\{(.*)\}\}\s*$", re.DOTALL)
_MARKERS = ("{{", "{%", "{#")
MAX_RENDERED_CHARS = 1_000_000
_LITERALS = frozenset({"true", "false", "none", "True", "False", "None"})


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


class TemplateEngine:
    """Compiles flow templates; owns the (lazily created) sandboxed Jinja environment."""

    def __init__(self, *, max_rendered_chars: int = MAX_RENDERED_CHARS) -> None:
        self._env: ImmutableSandboxedEnvironment | None = None
        self.max_rendered_chars = max_rendered_chars

    @property
    def env(self) -> ImmutableSandboxedEnvironment:
        """The sandboxed environment (imported on first use: most flows never need it)."""
        if self._env is None:
            from jinja2 import StrictUndefined
            from jinja2.sandbox import ImmutableSandboxedEnvironment

            class DataEnvironment(ImmutableSandboxedEnvironment):
                """Dotted access reads mapping keys first (``output.items`` is the key,
                never ``dict.items``), like the fast path, so both agree."""

                def getattr(self, obj: Any, attribute: str) -> Any:
                    if isinstance(obj, Mapping) and attribute in obj:
                        return obj[attribute]
                    return super().getattr(obj, attribute)

            self._env = DataEnvironment(
                undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True
            )
        return self._env

    def compile(self, value: Any) -> Compiled:
        """Compile a YAML value: strings may be templates; dicts and lists recursively."""
        if isinstance(value, str):
            return self._compile_str(value)
        if isinstance(value, Mapping):
            items = [(str(k), self.compile(v)) for k, v in value.items()]
            if not any(c.dynamic for _, c in items):
                return Compiled(render=_constant(dict(value)))
            refs = [r for _, c in items for r in c.refs]

            def render_dict(scope: Scope) -> Any:
                return {k: c.render(scope) for k, c in items}

            return Compiled(render=render_dict, refs=refs, dynamic=True)
        if isinstance(value, list):
            parts = [self.compile(v) for v in value]
            if not any(c.dynamic for c in parts):
                return Compiled(render=_constant(list(value)))
            refs = [r for c in parts for r in c.refs]

            def render_list(scope: Scope) -> Any:
                return [c.render(scope) for c in parts]

            return Compiled(render=render_list, refs=refs, dynamic=True)
        return Compiled(render=_constant(value))

    def compile_guard(self, expression: str) -> Compiled:
        """Compile a ``when:`` guard: a Jinja expression without braces; renders to bool."""
        if any(m in expression for m in _MARKERS):
            raise TemplateError("a `when:` guard is an expression without {{ }} braces")
        simple = re.fullmatch(r"\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)\s*", expression)
        if simple and simple.group(1).split(".")[0] not in _LITERALS:
            path = tuple(simple.group(1).split("."))
            return Compiled(
                render=lambda scope: bool(resolve_path(scope, path)), refs=[path], dynamic=True
            )
        expr = self._expression(expression)
        return Compiled(render=lambda scope: bool(expr.render(scope)), refs=expr.refs, dynamic=True)

    def _compile_str(self, text: str) -> Compiled:
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
            return self._expression(single.group(1))
        return self._template(text)

    def _expression(self, source: str) -> Compiled:
        from jinja2 import TemplateSyntaxError

        env = self.env
        try:
            ast = env.parse("{{ " + source + " }}")
            expr = env.compile_expression(source, undefined_to_none=False)
        except TemplateSyntaxError as exc:
            raise TemplateError(f"template syntax error: {exc.message}") from None
        refs = _refs(ast)
        limit = self.max_rendered_chars

        def render(scope: Scope) -> Any:
            value = _guarded(lambda: expr(**scope))
            if isinstance(value, str) and len(value) > limit:
                raise TemplateError(f"rendered value is longer than {limit} characters")
            return value

        return Compiled(render=render, refs=refs, dynamic=True)

    def _template(self, text: str) -> Compiled:
        from jinja2 import TemplateSyntaxError

        env = self.env
        try:
            ast = env.parse(text)
            template = env.from_string(text)
        except TemplateSyntaxError as exc:
            raise TemplateError(f"template syntax error: {exc.message}") from None
        refs = _refs(ast)
        limit = self.max_rendered_chars

        def collect(scope: Scope) -> str:
            out: list[str] = []
            size = 0
            for chunk in template.generate(**scope):
                size += len(chunk)
                if size > limit:
                    raise TemplateError(f"rendered text is longer than {limit} characters")
                out.append(chunk)
            return "".join(out)

        def render(scope: Scope) -> Any:
            return _guarded(lambda: collect(scope))

        return Compiled(render=render, refs=refs, dynamic=True)


def _constant(value: Any) -> Callable[[Scope], Any]:
    return lambda scope: value


def _guarded(call: Callable[[], Any]) -> Any:
    from jinja2 import TemplateError as JinjaError
    from jinja2.exceptions import SecurityError

    try:
        return call()
    except TemplateError:
        raise
    except SecurityError as exc:
        raise TemplateError(f"refused by the template sandbox: {exc}") from None
    except JinjaError as exc:
        raise TemplateError(str(exc.message or exc)) from None
    except (TypeError, ValueError, ZeroDivisionError, AttributeError, KeyError) as exc:
        raise TemplateError(f"{type(exc).__name__}: {exc}") from None


def _refs(ast: Any) -> list[Path]:
    """Variable paths a Jinja AST reads: ``steps.echo.output.text`` -> a tuple."""
    from jinja2 import nodes

    assigned = {n.name for n in ast.find_all(nodes.Name) if n.ctx in ("store", "param")}
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
