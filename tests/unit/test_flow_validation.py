"""Broken flows fail at load time with an error naming file, flow, step and field."""

from __future__ import annotations

import pytest

import master_sdk as ms
from tests.conftest import Project

GOOD_STEPS = """
steps:
  - id: echo
    type: tool
    tool: echo
    input: {text: "{{ inputs.text }}"}
"""

BROKEN: list[tuple[str, str, str | None, str | None, str]] = [
    # (case, flow body after `id: f`, step, field, message fragment)
    (
        "unknown tool",
        """
inputs: {type: object, properties: {text: {type: string}}}
steps:
  - {id: a, type: tool, tool: ech, input: {text: x}}
""",
        "a",
        "tool",
        "unknown tool 'ech'",
    ),
    (
        "unknown agent",
        """
steps:
  - {id: a, type: agent, agent: nobody}
""",
        "a",
        "agent",
        "unknown agent 'nobody'",
    ),
    (
        "unknown step type",
        """
steps:
  - {id: a, type: teleport}
""",
        "a",
        "type",
        "unknown step type",
    ),
    (
        "missing required field",
        """
steps:
  - {id: a, type: hitl}
""",
        "a",
        "prompt",
        "required field is missing",
    ),
    (
        "unknown field on a step",
        """
steps:
  - {id: a, type: hitl, prompt: ok, colour: red}
""",
        "a",
        "colour",
        "unknown field",
    ),
    (
        "duplicate step id",
        """
steps:
  - {id: a, type: hitl, prompt: ok}
  - {id: a, type: hitl, prompt: again}
""",
        "a",
        "id",
        "duplicate step id",
    ),
    (
        "reference to an unknown step",
        """
steps:
  - {id: a, type: tool, tool: echo, input: {text: "{{ steps.nope.output.text }}"}}
""",
        "a",
        "input",
        "no step 'nope'",
    ),
    (
        "reference to a later step",
        """
steps:
  - {id: a, type: tool, tool: echo, input: {text: "{{ steps.b.output.text }}"}}
  - {id: b, type: tool, tool: echo, input: {text: x}}
""",
        "a",
        "input",
        "has not run yet",
    ),
    (
        "unknown template variable",
        """
steps:
  - {id: a, type: tool, tool: echo, input: {text: "{{ secrets.key }}"}}
""",
        "a",
        "input",
        "unknown variable 'secrets'",
    ),
    (
        "unknown flow input",
        """
inputs: {type: object, properties: {text: {type: string}}}
steps:
  - {id: a, type: tool, tool: echo, input: {text: "{{ inputs.txt }}"}}
""",
        "a",
        "input",
        "inputs have no 'txt'",
    ),
    (
        "unknown output field of a tool",
        """
steps:
  - {id: a, type: tool, tool: echo, input: {text: x}}
  - {id: b, type: tool, tool: echo, input: {text: "{{ steps.a.output.txt }}"}}
""",
        "b",
        "input",
        "output has no 'txt'",
    ),
    (
        "unknown tool input field",
        """
steps:
  - {id: a, type: tool, tool: echo, input: {txt: x}}
""",
        "a",
        "input.txt",
        "'echo' has no input 'txt'",
    ),
    (
        "missing tool input field",
        """
steps:
  - {id: a, type: tool, tool: echo, input: {}}
""",
        "a",
        "input.text",
        "'echo' needs input 'text'",
    ),
    (
        "on_reject to an earlier step",
        """
steps:
  - {id: a, type: hitl, prompt: first}
  - {id: b, type: hitl, prompt: second, on_reject: a}
""",
        "b",
        "on_reject",
        "later step",
    ),
    (
        "template syntax error",
        """
steps:
  - {id: a, type: tool, tool: echo, input: {text: "{{ inputs.text | }}"}}
""",
        "a",
        "input",
        "template syntax error",
    ),
    (
        "guard with braces",
        """
steps:
  - {id: a, type: hitl, prompt: ok, when: "{{ inputs.x }}"}
""",
        "a",
        "when",
        "without {{ }} braces",
    ),
    (
        "guard on a later step",
        """
steps:
  - {id: a, type: hitl, prompt: ok, when: "steps.b.output.approved"}
  - {id: b, type: hitl, prompt: ok}
""",
        "a",
        "when",
        "has not run yet",
    ),
    (
        "user_input schema that is not an object",
        """
steps:
  - {id: a, type: user_input, prompt: ok, schema: {type: string}}
""",
        "a",
        "schema.type",
        "must describe an object",
    ),
    (
        "policy that loosens the platform",
        """
policy: {max_steps: 100000}
steps:
  - {id: a, type: hitl, prompt: ok}
""",
        None,
        "policy.max_steps",
        "may only tighten",
    ),
    (
        "no steps",
        """
steps: []
""",
        None,
        "steps",
        "at least 1 item",
    ),
    (
        "duplicate yaml key",
        """
steps:
  - {id: a, type: hitl, prompt: ok, prompt: again}
""",
        None,
        None,
        "duplicate key 'prompt'",
    ),
]


@pytest.mark.parametrize(
    ("case", "body", "step", "field", "fragment"), BROKEN, ids=[b[0] for b in BROKEN]
)
def test_broken_flow_fails_at_load_naming_file_flow_step_and_field(
    project: Project, case: str, body: str, step: str | None, field: str | None, fragment: str
) -> None:
    """Each broken flow raises FlowError with the exact location and a readable reason."""
    path = project.flow("f", "id: f\n" + body)
    wb = project.open()
    with pytest.raises(ms.FlowError) as caught:
        wb.run("demo/f", inputs={"text": "x"})
    error = caught.value
    message = str(error)
    assert str(path) in message
    assert fragment in message, message
    assert error.step == step
    assert error.field == field
    if step:
        assert f"step '{step}'" in message
    assert len(wb.runs()) == 0
    wb.close()


def test_one_broken_product_does_not_stop_the_others(project: Project) -> None:
    """Workbench.open() succeeds; validate() lists the broken one; others still run."""
    project.flow("ok", "id: ok\n" + GOOD_STEPS)
    broken = project.root / "products" / "broken"
    (broken / "flows").mkdir(parents=True)
    (broken / "manifest.yaml").write_text("name: broken\ncomponents: missing.py\n")
    wb = project.open()
    assert wb.products() == ["broken", "demo"]
    problems = wb.validate()
    assert len(problems) == 1
    assert "missing.py" in str(problems[0])
    run = wb.run("demo/ok", inputs={"text": "hi"})
    assert run.status == "completed"
    with pytest.raises(ms.FlowError, match=r"missing\.py"):
        wb.run("broken/x")
    wb.close()


def test_components_path_escaping_the_product_is_refused(project: Project, tmp_path) -> None:
    """A manifest pointing outside its folder (.., absolute, symlink) is refused."""
    outside = tmp_path / "evil.py"
    outside.write_text("raise SystemExit('imported!')\n")
    manifest = project.root / "products" / "demo" / "manifest.yaml"
    for target in ("../../../evil.py", str(outside)):
        manifest.write_text(f"name: demo\ncomponents: {target}\n")
        wb = project.open()
        with pytest.raises(ms.FlowError, match="must be relative to the product folder"):
            wb.run("demo/x")
        wb.close()
    (project.root / "products" / "demo" / "link.py").symlink_to(outside)
    manifest.write_text("name: demo\ncomponents: link.py\n")
    wb = project.open()
    with pytest.raises(ms.FlowError, match="leaves the product folder"):
        wb.run("demo/x")
    wb.close()


def test_yaml_aliases_are_refused(project: Project) -> None:
    """An alias bomb fails at once with a clear message."""
    project.flow(
        "f",
        """
        id: f
        a: &a ["x", "x", "x", "x"]
        b: &b [*a, *a, *a, *a]
        steps: [{id: s, type: hitl, prompt: ok}]
        """,
    )
    wb = project.open()
    with pytest.raises(ms.FlowError, match="aliases"):
        wb.run("demo/f")
    wb.close()


def test_flow_id_must_match_its_file_name(project: Project) -> None:
    """A flow file whose id differs from its name says how to fix it."""
    project.flow("f", "id: g\n" + GOOD_STEPS)
    wb = project.open()
    with pytest.raises(ms.FlowError, match=r"rename the file to g\.yaml"):
        wb.run("demo/f", inputs={"text": "x"})
    wb.close()


def test_unknown_flow_and_product_name_what_exists(project: Project) -> None:
    """Asking for something missing lists what is there."""
    project.flow("ok", "id: ok\n" + GOOD_STEPS)
    wb = project.open()
    with pytest.raises(ms.NotFound, match=r"flows: ok"):
        wb.run("demo/nope")
    with pytest.raises(ms.NotFound, match=r"products: demo"):
        wb.run("nope/ok")
    with pytest.raises(ms.NotFound, match="product/flow"):
        wb.run("justaname")
    wb.close()


def test_a_mistyped_key_names_the_closest_valid_key(project: Project) -> None:
    """`promt:` is reported as an unknown field with a suggestion, as one problem."""
    project.flow("f", "id: f\nsteps:\n  - {id: ask, type: hitl, promt: ok}\n")
    wb = project.open()
    (problem,) = wb.validate()
    assert "step 'ask'" in str(problem) and "field 'promt'" in str(problem)
    assert "did you mean 'prompt'?" in str(problem)
    assert "more problem" not in str(problem)
    wb.close()


def test_every_problem_of_a_flow_file_is_listed(project: Project) -> None:
    """Several mistakes are listed one per line, never summarised as 'N more'."""
    project.flow(
        "f",
        "id: f\ndescripton: x\nsteps:\n  - {id: ask, type: hitl, promt: ok}\n"
        "  - {id: get, type: user_input, prompt: p, shema: {}}\n",
    )
    wb = project.open()
    (problem,) = wb.validate()
    text = str(problem)
    assert "3 problems" in text
    assert "field 'descripton': unknown field; did you mean 'description'?" in text
    assert "step 'ask', field 'promt'" in text
    assert "step 'get', field 'shema': unknown field; did you mean 'schema'?" in text
    wb.close()


def test_a_mistyped_manifest_key_is_named_with_a_suggestion(project: Project) -> None:
    """Manifest keys get the same suggestions as flow keys."""
    (project.root / "products/demo/manifest.yaml").write_text(
        "name: demo\nversoin: '1'\n", encoding="utf-8"
    )
    wb = project.open()
    (problem,) = wb.validate()
    assert "field 'versoin': unknown field; did you mean 'version'?" in str(problem)
    wb.close()


@pytest.mark.parametrize(
    ("schema", "field"),
    [
        ("inputs: {type: object, properties: {n: {type: int}}}", "inputs"),
        ("inputs: {type: object, required: text}", "inputs"),
    ],
)
def test_run_refuses_an_invalid_inputs_schema_as_validate_does(
    project: Project, schema: str, field: str
) -> None:
    """A JSON Schema that is not valid stops run() with the same error validate() gives."""
    project.flow("f", f"id: f\n{schema}\nsteps:\n  - {{id: a, type: hitl, prompt: x}}\n")
    wb = project.open()
    (problem,) = wb.validate()
    with pytest.raises(ms.FlowError) as caught:
        wb.run("demo/f", {})
    assert str(caught.value) == str(problem)
    assert f"field '{field}'" in str(problem)
    assert wb.runs().empty
    wb.close()


def test_run_refuses_a_user_input_schema_with_an_unknown_type(project: Project) -> None:
    """`type: int` in a user_input schema is refused before the run starts, not at the form."""
    project.flow(
        "f",
        "id: f\nsteps:\n  - id: ask\n    type: user_input\n    prompt: how many?\n"
        "    schema: {type: object, properties: {n: {type: int}}}\n",
    )
    wb = project.open()
    with pytest.raises(ms.FlowError, match=r"step 'ask', field 'schema'.*'int' is not valid"):
        wb.run("demo/f", {})
    assert wb.runs().empty
    wb.close()
