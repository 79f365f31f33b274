"""Flow templates: native values, strict undefined, sandbox."""

from __future__ import annotations

import pytest

from master_sdk.orchestrator.templating import TemplateEngine, TemplateError

SCOPE = {
    "inputs": {"text": "hello", "n": 3, "items": [1, 2]},
    "steps": {"echo": {"output": {"text": "hi", "items": ["a"]}, "status": "completed"}},
    "run": {"id": "r1", "product": "p", "flow": "f"},
}


@pytest.fixture
def engine() -> TemplateEngine:
    return TemplateEngine()


def test_a_single_expression_yields_the_native_value(engine: TemplateEngine) -> None:
    """'{{ x }}' gives the value itself, not its string."""
    assert engine.compile("{{ steps.echo.output }}").render(SCOPE) == {"text": "hi", "items": ["a"]}
    assert engine.compile("{{ inputs.n }}").render(SCOPE) == 3
    assert engine.compile("{{ inputs.n * 2 }}").render(SCOPE) == 6
    assert engine.compile("{{ inputs.items | length }}").render(SCOPE) == 2


def test_mixed_text_renders_a_string(engine: TemplateEngine) -> None:
    """Text around an expression makes a string."""
    assert engine.compile("say {{ inputs.text }}!").render(SCOPE) == "say hello!"


def test_dotted_paths_read_keys_not_methods(engine: TemplateEngine) -> None:
    """`.items` on data means the key, never dict.items."""
    assert engine.compile("{{ steps.echo.output.items }}").render(SCOPE) == ["a"]


def test_nested_structures_compile_each_leaf(engine: TemplateEngine) -> None:
    """Dicts and lists of templates render recursively; constants stay as they are."""
    compiled = engine.compile({"a": ["{{ inputs.n }}", "x"], "b": {"c": "{{ run.id }}"}, "d": 1})
    assert compiled.render(SCOPE) == {"a": [3, "x"], "b": {"c": "r1"}, "d": 1}
    assert set(compiled.refs) == {("inputs", "n"), ("run", "id")}


@pytest.mark.parametrize(
    "template", ["{{ inputs.missing }}", "{{ inputs.missing | upper }}", "x {{ nope }}"]
)
def test_undefined_is_an_error_not_an_empty_string(engine: TemplateEngine, template: str) -> None:
    """StrictUndefined: a missing variable raises TemplateError."""
    with pytest.raises(TemplateError):
        engine.compile(template).render(SCOPE)


def test_refs_are_collected_for_load_time_checks(engine: TemplateEngine) -> None:
    """Every variable path read by a complex template is known before rendering."""
    compiled = engine.compile(
        "{% for i in inputs.items %}{{ i }}{% endfor %} {{ steps.echo.output.text | upper }}"
    )
    assert set(compiled.refs) == {("inputs", "items"), ("steps", "echo", "output", "text")}


def test_guards_are_boolean_expressions(engine: TemplateEngine) -> None:
    """`when:` guards evaluate to bools; braces are refused."""
    assert engine.compile_guard("inputs.n > 2 and steps.echo.status == 'completed'").render(SCOPE)
    assert engine.compile_guard("false").render(SCOPE) is False
    with pytest.raises(TemplateError, match="without"):
        engine.compile_guard("{{ inputs.n }}")


@pytest.mark.parametrize(
    "payload",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ inputs.text.__class__ }}",
        "{{ (inputs.text | attr('__class__')) }}",
        "{{ 'a{0.__class__}'.format(inputs) }}",
        "{{ cycler.__init__.__globals__ }}",
    ],
)
def test_sandbox_escapes_raise_a_clear_error(engine: TemplateEngine, payload: str) -> None:
    """Known sandbox-escape payloads are refused, never evaluated."""
    with pytest.raises(TemplateError):
        value = engine.compile(payload).render(SCOPE)
        # attribute lookups the sandbox turns into undefined must not leak objects either
        raise TemplateError(f"rendered {value!r}")


def test_rendered_output_is_capped(engine: TemplateEngine) -> None:
    """A template that renders more than the cap fails instead of exhausting memory."""
    small = TemplateEngine(max_rendered_chars=100)
    with pytest.raises(TemplateError, match="longer than 100"):
        small.compile("{% for i in range(1000) %}xx{% endfor %}").render(SCOPE)
