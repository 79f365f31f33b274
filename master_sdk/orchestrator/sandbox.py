"""The Jinja sandbox flow templates run in: no escapes, bounded output, bounded time.

Built on Jinja's :class:`~jinja2.sandbox.ImmutableSandboxedEnvironment` (no private or
internal attributes, no mutation of lists and dicts, ``str.format`` sandboxed, ``range``
capped at 100 000 items) with strict undefined, and hardened further:

* **Time.** Every loop iteration, call and output ticks a per-render budget; past
  ``max_render_ms`` of CPU time the render stops with :class:`TemplateError`. Loops are
  instrumented in the template's syntax tree before it is compiled, so a loop that outputs
  nothing is bounded too.
* **Size.** Every piece of output, captured or not (``{% set %}`` blocks and macro calls
  included), counts towards ``max_rendered_chars``. Operations that could build a huge
  value before anything is output are checked first: ``*``, ``**``, ``+``, ``%``, ``~``,
  ``str.replace``/``join``/``format`` and every filter (whose input is measured, shared
  references counted each time they appear).
* **Surface.** Only side-effect-free string methods may be called; ``lipsum`` and the
  ``random`` filter are gone (runs must be reproducible); ``include``, ``import`` and
  ``extends`` are refused when the template is compiled.

Values from users, tools and models are data: nothing here ever compiles them.
"""

from __future__ import annotations

import functools
import re
import time
import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar, Token
from typing import Any

from jinja2 import StrictUndefined, nodes, pass_context
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

from master_sdk.orchestrator.template_bounds import precheck
from master_sdk.orchestrator.templating import TemplateError

__all__ = ["BUDGET_VAR", "DataEnvironment", "RenderBudget", "measure"]

BUDGET_VAR = "_master_render"
"""The context variable that carries a render's :class:`RenderBudget`."""

BUILD_FACTOR = 64
"""A render may build at most this many times ``max_rendered_chars`` in intermediate values
(every filter result, call result and ``* + ~`` result counts): the cap on what it can hold."""

_ACTIVE: ContextVar[RenderBudget | None] = ContextVar("master_render_budget", default=None)

_LOOP, _OUT, _CONCAT = "_master_loop", "_master_out", "_master_concat"
# CPU time is read once per this many ticks: reading it costs more than a tick.
_CLOCK_EVERY = 64
# Integers past this many bits are refused as results of * and ** (about 30 000 digits).
_MAX_INT_BITS = 100_000
# str methods a template may call: none of them can build more than its input.
_STR_METHODS = frozenset(
    {
        "capitalize", "casefold", "count", "endswith", "find", "format", "format_map",
        "index", "isalnum", "isalpha", "isascii", "isdecimal", "isdigit", "isidentifier",
        "islower", "isnumeric", "isprintable", "isspace", "istitle", "isupper", "join",
        "lower", "lstrip", "partition", "removeprefix", "removesuffix", "replace", "rfind",
        "rindex", "rpartition", "rsplit", "rstrip", "split", "splitlines", "startswith",
        "strip", "swapcase", "title", "upper",
    }
)  # fmt: skip
# A width or precision of six digits or more in a %-format or a format spec.
_WIDE_PERCENT = re.compile(r"%[-#0 +]*(?:\*|\d{6,})|%[-#0 +]*\d*\.(?:\*|\d{6,})")
_WIDE_SPEC = re.compile(r"\{[^{}]*:[^{}]*(?:\d{6,}|\{)")
_REFUSED_NODES: tuple[tuple[type[nodes.Node], str], ...] = (
    (nodes.Include, "include"),
    (nodes.Import, "import"),
    (nodes.FromImport, "from ... import"),
    (nodes.Extends, "extends"),
)


class RenderBudget:
    """What one render may still spend: output characters and CPU time.

    Args:
        max_chars: the output cap (``max_rendered_chars``).
        max_ms: the CPU time cap in milliseconds (``max_render_ms``).
    """

    __slots__ = ("built", "chars", "deadline", "max_chars", "max_ms", "ticks", "tokens")

    def __init__(self, max_chars: int, max_ms: int) -> None:
        self.max_chars = max_chars
        self.max_ms = max_ms
        self.chars = 0
        self.built = 0
        self.ticks = 0
        self.deadline = time.thread_time() + max_ms / 1000
        self.tokens: list[Token[RenderBudget | None]] = []

    def __enter__(self) -> RenderBudget:
        # filters, tests and calls find the render they belong to here (Jinja passes no
        # context to most filters)
        self.tokens.append(_ACTIVE.set(self))
        return self

    def __exit__(self, *exc: object) -> None:
        _ACTIVE.reset(self.tokens.pop())

    def build(self, size: int) -> None:
        """Count ``size`` characters or items of intermediate values built by a filter, call
        or operator; raise past :data:`BUILD_FACTOR` times the output cap."""
        self.built += size
        if self.built > self.max_chars * BUILD_FACTOR:
            raise TemplateError(
                f"the template builds more than {self.max_chars * BUILD_FACTOR} characters or "
                f"items of intermediate values ({BUILD_FACTOR} x max_rendered_chars)"
            )
        self.tick()

    def tick(self) -> None:
        """Count one unit of work; raise once the CPU time is spent."""
        self.ticks += 1
        if self.ticks % _CLOCK_EVERY == 0 and time.thread_time() > self.deadline:
            raise TemplateError(
                f"rendering took more than {self.max_ms} ms of CPU time (max_render_ms); "
                "the template loops too much"
            )

    def output(self, size: int) -> None:
        """Count ``size`` characters of output; raise past the cap."""
        self.chars += size
        if self.chars > self.max_chars:
            raise TemplateError(
                f"rendered text is longer than {self.max_chars} characters (max_rendered_chars)"
            )
        self.tick()

    def loop(self, iterable: Iterable[Any]) -> Iterator[Any]:
        """Iterate ``iterable``, ticking once per item."""
        for item in iterable:
            self.tick()
            yield item


def measure(value: Any, limit: int) -> int:
    """About how many characters ``value`` takes as text, counting up to just past ``limit``.

    Strings count their length, containers their items (a reference that appears many
    times counts each time: that is what printing it costs), other values a few characters.
    Stops early once ``limit`` is passed, so measuring a huge value stays cheap.
    """
    total = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            total += len(item) + 2
        elif isinstance(item, Mapping):
            total += 2 + 2 * len(item)
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            total += 2 + len(item)
            stack.extend(item)
        elif isinstance(item, int) and not isinstance(item, bool):
            total += item.bit_length() // 3 + 1
        else:
            total += 8
        if total > limit:
            return total
    return total


def _too_big(what: str, value: Any, limit: int) -> None:
    if measure(value, limit) > limit:
        raise TemplateError(f"{what} would be longer than {limit} characters (max_rendered_chars)")


def _budget(context: Context) -> RenderBudget | None:
    # render variables live in the context's parent mapping (derived contexts copy it)
    budget = context.parent.get(BUDGET_VAR)
    return budget if type(budget) is RenderBudget else None


class DataEnvironment(ImmutableSandboxedEnvironment):
    """The hardened sandbox (see module docstring).

    Dotted access reads mapping keys first (``output.items`` is the key, never
    ``dict.items``), like the templating fast path, so both agree.

    Args:
        max_chars: the cap on any intermediate value (and on output when a render carries
            no budget of its own).
    """

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, *, max_chars: int) -> None:
        # optimized=False: Jinja's optimizer folds constant expressions when a template is
        # compiled, i.e. it would run `[1]|batch(10**9, 0)|list` while the flow loads, outside
        # every render budget. Without it, all work happens in a render, under the budget.
        super().__init__(
            undefined=StrictUndefined,
            autoescape=False,
            keep_trailing_newline=True,
            optimized=False,
        )
        self.max_chars = max_chars
        self.globals.pop("lipsum", None)
        self.filters.pop("random", None)
        self.filters = {name: _guard_filter(fn, self) for name, fn in self.filters.items()}
        self.tests = {name: _guard_test(fn) for name, fn in self.tests.items()}  # type: ignore[arg-type]  # typeshed types tests as bare `function`
        self.filters[_LOOP] = _loop
        self.filters[_OUT] = _out
        self.filters[_CONCAT] = _concat

    def limit(self, context: Context | None) -> int:
        """The size cap in force for a render."""
        budget = _budget(context) if context is not None else None
        return budget.max_chars if budget is not None else self.max_chars

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, Mapping) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def call(
        __self,  # Jinja's signature: the double underscores avoid keyword clashes
        __context: Context,
        __obj: Any,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        """Call from sandboxed code: tick, refuse unsafe methods, check sizes, call."""
        budget = _budget(__context)
        if budget is not None:
            budget.tick()
        limit = __self.limit(__context)
        if args and _is_str_join(__obj):
            # a generator would only be sized by joining it: take its items first
            args = (_materialize(args[0], limit), *args[1:])
        _check_call(__obj, args, kwargs, limit)
        result = super().call(__context, __obj, *args, **kwargs)
        size = _size(result)
        if size > limit:
            raise TemplateError(f"a call produced more than {limit} characters or items")
        if budget is not None:
            budget.build(size)
        return result

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        """Intercepted ``* ** + %``: refuse results too large to build."""
        _check_binop(operator, left, right, self.limit(context))
        result = super().call_binop(context, operator, left, right)
        budget = _budget(context)
        if budget is not None and isinstance(result, str | list | tuple):
            budget.build(len(result))
        return result

    def _generate(
        self,
        source: nodes.Template,
        name: str | None,
        filename: str | None,
        defer_init: bool = False,
    ) -> str:
        for kind, label in _REFUSED_NODES:
            if next(source.find_all(kind), None) is not None:
                raise TemplateError(f"{{% {label} %}} is not available in flow templates")
        _Instrument().visit(source)
        generated: str = super()._generate(source, name, filename, defer_init=defer_init)
        return generated


class _Instrument(NodeTransformer):
    """Routes loops, output and ``~`` through the budget filters.

    Literal text is counted only where it can repeat or be captured (inside loops, macros,
    call, filter and set blocks); elsewhere its size is fixed by the template's own.
    """

    def __init__(self) -> None:
        self.repeating = 0

    def _inside(self, node: nodes.Node) -> nodes.Node:
        self.repeating += 1
        try:
            self.generic_visit(node)
        finally:
            self.repeating -= 1
        return node

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self._inside(node)
        node.iter = _filter(node.iter, _LOOP)
        return node

    def visit_Macro(self, node: nodes.Macro) -> nodes.Node:
        return self._inside(node)

    def visit_CallBlock(self, node: nodes.CallBlock) -> nodes.Node:
        return self._inside(node)

    def visit_FilterBlock(self, node: nodes.FilterBlock) -> nodes.Node:
        return self._inside(node)

    def visit_AssignBlock(self, node: nodes.AssignBlock) -> nodes.Node:
        return self._inside(node)

    def visit_Output(self, node: nodes.Output) -> nodes.Node:
        self.generic_visit(node)
        wrapped: list[nodes.Expr] = []
        for child in node.nodes:
            if isinstance(child, nodes.TemplateData) and not self.repeating:
                wrapped.append(child)
            elif isinstance(child, nodes.TemplateData):
                wrapped.append(_filter(nodes.Const(child.data, lineno=child.lineno), _OUT))
            else:
                wrapped.append(_filter(child, _OUT))
        node.nodes = wrapped
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return _filter(nodes.List(node.nodes, lineno=node.lineno), _CONCAT)


def _filter(node: nodes.Node, name: str) -> nodes.Expr:
    return nodes.Filter(node, name, [], [], None, None, lineno=node.lineno)


@pass_context
def _loop(context: Context, iterable: Any) -> Any:
    budget = _budget(context)
    return iterable if budget is None else budget.loop(iterable)


@pass_context
def _out(context: Context, value: Any) -> Any:
    budget = _budget(context)
    if type(value) is not str:
        environment = context.environment
        if budget is not None:
            _too_big("an output value", value, budget.max_chars)
        elif isinstance(environment, DataEnvironment):
            _too_big("an output value", value, environment.max_chars)
        value = str(value)
    if budget is not None:
        budget.output(len(value))
    return value


@pass_context
def _concat(context: Context, parts: list[Any]) -> str:
    environment = context.environment
    if isinstance(environment, DataEnvironment):
        _too_big("a ~ concatenation", parts, environment.limit(context))
    return "".join([str(part) for part in parts])


def _size(value: Any) -> int:
    return len(value) if isinstance(value, str | list | tuple | dict) else 1


def _guard_filter(fn: Callable[..., Any], env: DataEnvironment) -> Callable[..., Any]:
    """Wrap a filter: its input is measured and its arguments checked before it runs
    (:mod:`~master_sdk.orchestrator.template_bounds`), its result's size after; the result
    counts towards the render's build budget, and each call ticks its clock."""
    passes = getattr(fn, "jinja_pass_arg", None)
    skip = 1 if passes is not None else 0
    check = precheck(fn, skip)
    name = fn.__name__

    @functools.wraps(fn)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        budget = _ACTIVE.get()
        limit = budget.max_chars if budget is not None else env.max_chars
        if budget is not None:
            budget.tick()
        if len(args) > skip:
            if name in _MATERIALIZED:
                # sized before the filter builds anything from it (a generator has no size)
                args = (*args[:skip], _materialize(args[skip], limit), *args[skip + 1 :])
            _too_big(f"the input of the '{name}' filter", args[skip], limit)
        check(args, kwargs, limit)
        if name == "do_format" and len(args) > skip:
            _check_format(args[skip], args[skip + 1 :], kwargs, limit)
        result = fn(*args, **kwargs)
        size = _size(result)
        if size > limit:
            raise TemplateError(
                f"the '{name}' filter produced more than {limit} characters or items"
            )
        if budget is not None:
            budget.build(size)
        return result

    return guarded


# filters whose output size depends on how many items their input has
_MATERIALIZED = frozenset({"do_join", "do_sum"})


def _materialize(value: Any, limit: int) -> Any:
    """``value`` as a list when it is an iterator (a generator from ``map``, ``select``...),
    taking at most ``limit`` items; other values are returned as they are."""
    if isinstance(value, Iterator):
        items = []
        for item in value:
            items.append(item)
            if len(items) > limit:
                raise TemplateError(f"a sequence of more than {limit} items (max_rendered_chars)")
        return items
    return value


def _is_str_join(obj: Any) -> bool:
    target = getattr(obj, "__wrapped__", obj)
    return getattr(target, "__name__", "") == "join" and isinstance(
        getattr(target, "__self__", None), str
    )


def _guard_test(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a test: each call ticks the render's clock (tests build nothing)."""

    @functools.wraps(fn)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        budget = _ACTIVE.get()
        if budget is not None:
            budget.tick()
        return fn(*args, **kwargs)

    return guarded


def _check_call(obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any], limit: int) -> None:
    target = getattr(obj, "__wrapped__", obj)  # the sandbox wraps str.format in a function
    if not isinstance(target, types.BuiltinMethodType | types.MethodWrapperType):
        return
    owner = getattr(target, "__self__", None)
    if not isinstance(owner, str):
        return
    name = target.__name__
    if name not in _STR_METHODS:
        raise SecurityError(f"str.{name}() is not available in flow templates")
    if name == "replace" and len(args) >= 2:
        _check_replace(owner, args[0], args[1], limit)
    elif name == "join" and args:
        _too_big("str.join()", args[0], limit)
        items = args[0]
        if (
            isinstance(items, list | tuple | set | frozenset | dict)
            and len(owner) * len(items) > limit
        ):
            raise TemplateError(f"str.join() would build more than {limit} characters")
    elif name in ("format", "format_map"):
        _check_format(owner, args, kwargs, limit)


def _check_replace(text: Any, old: Any, new: Any, limit: int) -> None:
    if isinstance(text, str) and isinstance(old, str) and isinstance(new, str):
        grows = len(new) - len(old)
        if grows > 0 and len(text) + (text.count(old) if old else len(text) + 1) * grows > limit:
            raise TemplateError(f"replace() would build more than {limit} characters")


def _check_width(width: Any, limit: int) -> None:
    if isinstance(width, int) and width > limit:
        raise TemplateError(f"a width of {width} is above {limit} (max_rendered_chars)")


def _check_indent(text: Any, args: tuple[Any, ...], kwargs: dict[str, Any], limit: int) -> None:
    width = args[0] if args else kwargs.get("width", 4)
    pad = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
    lines = text.count("\n") + 1 if isinstance(text, str) else 1
    if pad * lines > limit:
        raise TemplateError(f"indent() would build more than {limit} characters")


def _check_format(template: Any, args: Any, kwargs: Any, limit: int) -> None:
    wide = _WIDE_PERCENT.search(template) or _WIDE_SPEC.search(template)
    if isinstance(template, str) and wide:
        raise TemplateError(
            "format widths of 100000 or more, '*' widths and nested format specs are not "
            "available in flow templates"
        )
    _too_big("format()", [template, args, kwargs], limit)


def _check_binop(operator: str, left: Any, right: Any, limit: int) -> None:
    if operator == "*":
        for seq, count in ((left, right), (right, left)):
            if isinstance(seq, str | list | tuple) and isinstance(count, int):
                if len(seq) * max(count, 0) > limit:
                    raise TemplateError(
                        f"'*' would build {len(seq) * count} characters or items, above {limit}"
                    )
                return
        both = isinstance(left, int) and isinstance(right, int)
        if both and left.bit_length() + right.bit_length() > _MAX_INT_BITS:
            raise TemplateError("'*' would build an integer too large for a template")
    elif operator == "**":
        grows = isinstance(left, int) and isinstance(right, int) and abs(left) > 1 and right > 0
        if grows and right * left.bit_length() > _MAX_INT_BITS:
            raise TemplateError("'**' would build an integer too large for a template")
    elif operator == "+":
        sized = isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple)
        if sized and len(left) + len(right) > limit:
            raise TemplateError(f"'+' would build more than {limit} characters or items")
    elif operator == "%" and isinstance(left, str):
        _check_format(left, right, None, limit)
