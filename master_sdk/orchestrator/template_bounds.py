"""Size checks made *before* a template filter builds its result.

The sandbox (:mod:`master_sdk.orchestrator.sandbox`) measures every filter's input and
checks its result, but a result is built before it can be checked: ``[1]|batch(50000000, 0)``
allocates fifty million fill values and ``range(1)|slice(50000000, 0)`` fifty million lists
inside the filter, and ``items|join(sep)`` builds the whole string. So each filter whose
output can outgrow its input has a check here, computed from its arguments, that refuses
the call first:

=================  ==========================================================================
``batch``          with a fill value, ``linecount`` fill slots: at most the cap / 2
``slice``          ``slices`` lists: at most the cap / 2
``center``         ``width`` characters: at most the cap
``indent``         ``width`` (or the string's length) times the lines
``wordwrap``       the text plus ``wrapstring`` at every line break (``width`` >= 1)
``join``           the items plus ``d`` between each two
``replace``        the text plus the growth at every occurrence (``count`` honoured)
``tojson``         ``indent`` at every nesting level of every line
``pprint``         one column per nesting level of every line
``urlize``         ``target`` and ``rel`` repeated at every word
``sum``            with a list or string ``start``: items times size (the copies are quadratic)
``truncate``       ``end`` at most the cap
=================  ==========================================================================

Sizes are estimates that err upwards; a template that needs more than the cap can never
render anyway (``max_rendered_chars`` bounds every value, not only the output).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from master_sdk.orchestrator.templating import TemplateError

__all__ = ["PRECHECKS", "nested_lines", "precheck"]

Params = Mapping[str, Any]


def _refuse(name: str, size: int, limit: int) -> None:
    raise TemplateError(
        f"the '{name}' filter would build about {size} characters or items, above {limit} "
        "(max_rendered_chars)"
    )


def _int(value: Any, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _length(value: Any) -> int:
    try:
        return len(value)
    except TypeError:
        return 1


def nested_lines(value: Any, indent: int, limit: int) -> int:
    """About how many characters ``value`` takes pretty-printed with ``indent`` per level
    (one line per item, each indented by its depth); stops counting past ``limit``."""
    total = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        total += depth * indent + 4
        if isinstance(item, str):
            total += len(item)
        elif isinstance(item, Mapping):
            stack.extend((v, depth + 1) for v in item.values())
            stack.extend((k, depth + 1) for k in item)
        elif isinstance(item, list | tuple | set | frozenset):
            stack.extend((v, depth + 1) for v in item)
        if total > limit:
            return total
    return total


def _batch(p: Params, limit: int) -> None:
    if p.get("fill_with") is not None:
        count = _int(p.get("linecount"))
        if count * 2 > limit:
            _refuse("batch", count, limit)


def _slice(p: Params, limit: int) -> None:
    count = _int(p.get("slices"))
    if count * 2 > limit:
        _refuse("slice", count, limit)


def _center(p: Params, limit: int) -> None:
    width = _int(p.get("width"), 80)
    if width > limit:
        _refuse("center", width, limit)


def _indent(p: Params, limit: int) -> None:
    width = p.get("width", 4)
    pad = len(width) if isinstance(width, str) else _int(width)
    text = p.get("s")
    lines = text.count("\n") + 1 if isinstance(text, str) else 1
    if pad * lines > limit:
        _refuse("indent", pad * lines, limit)


def _wordwrap(p: Params, limit: int) -> None:
    text = p.get("s")
    if not isinstance(text, str):
        return
    width = max(_int(p.get("width"), 79), 1)
    wrap = p.get("wrapstring")
    wrap_len = len(wrap) if isinstance(wrap, str) else 1
    lines = len(text) // width + text.count("\n") + text.count(" ") + 1
    size = len(text) + lines * wrap_len
    if size > limit:
        _refuse("wordwrap", size, limit)


def _join(p: Params, limit: int) -> None:
    sep = p.get("d")
    if isinstance(sep, str) and sep:
        size = _length(p.get("value")) * len(sep)
        if size > limit:
            _refuse("join", size, limit)


def _replace(p: Params, limit: int) -> None:
    text, old, new = p.get("s"), p.get("old"), p.get("new")
    if not (isinstance(text, str) and isinstance(old, str) and isinstance(new, str)):
        return
    grows = len(new) - len(old)
    if grows <= 0:
        return
    hits = text.count(old) if old else len(text) + 1
    count = p.get("count")
    if isinstance(count, int) and not isinstance(count, bool) and count >= 0:
        hits = min(hits, count)
    size = len(text) + hits * grows
    if size > limit:
        _refuse("replace", size, limit)


def _tojson(p: Params, limit: int) -> None:
    indent = p.get("indent")
    step = len(indent) if isinstance(indent, str) else _int(indent)
    if step:
        size = nested_lines(p.get("value"), step, limit)
        if size > limit:
            _refuse("tojson", size, limit)


def _pprint(p: Params, limit: int) -> None:
    size = nested_lines(p.get("value"), 1, limit)
    if size > limit:
        _refuse("pprint", size, limit)


def _urlize(p: Params, limit: int) -> None:
    text = p.get("value")
    if not isinstance(text, str):
        return
    extra = sum(len(p[k]) for k in ("target", "rel") if isinstance(p.get(k), str))
    words = text.count(" ") + text.count("\n") + 1
    size = 3 * len(text) + words * (extra + 64)
    if size > 4 * limit:
        _refuse("urlize", size, limit)


def _sum(p: Params, limit: int) -> None:
    start = p.get("start")
    if isinstance(start, str | list | tuple):
        items = _length(p.get("iterable"))
        from master_sdk.orchestrator.sandbox import measure

        size = items * measure(p.get("iterable"), limit)
        if size > 16 * limit:
            _refuse("sum", size, limit)


def _truncate(p: Params, limit: int) -> None:
    end = p.get("end")
    if isinstance(end, str) and len(end) > limit:
        _refuse("truncate", len(end), limit)


#: The check for each filter function name.
PRECHECKS: Mapping[str, Callable[[Params, int], None]] = {
    "do_batch": _batch,
    "do_slice": _slice,
    "do_center": _center,
    "do_indent": _indent,
    "do_wordwrap": _wordwrap,
    "do_join": _join,
    "do_replace": _replace,
    "do_tojson": _tojson,
    "do_pprint": _pprint,
    "do_urlize": _urlize,
    "do_sum": _sum,
    "do_truncate": _truncate,
}


_PASSED = frozenset({"eval_ctx", "environment", "env", "context"})


def precheck(
    fn: Callable[..., Any], passed: int
) -> Callable[[tuple[Any, ...], dict[str, Any], int], None]:
    """The argument check for filter ``fn`` (a no-op for filters that cannot grow).

    Args:
        passed: how many leading arguments Jinja passes (context, environment...).
    """
    check = PRECHECKS.get(fn.__name__)
    if check is None:
        return _nothing
    signature = inspect.signature(fn)
    # Jinja's async variants take an evaluation context their documented signature lacks
    first = next(iter(signature.parameters), "")
    skip = 0 if first in _PASSED else passed

    def run(args: tuple[Any, ...], kwargs: dict[str, Any], limit: int) -> None:
        try:
            bound = signature.bind(*args[skip:], **kwargs)
        except TypeError:
            return  # the call itself will fail with Jinja's own message
        bound.apply_defaults()
        check(bound.arguments, limit)

    return run


def _nothing(args: tuple[Any, ...], kwargs: dict[str, Any], limit: int) -> None:
    return None
