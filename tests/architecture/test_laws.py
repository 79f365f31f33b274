"""The architecture laws hold on this repository, and each check catches what it should.

The first tests run every check on the real tree. The rest plant violations, in tiny
synthetic trees and in a copy of the real ``master_sdk/`` tree, and prove each check
reports them with the right law, file, line and import or call, and stays quiet about
the places its law allows.
"""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Mapping
from pathlib import Path

import pytest

from .laws import (
    CHECKS,
    LAWS,
    Sources,
    Violation,
    check_all,
    check_law1,
    check_law2,
    check_law3,
    check_law4,
    check_law5,
    check_law6,
    check_law7,
    check_law8,
    check_law9,
    check_loaded,
    check_parse,
    load_sources,
    scanned_files,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
FN_RULE = "only master_sdk/tools/executor.py and master_sdk/orchestrator/agents.py call .fn"
TOOL_RULE = "a flow step runs it through master_sdk/tools/executor.py"
STEP_RULE = "only the orchestrator runs steps"


def report(violations: list[Violation]) -> str:
    """One violation per line, for assertion messages."""
    return "\n" + "\n".join(str(v) for v in violations)


def write(root: Path, files: Mapping[str, str]) -> None:
    """Write each (dedented) source under ``root``."""
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))


def at(root: Path, law: int, rel: str, needle: str, detail: str) -> Violation:
    """The violation expected on the line of ``rel`` that is ``needle`` (stripped), or else
    on the first line that contains it."""
    lines = [text.strip() for text in (root / rel).read_text().splitlines()]
    line = lines.index(needle) + 1 if needle in lines else 0
    line = line or next(n for n, text in enumerate(lines, 1) if needle in text)
    return Violation(law, rel, line, detail)


# --- the real repository ------------------------------------------------------------------


def test_checks_read_the_real_package() -> None:
    """The checks scan this repository's master_sdk package, so a pass is not vacuous."""
    files = scanned_files(REPO_ROOT)
    assert "master_sdk/__init__.py" in files
    assert "master_sdk/errors.py" in files


@pytest.fixture(scope="module")
def repository() -> Sources:
    """This repository's master_sdk/ and products/, parsed once for all the laws."""
    return load_sources(REPO_ROOT)


@pytest.mark.parametrize("law", sorted(LAWS))
def test_repository_obeys_law(repository: Sources, law: int) -> None:
    """No file of master_sdk/ or products/ breaks the law (every breach is listed)."""
    violations = check_loaded(law, repository)
    assert not violations, report(violations)


# --- the library itself -------------------------------------------------------------------


def test_violation_reads_law_file_line_and_detail() -> None:
    """A violation prints as its law and title, then file:line and what was found."""
    violation = Violation(5, "master_sdk/workbench.py", 12, "imports sqlite3")
    assert str(violation) == (
        "law 5 (persistence only in master_sdk/memory/): master_sdk/workbench.py:12 imports sqlite3"
    )


def test_every_law_has_a_check() -> None:
    """Laws 1-9 of DESIGN.md §3 (and the parse check, 0) each have a check."""
    assert set(CHECKS) == set(LAWS) == set(range(10))


def test_missing_directories_have_nothing_to_scan(tmp_path: Path) -> None:
    """A root without master_sdk/ or products/ yields no violations and no error."""
    assert {law: check(tmp_path) for law, check in CHECKS.items()} == {law: [] for law in CHECKS}


def test_caches_and_hidden_folders_are_not_scanned(tmp_path: Path) -> None:
    """Notebook checkpoints and bytecode folders are not part of the tree the laws cover."""
    write(
        tmp_path,
        {
            "products/p/.ipynb_checkpoints/components-checkpoint.py": "import sqlite3\n",
            "master_sdk/__pycache__/stray.py": "import sqlite3\n",
            "master_sdk/workbench.py": "import sqlite3\n",
        },
    )
    assert scanned_files(tmp_path) == ["master_sdk/workbench.py"]
    assert check_law5(tmp_path) == [Violation(5, "master_sdk/workbench.py", 1, "imports sqlite3")]


def test_unparsable_file_is_reported_and_the_rest_still_checked(tmp_path: Path) -> None:
    """A file with a syntax error is a law-0 violation; other files are still checked."""
    write(tmp_path, {"master_sdk/broken.py": "def broken(:\n", "master_sdk/cli.py": "import dbm\n"})
    [broken] = check_parse(tmp_path)
    assert (broken.law, broken.file, broken.line) == (0, "master_sdk/broken.py", 1)
    assert broken.detail.startswith("cannot be parsed: ")
    assert check_law5(tmp_path) == [Violation(5, "master_sdk/cli.py", 1, "imports dbm")]


GOLDEN_COMPONENTS = """
from pydantic import BaseModel
from master_sdk.authoring import AgentContext, AgentOutput, agent, tool

class Echoed(BaseModel):
    text: str

@tool
def echo(text: str) -> Echoed:
    return Echoed(text=text)

class Summary(AgentOutput):
    summary: str

@agent(model="default")
def summarizer(ctx: AgentContext, text: str, audience: str) -> Summary:
    reply = ctx.complete(f"Summarise for {audience}: {text}")
    return Summary(summary=reply.text)
"""


def test_design_example_product_obeys_every_law(tmp_path: Path) -> None:
    """The authoring example of DESIGN.md §4, as a product, raises no violation."""
    write(tmp_path, {"products/hello_world/components.py": GOLDEN_COMPONENTS})
    assert check_all(tmp_path) == []


# --- law 1 ----------------------------------------------------------------------------------


def test_law1_flags_environment_reads_outside_the_config_loader(tmp_path: Path) -> None:
    """os.environ, os.getenv, os.putenv, their from-imports and dotenv are flagged everywhere
    but master_sdk/config/loader.py, through aliases, getattr and lazy imports."""
    write(
        tmp_path,
        {
            "master_sdk/config/loader.py": """
                import os
                from dotenv import load_dotenv

                def read():
                    load_dotenv()
                    return os.environ.get("A"), os.getenv("B")
            """,
            "master_sdk/workbench.py": """
                import os
                import os as system

                def home():
                    return os.environ["HOME"]

                def key():
                    return system.getenv("KEY")

                def cwd():
                    return os.path.join(os.getcwd(), "x")

                def sneaky():
                    return getattr(os, "environ")
            """,
            "master_sdk/cli.py": """
                def main():
                    from os import environ
                    return environ
            """,
            "master_sdk/tracing/setup.py": "from os import getenv as read_env\n",
            "products/p/components.py": """
                import os

                from dotenv import dotenv_values

                os.putenv("A", "b")
            """,
        },
    )
    wb, comp = "master_sdk/workbench.py", "products/p/components.py"
    expected = [
        at(tmp_path, 1, wb, "os.environ[", "uses os.environ"),
        at(tmp_path, 1, wb, "system.getenv", "uses os.getenv (written `system.getenv`)"),
        at(tmp_path, 1, wb, "getattr(", "uses os.environ (written `getattr(os, 'environ')`)"),
        at(tmp_path, 1, "master_sdk/cli.py", "from os", "imports os.environ"),
        Violation(1, "master_sdk/tracing/setup.py", 1, "imports os.getenv"),
        at(tmp_path, 1, comp, "dotenv", "imports dotenv.dotenv_values"),
        at(tmp_path, 1, comp, "putenv", "uses os.putenv"),
    ]
    assert check_law1(tmp_path) == sorted(expected)


# --- law 2 ----------------------------------------------------------------------------------


def test_law2_flags_vendor_sdks_and_http_clients_outside_providers(tmp_path: Path) -> None:
    """openai, anthropic, urllib.request, http.client and requests (even imported by name
    through importlib) are flagged outside master_sdk/models/providers/."""
    write(
        tmp_path,
        {
            "master_sdk/models/providers/openai.py": "import httpx\nimport openai\n",
            "master_sdk/workbench.py": "import openai\n",
            "master_sdk/tracing/export.py": """
                import urllib.parse
                from http import HTTPStatus
                from urllib import request
            """,
            "master_sdk/cli.py": """
                def fetch():
                    import http.client
                    return http.client
            """,
            "master_sdk/models/router.py": """
                import importlib

                client = importlib.import_module("requests")
            """,
            "products/p/components.py": "from anthropic import Anthropic\n",
        },
    )
    expected = [
        Violation(2, "master_sdk/workbench.py", 1, "imports openai"),
        at(tmp_path, 2, "master_sdk/tracing/export.py", "request", "imports urllib.request"),
        at(tmp_path, 2, "master_sdk/cli.py", "import http", "imports http.client"),
        at(
            tmp_path,
            2,
            "master_sdk/models/router.py",
            "import_module(",
            "imports requests (written `importlib.import_module('requests')`)",
        ),
        Violation(2, "products/p/components.py", 1, "imports anthropic.Anthropic"),
    ]
    assert check_law2(tmp_path) == sorted(expected)


# --- law 3 ----------------------------------------------------------------------------------


def test_law3_flags_provider_imports_other_than_by_the_router(tmp_path: Path) -> None:
    """Only router.py and the providers import master_sdk.models.providers; relative and
    lazy imports count, type-only imports do not, and master_sdk.testing may re-export
    the fake and replay providers but not the OpenAI one."""
    write(
        tmp_path,
        {
            "master_sdk/models/router.py": "from .providers import fake, openai\n",
            "master_sdk/models/providers/replay.py": "from .openai import OpenAIProvider\n",
            "master_sdk/models/__init__.py": "from .providers.fake import FakeProvider\n",
            "master_sdk/models/types.py": "from master_sdk.models import providers\n",
            "master_sdk/workbench.py": """
                from __future__ import annotations

                from typing import TYPE_CHECKING

                from master_sdk.models import router, types

                if TYPE_CHECKING:
                    from master_sdk.models.providers.openai import OpenAIProvider
            """,
            "master_sdk/orchestrator/engine.py": """
                def call():
                    from ..models.providers import openai
                    return openai
            """,
            "master_sdk/testing.py": """
                from master_sdk.models.providers import openai
                from master_sdk.models.providers.fake import FakeProvider
                from master_sdk.models.providers.replay import ReplayProvider
            """,
            "products/p/components.py": "import master_sdk.models.providers.fake\n",
        },
    )
    expected = [
        Violation(
            3,
            "master_sdk/models/__init__.py",
            1,
            "imports master_sdk.models.providers.fake.FakeProvider "
            "(written `from .providers.fake import FakeProvider`)",
        ),
        Violation(3, "master_sdk/models/types.py", 1, "imports master_sdk.models.providers"),
        Violation(
            3,
            "master_sdk/orchestrator/engine.py",
            2,
            "imports master_sdk.models.providers.openai "
            "(written `from ..models.providers import openai`)",
        ),
        Violation(3, "master_sdk/testing.py", 1, "imports master_sdk.models.providers.openai"),
        Violation(3, "products/p/components.py", 1, "imports master_sdk.models.providers.fake"),
    ]
    assert check_law3(tmp_path) == sorted(expected)


# --- law 4 ----------------------------------------------------------------------------------


def test_law4_flags_fn_calls_outside_the_executor_and_agent_runner(tmp_path: Path) -> None:
    """``x.fn(...)``, ``x.fn.__call__``, a name bound to ``x.fn`` and ``x.fn`` handed to
    partial or a thread are flagged outside tools/executor.py and orchestrator/agents.py;
    ``self.fn`` and introspection are not."""
    engine = "master_sdk/orchestrator/engine.py"
    write(
        tmp_path,
        {
            "master_sdk/tools/executor.py": "def run(spec, args):\n    return spec.fn(**args)\n",
            "master_sdk/orchestrator/agents.py": "def run(spec, ctx):\n    return spec.fn(ctx)\n",
            engine: """
                import functools
                import inspect
                import threading


                class Step:
                    def __init__(self, fn):
                        self.fn = fn

                    def __call__(self, x):
                        return self.fn(x)


                def direct(spec, args):
                    return spec.fn(**args)


                def through_dunder(spec):
                    return spec.fn.__call__(1)


                def aliased(spec):
                    run = spec.fn
                    return run(2)


                def later(spec):
                    return functools.partial(spec.fn, 3)


                def threaded(spec):
                    return threading.Thread(target=spec.fn)


                def introspect(spec):
                    return inspect.signature(spec.fn)
            """,
        },
    )
    expected = [
        at(tmp_path, 4, engine, "spec.fn(**args)", f"calls spec.fn(...) directly; {FN_RULE}"),
        at(tmp_path, 4, engine, "__call__(1)", f"calls spec.fn(...) directly; {FN_RULE}"),
        at(tmp_path, 4, engine, "run(2)", f"calls run (bound to a .fn)(...) directly; {FN_RULE}"),
        at(
            tmp_path,
            4,
            engine,
            "partial(",
            f"hands spec.fn to functools.partial(...); {FN_RULE}",
        ),
        at(tmp_path, 4, engine, "Thread(", f"hands spec.fn to threading.Thread(...); {FN_RULE}"),
    ]
    assert check_law4(tmp_path) == sorted(expected)


def test_law4_flags_product_code_calling_its_own_tools(tmp_path: Path) -> None:
    """A product module calling a @tool function (its own, a sibling module's, or via .fn)
    is flagged: tools run only as flow steps."""
    comp, support = "products/p/components.py", "products/p/support.py"
    write(
        tmp_path,
        {
            comp: """
                from master_sdk.authoring import AgentContext, AgentOutput, agent, tool


                @tool
                def echo(text: str) -> str:
                    return text


                @tool(idempotent=True)
                def shout(text: str) -> str:
                    return echo(text).upper()


                class Reply(AgentOutput):
                    text: str


                @agent(model="default")
                def replier(ctx: AgentContext, text: str) -> Reply:
                    return Reply(text=echo.fn(text))
            """,
            support: """
                from .components import echo


                def twice(text: str) -> str:
                    return echo(text) * 2
            """,
        },
    )
    expected = [
        at(tmp_path, 4, comp, "echo(text).upper()", f"calls tool echo directly; {TOOL_RULE}"),
        at(tmp_path, 4, comp, "echo.fn(text)", f"calls echo.fn(...) directly; {FN_RULE}"),
        at(tmp_path, 4, support, "echo(text) * 2", f"calls tool echo directly; {TOOL_RULE}"),
    ]
    assert check_law4(tmp_path) == sorted(expected)


# --- law 5 ----------------------------------------------------------------------------------


def test_law5_flags_persistence_imports_outside_memory(tmp_path: Path) -> None:
    """sqlite3, adbc_driver_sqlite, shelve and dbm are flagged outside master_sdk/memory/,
    including type-only, lazy and importlib imports."""
    write(
        tmp_path,
        {
            "master_sdk/memory/store.py": "import sqlite3\nimport adbc_driver_sqlite.dbapi\n",
            "master_sdk/workbench.py": """
                from __future__ import annotations

                import sqlite3
                from typing import TYPE_CHECKING

                if TYPE_CHECKING:
                    from sqlite3 import Connection
            """,
            "master_sdk/tracing/sink.py": """
                import pickle

                def sink():
                    import shelve
                    return shelve, pickle
            """,
            "master_sdk/cli.py": """
                import importlib

                dumb = importlib.import_module("dbm.dumb")
            """,
            "products/p/components.py": "from adbc_driver_sqlite import dbapi\n",
        },
    )
    wb = "master_sdk/workbench.py"
    expected = [
        at(tmp_path, 5, wb, "import sqlite3", "imports sqlite3"),
        at(tmp_path, 5, wb, "Connection", "imports sqlite3.Connection"),
        at(tmp_path, 5, "master_sdk/tracing/sink.py", "import shelve", "imports shelve"),
        at(
            tmp_path,
            5,
            "master_sdk/cli.py",
            "import_module(",
            "imports dbm.dumb (written `importlib.import_module('dbm.dumb')`)",
        ),
        Violation(5, "products/p/components.py", 1, "imports adbc_driver_sqlite.dbapi"),
    ]
    assert check_law5(tmp_path) == sorted(expected)


# --- law 6 ----------------------------------------------------------------------------------


def test_law6_flags_product_imports_beyond_authoring(tmp_path: Path) -> None:
    """A product may import master_sdk.authoring, its own modules, the standard library and
    third-party packages; any other master_sdk module, the package root, another product or
    a relative import above products/ is flagged, lazily imported or not."""
    comp = "products/hello/components.py"
    write(
        tmp_path,
        {
            comp: """
                import json

                import master_sdk.authoring
                from master_sdk import authoring
                from master_sdk.authoring import AgentOutput, agent, tool
                from pydantic import BaseModel

                from . import models
                from .models import Summary

                import master_sdk
                from master_sdk import Workbench
                from master_sdk.memory import store
                from ..other import components
                from ... import master_sdk as escaped


                def lazy():
                    from master_sdk.orchestrator import engine
                    return engine
            """,
            "products/hello/models.py": "from pydantic import BaseModel\n",
            "master_sdk/workbench.py": "from master_sdk.memory import store\n",
        },
    )
    expected = [
        at(tmp_path, 6, comp, "import master_sdk", "imports master_sdk"),
        at(tmp_path, 6, comp, "import Workbench", "imports master_sdk.Workbench"),
        at(tmp_path, 6, comp, "memory", "imports master_sdk.memory.store"),
        at(
            tmp_path,
            6,
            comp,
            "..other",
            "imports products.other.components (written `from ..other import components`)",
        ),
        at(
            tmp_path,
            6,
            comp,
            "escaped",
            "imports from above the products folder (written `from ... import master_sdk as "
            "escaped`)",
        ),
        at(tmp_path, 6, comp, "orchestrator", "imports master_sdk.orchestrator.engine"),
    ]
    assert check_law6(tmp_path) == sorted(expected)


# --- law 7 ----------------------------------------------------------------------------------

STATEFUL_AGENTS = """
import sqlite3
from pathlib import Path

from master_sdk import authoring
from master_sdk.authoring import AgentContext, AgentOutput, agent, tool

HISTORY: list[str] = []
CACHE: dict[str, str] = {}
COUNTER = 0


class State:
    calls = 0


class Reply(AgentOutput):
    text: str


@tool
def echo(text: str) -> str:
    HISTORY.extend([text])
    return text


@agent
def helper(ctx: AgentContext, text: str) -> Reply:
    return Reply(text=text)


@agent(model="default")
def busy(ctx: AgentContext, text: str) -> Reply:
    global COUNTER
    COUNTER += 1
    HISTORY.append(text)
    CACHE[text] = text
    State.calls += 1
    setattr(State, "last", text)
    echoed = echo(text)
    other = helper(ctx, text)
    with open("notes.txt", "w") as fh:
        fh.write(text)
    Path("out.txt").write_text(text)
    sqlite3.connect("x.db")
    return Reply(text=echoed + other.text)


@authoring.agent
def counter(ctx: AgentContext, text: str) -> Reply:
    def bump() -> None:
        nonlocal text
        text += "!"

    bump()
    import shelve
    return Reply(text=text)


@agent
def clean(ctx: AgentContext, text: str) -> Reply:
    history: list[str] = []
    history.append(text)
    CACHE = {}
    CACHE["seen"] = text
    reply = ctx.complete(f"Say {text} after {len(HISTORY)} turns")
    return Reply(text=reply.text)
"""


def test_law7_flags_stateful_agents(tmp_path: Path) -> None:
    """Inside an @agent function: global/nonlocal, mutating module-level names, calling a
    tool or another agent, opening or writing files and using sqlite3 or shelve are
    flagged; the same in a @tool, or on local names, is not."""
    comp = "products/p/components.py"
    write(tmp_path, {comp: STATEFUL_AGENTS})

    def busy(needle: str, what: str) -> Violation:
        return at(tmp_path, 7, comp, needle, f"agent busy {what}")

    expected = [
        busy("global COUNTER", "declares global COUNTER"),
        at(tmp_path, 7, comp, "nonlocal", "agent counter declares nonlocal text"),
        busy("HISTORY.append(text)", "mutates module-level HISTORY with .append(...)"),
        busy("CACHE[text]", "assigns to module-level CACHE[text]"),
        busy("State.calls", "assigns to module-level State.calls"),
        busy("setattr(", "mutates module-level State with setattr(...)"),
        busy("echo(text)", f"calls tool echo; {STEP_RULE}"),
        busy("= helper(ctx", f"calls agent helper; {STEP_RULE}"),
        busy("open(", "opens a file with open(...)"),
        busy("write_text", "touches the file system with Path('out.txt').write_text(...)"),
        busy("sqlite3.connect", "uses sqlite3.connect"),
        at(tmp_path, 7, comp, "import shelve", "agent counter imports shelve"),
    ]
    assert check_law7(tmp_path) == sorted(expected)


# --- law 8 ----------------------------------------------------------------------------------


def test_law8_flags_agent_outputs_that_are_not_output_models(tmp_path: Path) -> None:
    """An agent must return a product class deriving from AgentOutput (directly, through a
    product base class, from a sibling module or as a string annotation); a plain model, a
    builtin type or no annotation is flagged."""
    comp = "products/p/components.py"
    write(
        tmp_path,
        {
            comp: """
                from pydantic import BaseModel

                from master_sdk.authoring import AgentContext, AgentOutput, agent

                from .outputs import Report


                class Plain(BaseModel):
                    text: str


                class Base(AgentOutput):
                    text: str


                class Summary(Base):
                    summary: str


                @agent
                def good(ctx: AgentContext) -> Summary: ...
                @agent
                def quoted(ctx: AgentContext) -> "Summary": ...
                @agent
                def imported(ctx: AgentContext) -> Report: ...
                @agent
                def plain(ctx: AgentContext) -> Plain: ...
                @agent
                def loose(ctx: AgentContext) -> dict: ...
                @agent
                def bare(ctx: AgentContext): ...
            """,
            "products/p/outputs.py": """
                from master_sdk.authoring import AgentOutput


                class Report(AgentOutput):
                    body: str
            """,
        },
    )
    expected = [
        at(
            tmp_path,
            8,
            comp,
            "-> Plain",
            "agent plain returns Plain, which does not derive from AgentOutput",
        ),
        at(
            tmp_path,
            8,
            comp,
            "-> dict",
            "agent loose returns dict, which is not an AgentOutput model defined in the product",
        ),
        at(
            tmp_path,
            8,
            comp,
            "def bare",
            "agent bare has no return annotation; it must name an AgentOutput model",
        ),
    ]
    assert check_law8(tmp_path) == sorted(expected)


def test_law8_flags_control_fields_at_any_depth(tmp_path: Path) -> None:
    """AgentOutput models (and models nested in their fields) may not declare or alias a
    control field in any spelling; plain models outside agent outputs may."""
    comp = "products/p/components.py"
    write(
        tmp_path,
        {
            comp: """
                from pydantic import BaseModel, Field

                from master_sdk.authoring import AgentOutput


                class Leg(BaseModel):
                    route: str


                class Detail(BaseModel):
                    go_to: str


                class Steered(AgentOutput):
                    next_step: str
                    nextStep: str
                    NEXT_STEP: str
                    note: str = Field(alias="call-agent")
                    details: list[Detail]
            """,
            "products/p/outputs.py": """
                from master_sdk.authoring import AgentOutput


                class Report(AgentOutput):
                    body: str
                    retry: bool = False
            """,
        },
    )
    steered = "Steered (an AgentOutput) declares control field"
    expected = [
        at(
            tmp_path,
            8,
            comp,
            "go_to",
            "Detail, nested in Steered.details, declares control field 'go_to'",
        ),
        at(tmp_path, 8, comp, "next_step", f"{steered} 'next_step'"),
        at(tmp_path, 8, comp, "nextStep", f"{steered} 'nextStep'"),
        at(tmp_path, 8, comp, "NEXT_STEP", f"{steered} 'NEXT_STEP'"),
        at(tmp_path, 8, comp, "call-agent", f"{steered} 'call-agent'"),
        at(
            tmp_path,
            8,
            "products/p/outputs.py",
            "retry",
            "Report (an AgentOutput) declares control field 'retry'",
        ),
    ]
    assert check_law8(tmp_path) == sorted(expected)


# --- law 9 ----------------------------------------------------------------------------------


def test_law9_flags_notebook_and_cli_imports_of_internals(tmp_path: Path) -> None:
    """The notebook layer and the CLI may use master_sdk, master_sdk.errors and (notebook
    only) master_sdk.notebook; relative, type-only, lazy and attribute routes to any other
    module are flagged. Elsewhere in master_sdk such imports are fine."""
    views = "master_sdk/notebook/views.py"
    write(
        tmp_path,
        {
            views: """
                from __future__ import annotations

                from typing import TYPE_CHECKING

                import master_sdk as ms
                from master_sdk import Run, Workbench
                from master_sdk.errors import MasterError

                from ..memory import store
                from . import forms
                from .forms import build_form

                if TYPE_CHECKING:
                    from master_sdk.contracts.run import RunState


                def show(run: Run) -> object:
                    from master_sdk.orchestrator import engine
                    return ms.tracing


                def fine(wb: Workbench) -> object:
                    return ms.Workbench, ms.errors, MasterError
            """,
            "master_sdk/notebook/forms.py": "from master_sdk import memory\n",
            "master_sdk/cli.py": """
                from master_sdk import Workbench
                from master_sdk.errors import MasterError
                from master_sdk.notebook import views
                from master_sdk.workbench import Workbench as Wb
            """,
            "master_sdk/workbench.py": "from master_sdk.memory import store\n",
        },
    )
    expected = [
        at(
            tmp_path,
            9,
            views,
            "..memory",
            "imports master_sdk.memory.store (written `from ..memory import store`)",
        ),
        at(tmp_path, 9, views, "RunState", "imports master_sdk.contracts.run.RunState"),
        at(tmp_path, 9, views, "orchestrator", "imports master_sdk.orchestrator.engine"),
        at(tmp_path, 9, views, "ms.tracing", "uses master_sdk.tracing (written `ms.tracing`)"),
        Violation(9, "master_sdk/notebook/forms.py", 1, "imports master_sdk.memory"),
        at(tmp_path, 9, "master_sdk/cli.py", "notebook", "imports master_sdk.notebook.views"),
        at(tmp_path, 9, "master_sdk/cli.py", "as Wb", "imports master_sdk.workbench.Workbench"),
    ]
    assert check_law9(tmp_path) == sorted(expected)


def test_law9_holds_the_http_server_to_the_public_api(tmp_path: Path) -> None:
    """The HTTP server is a front end like the notebook: it may use master_sdk, its
    errors and its own modules; the CLI may start it; the notebook may not import it,
    and the server may not reach the store, the review internals or the notebook."""
    api = "master_sdk/server/api.py"
    write(
        tmp_path,
        {
            api: """
                from master_sdk import Workbench
                from master_sdk.errors import MasterError
                from master_sdk.server.auth import Caller
                from master_sdk.memory.store import Commit
                from master_sdk.review.decisions import continue_runs
                from master_sdk.notebook import views
            """,
            "master_sdk/cli.py": "from master_sdk.server.serve import serve\n",
            "master_sdk/notebook/views.py": "from master_sdk.server import app\n",
        },
    )
    expected = [
        at(tmp_path, 9, api, "memory", "imports master_sdk.memory.store.Commit"),
        at(tmp_path, 9, api, "review", "imports master_sdk.review.decisions.continue_runs"),
        at(tmp_path, 9, api, "notebook", "imports master_sdk.notebook.views"),
        Violation(9, "master_sdk/notebook/views.py", 1, "imports master_sdk.server.app"),
    ]
    assert check_law9(tmp_path) == sorted(expected)


# --- planted in a copy of the real tree --------------------------------------------------

PLANTS: list[tuple[int, str, str, int, str]] = [
    (
        1,
        "master_sdk/orchestrator/planted_violation.py",
        "import os\n\nTOKEN = os.environ['X']\n",
        3,
        "uses os.environ",
    ),
    (2, "master_sdk/tracing/planted_violation.py", "import httpx\n", 1, "imports httpx"),
    (
        3,
        "master_sdk/orchestrator/planted_violation.py",
        "from ..models.providers import fake\n",
        1,
        "imports master_sdk.models.providers.fake (written `from ..models.providers import fake`)",
    ),
    (
        4,
        "master_sdk/orchestrator/planted_violation.py",
        "def run(spec, args):\n    return spec.fn(**args)\n",
        2,
        f"calls spec.fn(...) directly; {FN_RULE}",
    ),
    (5, "master_sdk/governance/planted_violation.py", "import sqlite3\n", 1, "imports sqlite3"),
    (
        6,
        "products/planted/components.py",
        "from master_sdk.memory import store\n",
        1,
        "imports master_sdk.memory.store",
    ),
    (
        7,
        "products/planted/components.py",
        "from master_sdk.authoring import AgentContext, AgentOutput, agent\n"
        "SEEN: list[str] = []\n"
        "class Reply(AgentOutput):\n"
        "    text: str\n"
        "@agent\n"
        "def remember(ctx: AgentContext, text: str) -> Reply:\n"
        "    SEEN.append(text)\n"
        "    return Reply(text=text)\n",
        7,
        "agent remember mutates module-level SEEN with .append(...)",
    ),
    (
        8,
        "products/planted/components.py",
        "from pydantic import BaseModel\n"
        "from master_sdk.authoring import AgentContext, agent\n"
        "class Reply(BaseModel):\n"
        "    text: str\n"
        "@agent\n"
        "def answer(ctx: AgentContext) -> Reply:\n"
        "    return Reply(text='x')\n",
        6,
        "agent answer returns Reply, which does not derive from AgentOutput",
    ),
    (
        9,
        "master_sdk/notebook/planted_violation.py",
        "from ..memory import store\n",
        1,
        "imports master_sdk.memory.store (written `from ..memory import store`)",
    ),
]


@pytest.fixture
def real_copy(tmp_path: Path) -> Path:
    """A copy of this repository's master_sdk/ and products/ trees."""
    for top in ("master_sdk", "products"):
        if (REPO_ROOT / top).is_dir():
            ignore = shutil.ignore_patterns("__pycache__", ".*")
            shutil.copytree(REPO_ROOT / top, tmp_path / top, ignore=ignore)
    return tmp_path


@pytest.mark.parametrize(
    ("law", "rel", "source", "line", "detail"), PLANTS, ids=[f"law{p[0]}" for p in PLANTS]
)
def test_check_catches_a_violation_planted_in_the_real_tree(
    real_copy: Path, law: int, rel: str, source: str, line: int, detail: str
) -> None:
    """One file planted in a copy of the real tree adds exactly its violation, named."""
    before = CHECKS[law](real_copy)
    (real_copy / rel).parent.mkdir(parents=True, exist_ok=True)
    (real_copy / rel).write_text(source)
    after = CHECKS[law](real_copy)
    assert set(before) <= set(after)
    assert [v for v in after if v not in before] == [Violation(law, rel, line, detail)]


def test_parse_check_catches_a_broken_file_planted_in_the_real_tree(real_copy: Path) -> None:
    """A file that does not parse, planted in a copy of the real tree, is reported."""
    (real_copy / "master_sdk/planted_violation.py").write_text("def broken(:\n")
    assert [(v.law, v.file, v.line) for v in check_parse(real_copy)] == [
        (0, "master_sdk/planted_violation.py", 1)
    ]


def test_check_all_reports_what_the_single_checks_report(real_copy: Path) -> None:
    """check_all over a tree with every plant equals the union of the per-law checks."""
    for law, rel, source, _, _ in PLANTS:
        path = real_copy / rel.replace("planted", f"planted{law}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    combined = check_all(real_copy)
    assert {v.law for v in combined} >= set(range(1, 10))
    assert combined == sorted(v for check in CHECKS.values() for v in check(real_copy))
