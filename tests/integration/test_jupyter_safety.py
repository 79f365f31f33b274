"""The sync API inside a running event loop: ``asyncio.run(...)``, a real Jupyter kernel
and an ipywidgets click handler, each running a flow whose agent calls the OpenAI provider
against a loopback server.

Jupyter executes every cell inside its own running asyncio loop, where library code that
calls ``asyncio.run`` (or waits on a loop of its own) fails. These tests run the whole
golden path there: start, model call, approve, submit, trace, budget.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

import master_sdk as ms
from tests.conftest import REPO
from tests.support.openai_server import FakeOpenAIServer

COMPONENTS = """
from master_sdk.authoring import AgentContext, AgentOutput, agent


class Summary(AgentOutput):
    summary: str


@agent(model="gpt")
def summarize(ctx: AgentContext, text: str) -> Summary:
    return Summary(summary=ctx.complete(f"Summarise: {text}").text)
"""

FLOW = """
id: brief
steps:
  - {id: draft, type: agent, agent: summarize, input: {text: "{{ inputs.text }}"}}
  - {id: review, type: hitl, prompt: "Send it?", show: "{{ steps.draft.output }}"}
  - id: audience
    type: user_input
    prompt: "For whom?"
    schema: {type: object, properties: {who: {type: string}}, required: [who]}
  - id: final
    type: agent
    agent: summarize
    input: {text: "{{ steps.draft.output.summary }} for {{ steps.audience.output.who }}"}
output: "{{ steps.final.output.summary }}"
"""


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as srv:
        yield srv


@pytest.fixture
def root(tmp_path: Path, server: FakeOpenAIServer) -> Path:
    """A project whose agent uses ``provider: openai`` at the loopback server."""
    server.reset()
    product = tmp_path / "proj" / "products" / "desk"
    (product / "flows").mkdir(parents=True)
    (product / "manifest.yaml").write_text("name: desk\nversion: '1.0'\n", encoding="utf-8")
    (product / "components.py").write_text(COMPONENTS, encoding="utf-8")
    (product / "flows" / "brief.yaml").write_text(FLOW, encoding="utf-8")
    configs = tmp_path / "proj" / "configs"
    configs.mkdir()
    (configs / "models.yaml").write_text(
        f'models:\n  gpt: {{provider: openai, model: gpt-4o-mini, base_url: "{server.base_url}", '
        "max_tokens: 64}\n",
        encoding="utf-8",
    )
    return tmp_path / "proj"


def golden_path(wb: ms.Workbench) -> dict[str, Any]:
    """Every sync call a notebook makes on the way through the flow."""
    run = wb.run("desk/brief", inputs={"text": "the memo"})
    first = run.status
    run.approve(comment="ok", by="ana")
    run.submit({"who": "the board"}, by="ana")
    trace = run.trace()
    return {
        "first": first,
        "status": run.status,
        "output": run.output,
        "model_calls": int((trace["event"] == "model_called").sum()),
        "tokens": float(run.budget().set_index("budget").loc["total_tokens", "used"]),
        "runs": len(wb.runs()),
    }


def test_the_sync_api_runs_a_flow_inside_asyncio_run(root: Path, server: FakeOpenAIServer) -> None:
    """Inside ``asyncio.run(main())`` — a running loop, as in Jupyter — the sync API runs
    the flow with real model calls to completion."""

    async def main() -> dict[str, Any]:
        asyncio.get_running_loop()  # the premise: a loop is running here
        with ms.Workbench.open(root) as wb:
            return golden_path(wb)

    result = asyncio.run(main())

    assert result["first"] == "waiting_approval"
    assert result["status"] == "completed"
    assert result["output"] == "echo: Summarise: echo: Summarise: the memo for the board"
    assert result["model_calls"] == 2
    assert result["tokens"] > 0
    assert len(server.completions) == 2


def code_cell(source: str) -> Any:
    return nbformat.v4.new_code_cell(source)


def test_a_flow_runs_in_a_jupyter_kernel_cell_and_in_a_widget_click_handler(
    root: Path, server: FakeOpenAIServer, tmp_path: Path
) -> None:
    """In a real kernel (nbclient), a cell runs the flow against the loopback server, and
    so does an ipywidgets Button's click handler; both complete, and the kernel's cells
    are confirmed to run inside a running event loop."""
    setup = f"""
        import asyncio, json, sys
        sys.path.insert(0, {str(REPO)!r})  # this checkout's master_sdk
        import master_sdk as ms

        asyncio.get_running_loop()  # raises unless the cell runs inside a running loop
        wb = ms.Workbench.open({str(root)!r})

        def golden_path():
            run = wb.run("desk/brief", inputs={{"text": "the memo"}})
            run.approve(comment="ok", by="ana")
            run.submit({{"who": "the board"}}, by="ana")
            calls = int((run.trace()["event"] == "model_called").sum())
            return {{"status": run.status, "output": run.output, "model_calls": calls}}
    """
    in_cell = """
        print(json.dumps(golden_path()))
    """
    in_handler = """
        import ipywidgets as widgets

        results, errors = [], []

        def on_click(button):
            try:
                results.append(golden_path())
            except Exception as exc:  # a handler's exception would only be logged
                errors.append(repr(exc))

        button = widgets.Button(description="Run")
        button.on_click(on_click)
        button.click()
        assert not errors, errors
        print(json.dumps(results))
    """
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [code_cell(_dedent(c)) for c in (setup, in_cell, in_handler)]

    NotebookClient(
        notebook,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    ).execute()

    printed = [_stdout(cell) for cell in notebook.cells]
    expected = {
        "status": "completed",
        "output": "echo: Summarise: echo: Summarise: the memo for the board",
        "model_calls": 2,
    }
    assert json.loads(printed[1]) == expected
    assert json.loads(printed[2]) == [expected]
    assert len(server.completions) == 4


def _dedent(source: str) -> str:
    import textwrap

    return textwrap.dedent(source).strip()


def _stdout(cell: Any) -> str:
    return "".join(
        out.get("text", "") for out in cell.get("outputs", []) if out.get("name") == "stdout"
    )
