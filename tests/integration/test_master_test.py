"""``master test`` on a product of the user's own, end to end, with real kernels.

A project in ``tmp_path`` with one product (a tool, an approval, an input form, an agent on
the fake model) and the starter notebook ``product_notebook`` writes for it: the notebook
drives the forms in code and asserts on frames. Its outputs are committed with
``master test --update``; then the checks change a prompt and a tool, point the model at a
real provider, and run the notebook twice.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest

import master_sdk as ms
from master_sdk.notebook_tests import (
    cell_text,
    execute_notebook,
    product_notebook,
    write_product_notebook,
)

pytestmark = pytest.mark.slow

COMPONENTS = """
from __future__ import annotations

from pydantic import BaseModel

from master_sdk.authoring import AgentContext, AgentOutput, agent, tool


class Tagged(BaseModel):
    text: str
    label: str


@tool
def tag(text: str) -> Tagged:
    return Tagged(text=text, label="short" if len(text) < 40 else "long")


class Summary(AgentOutput):
    summary: str


@agent(model="default")
def summarizer(ctx: AgentContext, text: str, audience: str) -> Summary:
    return Summary(summary=ctx.complete(f"Summarise for {audience}: {text}").text)
"""

FLOW = """
id: triage
inputs:
  type: object
  properties: {text: {type: string, minLength: 1}}
  required: [text]
steps:
  - id: tag
    type: tool
    tool: tag
    input: {text: "{{ inputs.text }}"}
  - id: review
    type: hitl
    prompt: "Summarise this?"
    show: "{{ steps.tag.output }}"
  - id: audience
    type: user_input
    prompt: "Who is it for?"
    schema:
      type: object
      properties: {audience: {type: string, minLength: 1}}
      required: [audience]
  - id: summary
    type: agent
    agent: summarizer
    input: {text: "{{ steps.tag.output.text }}", audience: "{{ steps.audience.output.audience }}"}
output: "{{ steps.summary.output }}"
"""

NOTEBOOK = Path("products/demo/notebooks/triage.ipynb")


def master(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``master ARGS`` in ``root``, as a user types it."""
    return subprocess.run(
        [sys.executable, "-m", "master_sdk.cli", *args],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def make_project(root: Path) -> None:
    product = root / "products" / "demo"
    (product / "flows").mkdir(parents=True)
    (product / "notebooks").mkdir()
    (root / "configs").mkdir()
    (product / "manifest.yaml").write_text("name: demo\nversion: '1.0'\n", encoding="utf-8")
    (product / "components.py").write_text(COMPONENTS, encoding="utf-8")
    (product / "flows" / "triage.yaml").write_text(FLOW.lstrip(), encoding="utf-8")
    nb = product_notebook(
        "demo",
        "triage",
        inputs={"text": "The printer on floor 3 is on fire"},
        answers={"audience": {"audience": "facilities"}},
    )
    nbformat.write(nb, root / NOTEBOOK)


@pytest.fixture(scope="module")
def committed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project with the notebook's outputs committed by ``master test --update``, and
    a user store in ``storage/`` holding one run of the user's own."""
    root = tmp_path_factory.mktemp("committed") / "proj"
    make_project(root)
    with ms.Workbench.open(root) as wb:
        wb.run("demo/triage", inputs={"text": "a run of the user's own"})
    done = master(root, "test", "--update")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "(outputs updated)" in done.stdout
    return root


@pytest.fixture
def project(committed: Path, tmp_path: Path) -> Path:
    """A copy of the committed project to change."""
    root = tmp_path / "proj"
    shutil.copytree(committed, root)
    return root


def test_unchanged_notebook_passes_and_leaves_the_user_store_untouched(project: Path) -> None:
    """``master test`` exits 0 on an unchanged product, and ``storage/`` keeps its bytes and
    mtime: the kernel ran on a throwaway store."""
    store = project / "storage" / "master.sqlite3"
    before = (store.read_bytes(), store.stat().st_mtime_ns)
    done = master(project, "test")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"ok    {NOTEBOOK}" in done.stdout and "1 passed, 0 failed" in done.stdout
    assert (store.read_bytes(), store.stat().st_mtime_ns) == before
    assert sorted(p.name for p in store.parent.iterdir()) == ["master.sqlite3"]


def test_update_twice_does_not_rewrite_an_unchanged_notebook(project: Path) -> None:
    """A second ``--update`` with nothing changed leaves the file's bytes as they were: no
    churn of widget model ids, execution counts or metadata."""
    path = project / NOTEBOOK
    before = path.read_bytes()
    done = master(project, "test", "--update")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "(outputs updated)" not in done.stdout
    assert path.read_bytes() == before


def test_a_changed_prompt_and_tool_fail_with_a_readable_diff_until_updated(
    project: Path,
) -> None:
    """Changing the agent's prompt and the tool's label makes ``master test`` exit 1 naming
    the cells (index and first line) with an expected/got diff as text; ``--update`` then
    makes it pass again."""
    components = project / "products" / "demo" / "components.py"
    text = components.read_text(encoding="utf-8")
    text = text.replace("Summarise for {audience}", "Summarise briefly for {audience}")
    text = text.replace("Tagged(text=text,", "Tagged(text=text.upper(),")
    components.write_text(text, encoding="utf-8")

    failed = master(project, "test")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    out = failed.stdout
    assert f"FAIL  {NOTEBOOK}" in out and "0 passed, 1 failed" in out
    assert "cell 2 · ANSWERS = {'audience': {'audience': 'facilities'}}" in out
    assert "--- expected" in out and "+++ got" in out
    assert "-{'summary': '[fake] Summarise for facilities:" in out
    assert "+{'summary': '[fake] Summarise briefly for facilities: THE PRINTER" in out
    assert '"widget-view' not in out and "model_id" not in out  # text, not JSON

    assert master(project, "test", "--update").returncode == 0
    again = master(project, "test")
    assert again.returncode == 0, again.stdout


def test_a_network_provider_is_refused_and_the_step_named(project: Path) -> None:
    """A notebook whose flow reaches a real provider fails: the call is refused before it
    leaves the machine, and the report names the provider, the URL and the step."""
    (project / "configs" / "models.yaml").write_text(
        textwrap.dedent(
            """
            models:
              default: {provider: openai, model: gpt-4o-mini,
                        base_url: "https://api.openai.com/v1", api_key_env: DEMO_KEY}
            """
        ),
        encoding="utf-8",
    )
    env = {**os.environ, "DEMO_KEY": "sk-test-not-a-real-key"}
    done = subprocess.run(
        [sys.executable, "-m", "master_sdk.cli", "test"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env=env,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "model calls\n    refused" in done.stdout
    assert "openai -> https://api.openai.com/v1" in done.stdout
    assert "in step 'summary' of demo/triage" in done.stdout


def test_two_executions_show_byte_identical_text(committed: Path) -> None:
    """In deterministic mode the same notebook executed twice shows the same text in every
    cell, without any sanitising: run ids, timestamps and step durations included."""
    first = execute_notebook(committed / NOTEBOOK)
    second = execute_notebook(committed / NOTEBOOK)
    assert first.error is None and second.error is None
    texts = [[cell_text(c.get("outputs", [])) for c in r.notebook.cells] for r in (first, second)]
    assert texts[0] == texts[1]
    assert any("run " in t and "ms" in t for t in texts[0])  # ids and durations are shown


def test_pytest_master_notebooks_runs_the_same_check(project: Path) -> None:
    """``pytest --master-notebooks`` in the project collects the notebook as one test that
    passes, and fails with the same report once a prompt changed."""
    args = [sys.executable, "-m", "pytest", "--master-notebooks", "-p", "no:cacheprovider"]
    args += ["-q", str(NOTEBOOK)]
    passed = subprocess.run(args, cwd=project, capture_output=True, text=True, check=False)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "1 passed" in passed.stdout

    components = project / "products" / "demo" / "components.py"
    text = components.read_text(encoding="utf-8")
    components.write_text(text.replace("Summarise for", "Condense for"), encoding="utf-8")
    failed = subprocess.run(args, cwd=project, capture_output=True, text=True, check=False)
    assert failed.returncode == 1
    assert "cell 2 · ANSWERS" in failed.stdout and "+{'summary': '[fake] Condense" in failed.stdout


def test_master_notebooks_does_not_collect_our_notebooks_twice() -> None:
    """In this repository (where nbval is on by default) ``--master-notebooks`` collects each
    notebook once, as one master_sdk test, and nbval stays off."""
    repo = Path(__file__).resolve().parents[2]
    args = ["--master-notebooks", "--collect-only", "-q", "-p", "no:cacheprovider", "notebooks"]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=False,
    )
    items = [line for line in done.stdout.splitlines() if "::" in line]
    assert len(items) == len(list((repo / "notebooks").glob("*.ipynb")))
    assert all(line.endswith(".ipynb") for line in items)  # no nbval "::Cell N" items


def test_a_failing_assertion_is_reported_and_update_leaves_the_file(project: Path) -> None:
    """A cell whose assertion fails stops the notebook: ``master test`` names the cell and
    shows the traceback's last line; ``--update`` reports the same and writes nothing."""
    path = project / NOTEBOOK
    nb = nbformat.read(path, as_version=4)
    nb.cells[3].source = nb.cells[3].source.replace('"completed", "skipped"', '"skipped"')
    nbformat.write(nb, path)
    before = path.read_bytes()
    for args in (["test"], ["test", "--update"]):
        done = master(project, *args)
        assert done.returncode == 1, done.stdout + done.stderr
        assert "cell 3 · steps = run.steps()" in done.stdout and "raised:" in done.stdout
        assert "AssertionError" in done.stdout
        assert path.read_bytes() == before


def test_a_missing_path_is_an_error_naming_it(tmp_path: Path) -> None:
    """``master test nowhere.ipynb`` exits 1 with one line naming the path."""
    done = master(tmp_path, "test", "nowhere.ipynb")
    assert done.returncode == 1
    assert "error: nowhere.ipynb: no such notebook or folder" in done.stderr


def test_a_written_product_notebook_passes_at_once(tmp_path: Path) -> None:
    """``write_product_notebook`` (what a product scaffold calls) writes the starter notebook
    with its outputs executed, so ``master test`` passes straight away."""
    root = tmp_path / "proj"
    make_project(root)
    (root / NOTEBOOK).unlink()
    path = write_product_notebook(
        root, "demo", "triage", inputs={"text": "hi"}, answers={"audience": {"audience": "ops"}}
    )
    assert path == root / NOTEBOOK
    done = master(root, "test")
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_scaffolded_product_passes_master_test_at_once(tmp_path: Path) -> None:
    """``master new product`` writes a starter notebook that ``master test`` passes at once
    (it runs cleanly; nothing is recorded yet, and the report says how to record it); after
    ``--update`` its outputs are compared like any other notebook's."""
    root = tmp_path / "proj"
    (root / "configs").mkdir(parents=True)
    assert master(root, "new", "product", "notes").returncode == 0
    first = master(root, "test")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "no outputs recorded yet: master test --update products/notes/notebooks" in first.stdout
    assert master(root, "test", "--update").returncode == 0
    again = master(root, "test")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "ok    products/notes/notebooks/draft.ipynb" in again.stdout
    assert "no outputs recorded" not in again.stdout
