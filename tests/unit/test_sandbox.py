"""The template sandbox: known escapes refused, output and CPU time bounded, data inert."""

from __future__ import annotations

import time

import pytest

from master_sdk.orchestrator.templating import RenderLimits, TemplateEngine, TemplateError
from tests.conftest import Project

SCOPE = {
    "inputs": {"text": "hello", "n": 3, "items": [1, 2], "big": "x" * 60_000},
    "steps": {"echo": {"output": {"text": "hi"}, "status": "completed"}},
    "run": {"id": "r1", "product": "p", "flow": "f"},
}
FAST = RenderLimits(max_chars=1_000_000, max_ms=100)


@pytest.fixture(scope="module")
def engine() -> TemplateEngine:
    return TemplateEngine()


def render(engine: TemplateEngine, template: str, limits: RenderLimits = FAST) -> object:
    return engine.compile(template, limits=limits).render(SCOPE)


# Payloads from Jinja's own sandbox tests and the published escapes: str.format and
# format_map reaching attributes (CVE-2016-10745, CVE-2019-10906), a format method kept in
# a variable (CVE-2024-56326) or fetched with |attr (CVE-2025-27516), and the classic
# subclass walk, globals of functions, mutation of data.
ESCAPES = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ inputs.text.__class__.__base__.__subclasses__() }}",
    "{{ (inputs.text | attr('__class__')).__mro__ }}",
    "{{ 'a{0.__class__}'.format(inputs) }}",
    "{{ '{0.__class__.__init__.__globals__}'.format(inputs.items) }}",
    "{{ '{x.__class__}'.format_map({'x': inputs}) }}",
    "{% set f = '{0.__class__.__base__}'.format %}{{ f(inputs.text) }}",
    "{{ ('{0.__class__}' | attr('format'))(inputs.text) }}",
    "{{ ('{0.__class__}' | attr('format_map'))({'0': inputs.text}) }}",
    "{{ cycler.__init__.__globals__.os }}",
    "{{ joiner.__init__.__globals__ }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ range.__call__.__self__ }}",
    "{{ dict.__subclasses__() }}",
    "{{ self._TemplateReference__context }}",
    "{{ self.__init__.__globals__ }}",
    "{{ lipsum.__globals__ }}",
    "{{ inputs.items.append(3) }}",
    "{{ inputs.pop('text') }}",
    "{{ inputs.update({'x': 1}) }}",
    "{{ inputs.text.ljust(10) }}",
    "{{ '%s' | format(inputs.__class__) }}",
    "{% include 'other.html' %}",
    "{% import 'macros.html' as m %}",
    "{% extends 'base.html' %}",
    "{% from 'macros.html' import m %}",
]


@pytest.mark.parametrize("payload", ESCAPES)
def test_known_sandbox_escapes_raise_a_clear_template_error(
    engine: TemplateEngine, payload: str
) -> None:
    """Every payload fails with TemplateError at compile or render; none yields an object."""
    with pytest.raises(TemplateError) as caught:
        compiled = engine.compile(payload, limits=FAST)
        value = compiled.render(SCOPE)
        raise AssertionError(f"rendered {value!r}")
    assert "rendered" not in str(caught.value)


def test_the_range_builtin_is_capped(engine: TemplateEngine) -> None:
    """range() of more than 100 000 items is refused at once (Jinja's MAX_RANGE)."""
    started = time.perf_counter()
    with pytest.raises(TemplateError, match="MAX_RANGE"):
        render(engine, "{% for i in range(10**9) %}x{% endfor %}")
    with pytest.raises(TemplateError, match="MAX_RANGE"):
        render(engine, "{{ range(100001) | list | length }}")
    assert render(engine, "{{ range(100000) | list | length }}") == 100000
    assert time.perf_counter() - started < 2


@pytest.mark.parametrize(
    "template",
    [
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        "{% macro m(n) %}{% if n %}{% for i in range(2) %}{{ m(n - 1) }}{% endfor %}{% endif %}"
        "{% endmacro %}{% set x %}{{ m(60) }}{% endset %}",
        "{% for i in range(99999) %}{% if inputs.items | select('odd') | list %}{% endif %}"
        "{% for j in range(99999) %}{% endfor %}{% endfor %}",
    ],
)
def test_rendering_that_runs_too_long_stops_with_a_clear_error(
    engine: TemplateEngine, template: str
) -> None:
    """Loops that output nothing are bounded by CPU time (100 ms here), not by output."""
    started = time.perf_counter()
    with pytest.raises(TemplateError, match="max_render_ms"):
        render(engine, template)
    assert time.perf_counter() - started < 5


def test_a_macro_calling_itself_fails_fast(engine: TemplateEngine) -> None:
    """Unbounded recursion is a TemplateError, not a RecursionError escaping the engine."""
    with pytest.raises(TemplateError, match="recurses too deeply"):
        render(engine, "{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}")


@pytest.mark.parametrize(
    "template",
    [
        "{% for i in range(1000) %}xx{% endfor %}",
        "{% set s %}{% for i in range(1000) %}xx{% endfor %}{% endset %}{{ s | length }}",
        "{% macro m() %}{% for i in range(1000) %}x{% endfor %}{% endmacro %}"
        "{% set s = m() %}{{ s | length }}",
        "said: {{ inputs.big }}",
    ],
)
def test_output_is_capped_including_captured_blocks(engine: TemplateEngine, template: str) -> None:
    """Every character produced counts, whether output or captured by set or a macro.

    (A template that is only a reference, ``{{ inputs.big }}``, passes the value through
    unchanged: it renders nothing new.)
    """
    with pytest.raises(TemplateError, match="max_rendered_chars"):
        render(engine, template, RenderLimits(max_chars=1000, max_ms=1000))


@pytest.mark.parametrize(
    "template",
    [
        "{{ 'x' * 10**9 }}",
        "{{ [0] * 10**9 }}",
        "{{ 10 ** 100000 }}",
        "{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}"
        "{% endfor %}",
        "{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}"
        "{% endfor %}",
        "{{ 'x' | center(10**9) }}",
        "{{ ('x\\n' * 100000) | indent(1000) }}",
        "{{ '%999999999d' % 1 }}",
        "{{ '%*d' % (999999999, 1) }}",
        "{{ '{:>999999999}'.format(1) }}",
        "{{ '{:{}}'.format(1, 999999999) }}",
        "{{ inputs.big.replace('x', inputs.big) }}",
        "{{ inputs.big | replace('x', inputs.big) }}",
        "{{ [inputs.big] * 1000 }}",
        "{{ ([inputs.big] * 1000) | join }}",
        "{{ ''.join([inputs.big] * 1000) }}",
        "{{ ([inputs.big] * 1000) | string }}",
        "{{ ([inputs.big] * 1000) | tojson }}",
        "{% for i in range(100) %}{{ [inputs.big] * 100 }}{% endfor %}",
    ],
)
def test_huge_values_are_refused_before_they_are_built(
    engine: TemplateEngine, template: str
) -> None:
    """Repetition, powers, doubling, padding, widths, replace and join are checked first."""
    started = time.perf_counter()
    with pytest.raises(TemplateError):
        render(engine, template, RenderLimits(max_chars=1_000_000, max_ms=5000))
    assert time.perf_counter() - started < 3


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ inputs.text * 3 }}", "hellohellohello"),
        ("{{ 7 * 7 }}", 49),
        ("{{ inputs.n ** 3 }}", 27),
        ("{{ 'a %s' % inputs.text }}", "a hello"),
        ("{{ '{} and {}'.format(inputs.text, inputs.n) }}", "hello and 3"),
        ("{{ inputs.text.upper().split('L') }}", ["HE", "", "O"]),
        ("{{ inputs.text | replace('l', 'L') }}", "heLLo"),
        ("{{ inputs.items | join(', ') }}", "1, 2"),
        ("{{ inputs.items + [3] }}", [1, 2, 3]),
        ("{{ inputs.text ~ '!' }}", "hello!"),
        ("{% for i in inputs.items %}{{ loop.index }}:{{ i }} {% endfor %}", "1:1 2:2 "),
        ("{% set ns = namespace(n=0) %}{% for i in range(5) %}{% set ns.n = ns.n + i %}"
         "{% endfor %}{{ ns.n }}", "10"),
        ("{{ dict(a=1) }}", {"a": 1}),
        ("{{ 'x' | center(9) }}", "    x    "),
        ("{{ '%5d' % 3 }}", "    3"),
    ],
)  # fmt: skip
def test_ordinary_templates_still_work(
    engine: TemplateEngine, template: str, expected: object
) -> None:
    """The guards cost nothing to normal use: arithmetic, methods, filters, loops."""
    assert render(engine, template) == expected


def test_limits_may_only_be_lowered_per_flow() -> None:
    """A flow asking for more than the engine's (platform) cap gets the platform cap."""
    engine = TemplateEngine(max_rendered_chars=100, max_render_ms=1000)
    template = "{% for i in range(60) %}xx{% endfor %}"
    with pytest.raises(TemplateError, match="longer than 100"):
        engine.compile(template, limits=RenderLimits(max_chars=10_000, max_ms=1000)).render(SCOPE)


def test_user_data_that_looks_like_a_template_is_never_rendered(engine: TemplateEngine) -> None:
    """A value holding '{{ 7*7 }}' or a sandbox escape is printed literally."""
    scope = {**SCOPE, "inputs": {"text": "{{ 7*7 }} {{ ''.__class__ }} {% for %}"}}
    for template in ("{{ inputs.text }}", "said: {{ inputs.text }}", "{{ inputs.text | upper }}"):
        value = engine.compile(template).render(scope)
        assert "{{ 7*7 }}" in str(value) or "{{ 7*7 }}".upper() in str(value)


def test_jinja_loop_and_globals_are_not_mistaken_for_flow_variables(project: Project) -> None:
    """`loop`, `range` and `namespace` in a flow template pass the load-time reference
    check; unknown names still fail it."""
    project.flow(
        "f",
        """
        id: f
        inputs: {type: object, properties: {items: {type: array}}}
        steps:
          - id: a
            type: tool
            tool: echo
            input:
              text: "{% for i in range(2) %}{{ loop.index }}{% endfor %}"
        """,
    )
    wb = project.open()
    assert wb.run("demo/f").output == {"text": "12"}
    wb.close()


def test_a_runaway_template_in_a_flow_fails_the_step_not_the_process(project: Project) -> None:
    """A template that loops too long ends its run as failed with the reason."""
    (project.root / "configs" / "policy.yaml").write_text(
        "policy: {max_render_ms: 50}\n", encoding="utf-8"
    )
    project.flow(
        "f",
        """
        id: f
        steps:
          - id: a
            type: tool
            tool: echo
            input:
              text: "{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}"
        """,
    )
    wb = project.open()
    run = wb.run("demo/f")
    assert run.status == "failed"
    assert "max_render_ms" in (run.error or "")
    wb.close()
