"""Templates are bounded in memory and time, when a flow loads and when it renders.

Each payload of the corpus is compiled (as ``master validate`` does when a flow loads) and
rendered (as a step does) in a forked child limited to 1.5 GiB more address space and 20 s of
CPU: every payload must end within 2 s of CPU time (the machine is shared: wall time is only
checked loosely), either with a value or with a ``TemplateError``, and without growing the
child by more than 512 MB. A regression fails here instead of eating the
machine.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from master_sdk.orchestrator.templating import TemplateEngine, TemplateError
from tests.adversarial.bounded import run_bounded
from tests.conftest import Project

SCOPE = {
    "inputs": {"text": "hello world", "n": 3, "items": ["a", "b", "c"]},
    "steps": {"echo": {"output": {"text": "echoed"}}},
}

BIG = 10**9
PAYLOADS = [
    # from the trial: folded at load, or slow at run time
    "{{ [1]|batch(1000000000, 0)|list|length }}",
    "{{ [1]|batch(50000000, 0)|list|length }}",
    "{{ range(1)|slice(50000000, 0)|list|length }}",
    "{{ inputs.items|batch(50000000, 'x')|list }}",
    "{{ inputs.items|slice(50000000)|list }}",
    "{{ range(1)|slice(50000000)|list|length }}",
    # multiplication, addition, concatenation, powers
    "{{ 'x' * 1000000000 }}",
    "{{ [1] * 1000000000 }}",
    "{{ ('x' * 999999) * 2 }}",
    "{{ ('x' * 999999) + ('y' * 999999) }}",
    "{{ ('x' * 999999) ~ ('y' * 999999) }}",
    "{{ [[1] * 999999] * 999999|sum(start=[]) }}",
    "{{ 9 ** 9999999 }}",
    "{{ 2 ** 2 ** 2 ** 2 ** 2 }}",
    "{{ 10.0 ** 400 }}",
    "{{ (('x' * 999999) * 1)|length * (('y' * 999999)|length) }}",
    # filters whose output outgrows their input
    "{{ 'x'|center(1000000000) }}",
    "{{ ('a\\n' * 400000)|indent(1000) }}",
    "{{ 'a'|indent('x' * 1000000000) }}",
    "{{ ('a b ' * 100000)|wordwrap(1, wrapstring='x' * 10000) }}",
    "{{ range(100000)|join('x' * 1000) }}",
    "{{ ('a' * 1000)|replace('a', 'b' * 100000) }}",
    "{{ ('a' * 1000)|replace('', 'b' * 100000) }}",
    "{{ {'a': [[[[[1]]]]]}|tojson(indent=1000000) }}",
    "{{ (range(1000)|list)|tojson(indent='x' * 100000) }}",
    "{{ [[[[[[[[[[1]]]]]]]]]] * 99999|pprint }}",
    "{{ ('see http://a.io ' * 50000)|urlize(target='t' * 100000) }}",
    "{{ ([[1]] * 10000)|sum(start=[])|length }}",
    "{{ ('x' * 999)|truncate(5, end='y' * 1000000000) }}",
    "{{ (['ab'] * 1000)|map('center', 999999)|list|length }}",
    "{{ (['a'] * 100000)|map('indent', 99999, true)|list|length }}",
    "{{ range(100000)|map('string')|map('center', 500)|join|length }}",
    "{{ range(100000)|batch(1)|list|length }}",
    "{{ (range(100000)|list)|unique|list|length }}",
    "{{ dict.fromkeys(range(100000), 'x' * 999999)|dictsort|length }}",
    "{{ dict.fromkeys(range(100000), 'x' * 999999)|tojson }}",
    "{{ '%s' % ('x' * 999999) * 3 }}",
    "{{ '%999999999s' % 'x' }}",
    "{{ '{:>999999999}'.format('x') }}",
    "{{ '{0:{1}}'.format('x', 999999999) }}",
    "{{ 'x'|format('%999999999s') }}",
    "{{ '%s'|format('x' * 999999) ~ ('y' * 999999) }}",
    # string methods: growing ones are refused, the rest bounded by their input
    "{{ 'x'.ljust(1000000000) }}",
    "{{ 'x'.zfill(1000000000) }}",
    "{{ ('\\t' * 1000).expandtabs(1000000) }}",
    "{{ 'x'.center(1000000000) }}",
    "{{ ','.join(['x' * 999999] * 1000) }}",
    "{{ ('ab' * 400000).replace('a', 'a' * 1000) }}",
    "{{ ('x' * 999).join(['a'] * 100000) }}",
    "{{ ('x' * 999).join(range(100000)|map('string')) }}",
    "{{ range(100000)|map('string')|join('x' * 999) }}",
    "{{ range(100000)|map('string')|map('center', 20)|sum(start='') }}",
    "{{ ('a' * 999999).split('') }}",
    # globals and loops
    "{{ range(1000000000)|list|length }}",
    "{{ range(100000)|list|length }}",
    "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "{% for i in range(100000) %}{{ 'x' * 999 }}{% endfor %}",
    "{% set ns = namespace(s='') %}{% for i in range(100000) %}{% set ns.s = ns.s ~ 'x' * 999 %}"
    "{% endfor %}{{ ns.s|length }}",
    "{% set ns = namespace(l=[]) %}{% for i in range(100000) %}{% set ns.l = ns.l + ['x' * 999] %}"
    "{% endfor %}{{ ns.l|length }}",
    "{% macro m(n) %}{{ m(n) }}{% endmacro %}{{ m(1) }}",
    "{% macro m(n) %}{{ 'x' * 999 }}{{ m(n) }}{{ m(n) }}{% endmacro %}{{ m(1) }}",
    "{% set x %}{% for i in range(100000) %}{{ 'y' * 999 }}{% endfor %}{% endset %}{{ x|length }}",
    "{% filter upper %}{% for i in range(100000) %}{{ 'y' * 999 }}{% endfor %}{% endfilter %}",
    "{{ cycler(*range(100000)).next() }}",
    # escapes stay refused
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ inputs.items|attr('__class__') }}",
    "{{ 'x'.format_map({}) ~ 'x'|attr('format') }}",
    # ordinary templates still work
    "{{ inputs.text|upper }}",
    "{{ inputs.items|join(', ') }}",
    "{{ inputs.items|batch(2, '-')|list }}",
    "{{ inputs.items|slice(2)|list }}",
    "{{ inputs|tojson(indent=2) }}",
    "{{ 'x' * inputs.n }}",
    "{% for i in inputs.items %}{{ loop.index }}={{ i }} {% endfor %}",
]


def _compile_and_render(source: str) -> object:
    engine = TemplateEngine(max_rendered_chars=1_000_000, max_render_ms=1000)
    try:
        compiled = engine.compile(source)  # what loading a flow does
        return compiled.render(SCOPE)  # what a step does
    except TemplateError as exc:
        return f"TemplateError: {exc}"


def test_the_corpus_is_large() -> None:
    """At least fifty adversarial payloads."""
    assert len(PAYLOADS) >= 50


@pytest.mark.parametrize("source", PAYLOADS)
def test_each_payload_ends_quickly_with_bounded_memory(source: str) -> None:
    """Compiling and rendering ends within 2 s of CPU, with a value or a TemplateError, and the
    process grows by less than 512 MB (under a 1.5 GiB address-space limit)."""
    outcome = run_bounded(lambda: _compile_and_render(source))
    assert outcome.kind == "ok", outcome
    assert outcome.seconds <= 2.0, outcome
    assert outcome.wall <= 20.0, outcome
    assert outcome.grew_mb < 512, outcome


@pytest.mark.parametrize(
    "source",
    [
        "{{ [1]|batch(1000000000, 0)|list|length }}",
        "{{ range(1)|slice(50000000, 0)|list|length }}",
        "{{ 'x'|center(1000000000)|length }}",
        "{{ ('x' * 1000000000)|length }}",
    ],
)
def test_compiling_never_evaluates_the_template(source: str) -> None:
    """Loading a flow only compiles its templates (no constant folding): compiling the
    costliest payloads takes no time and no memory, and only rendering refuses them."""
    engine = TemplateEngine()
    compiled = engine.compile(source)
    with pytest.raises(TemplateError):
        compiled.render(SCOPE)


def test_master_validate_stays_bounded_on_a_hostile_flow(project: Project, tmp_path: Path) -> None:
    """`master validate` on a flow whose template would build a billion items loads it in a
    bounded process and reports it valid: the template is only compiled."""
    import master_sdk as ms

    project.flow(
        "bomb",
        """
        id: bomb
        steps:
          - id: e
            type: tool
            tool: echo
            input: {text: "{{ [1]|batch(1000000000, 0)|list|length }}"}
        """,
    )

    def validate() -> object:
        with ms.Workbench.open(project.root, store=tmp_path / "s.sqlite3") as wb:
            problems = wb.validate()
            run = wb.run("demo/bomb")
            return [str(p) for p in problems], run.status, run.error

    outcome = run_bounded(validate)
    assert outcome.kind == "ok", outcome
    assert "[], 'failed'" in outcome.detail and "batch" in outcome.detail, outcome
    assert outcome.grew_mb < 512, outcome


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ inputs.text|upper }}", "HELLO WORLD"),
        ("{{ inputs.items|join(', ') }}", "a, b, c"),
        ("{{ inputs.items|batch(2, '-')|list }}", [["a", "b"], ["c", "-"]]),
        ("{{ inputs.items|slice(2)|list }}", [["a", "b"], ["c"]]),
        ("{{ 'x' * inputs.n }}", "xxx"),
        ("{{ ('a b c')|wordwrap(3) }}", "a b\nc"),
        ("{{ 'ab'|center(6) }}", "  ab  "),
        ("{{ [[1], [2]]|sum(start=[]) }}", [1, 2]),
        ("{{ {'a': 1}|tojson(indent=2) }}", '{\n  "a": 1\n}'),
        ("{% for i in inputs.items %}{{ loop.index }}{% endfor %}", "123"),
    ],
)
def test_ordinary_templates_keep_working(source: str, expected: object) -> None:
    """The bounds refuse only what is too large: everyday filters give their usual values."""
    assert TemplateEngine().compile(source).render(SCOPE) == expected


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ 'x'.ljust(1000000000) }}",
        "{{ 'x'|center(1000000000) }}",
        "{{ [1]|batch(50000000, 0)|list|length }}",
        "{{ range(1)|slice(50000000, 0)|list|length }}",
        "{{ range(100000)|join('x' * 1000) }}",
    ],
)
def test_hostile_templates_fail_with_a_template_error(source: str) -> None:
    """Escapes and oversized builds are refused with a TemplateError, before they allocate."""
    with pytest.raises(TemplateError):
        TemplateEngine().compile(source).render(SCOPE)
