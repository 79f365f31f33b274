"""Products are hostile until loaded: confined imports, bounded load time, no silent clashes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import master_sdk as ms

TOOL = """
from pydantic import BaseModel
from master_sdk.authoring import tool

class Echoed(BaseModel):
    text: str
"""

FLOW = """
id: f
steps:
  - {id: a, type: hitl, prompt: "ok?"}
"""


def _product(root: Path, name: str, components: str | None, **files: str) -> Path:
    folder = root / "products" / name
    (folder / "flows").mkdir(parents=True)
    (folder / "manifest.yaml").write_text(f"name: {name}\n", encoding="utf-8")
    (folder / "flows" / "f.yaml").write_text(FLOW, encoding="utf-8")
    if components is not None:
        (folder / "components.py").write_text(textwrap.dedent(components), encoding="utf-8")
    for name_, text in files.items():
        path = folder / name_.replace("__", "/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return folder


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    (root / "configs").mkdir(parents=True)
    (root / "configs" / "app.yaml").write_text("load_timeout_s: 1\n", encoding="utf-8")
    _product(root, "good", None)
    return root


def _problems(root: Path) -> dict[str, str]:
    with ms.Workbench.open(root) as wb:
        return {str(p.file).split("/products/")[1].split("/")[0]: str(p) for p in wb.validate()}


# ---------------------------------------------------------------------- confinement


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A module outside every product, that leaves a mark if it ever runs."""
    path = tmp_path / "outside.py"
    mark = tmp_path / "ran"
    path.write_text(f"open({str(mark)!r}, 'w').write('ran')\nVALUE = 1\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "components",
    [
        "from . import helper\n",
        "from .helper import VALUE\n",
        "import importlib\nimportlib.import_module('.helper', __package__)\n",
        "from .pkg import helper\n",
    ],
    ids=["relative", "from-relative", "importlib", "submodule"],
)
def test_a_module_linked_out_of_the_product_is_refused(
    root: Path, outside: Path, components: str
) -> None:
    """A symlink to a file outside the product is never imported, however it is reached."""
    folder = _product(root, "evil", components, pkg____init__py="")
    (folder / "pkg" / "__init__.py").write_text("", encoding="utf-8")
    os.symlink(outside, folder / "helper.py")
    os.symlink(outside, folder / "pkg" / "helper.py")
    problems = _problems(root)
    assert "outside the product folder" in problems["evil"]
    assert not (outside.parent / "ran").exists()


def test_a_package_folder_linked_out_of_the_product_is_refused(root: Path, outside: Path) -> None:
    """A symlinked package directory is refused too, not only module files."""
    package = outside.parent / "pkg_out"
    package.mkdir()
    (package / "__init__.py").write_text(outside.read_text(), encoding="utf-8")
    folder = _product(root, "evil", "from . import pkg_out\n")
    os.symlink(package, folder / "pkg_out")
    assert "outside the product folder" in _problems(root)["evil"]
    assert not (outside.parent / "ran").exists()


def test_helpers_inside_the_product_still_import(root: Path) -> None:
    """Confinement leaves a product's own modules and subpackages importable."""
    _product(
        root,
        "fine",
        "from . import helper\nfrom .pkg import inner\nimport importlib\n"
        "importlib.import_module('.pkg.inner', __package__)\n",
        helper_py="X = 1\n",
        pkg____init__py="",
        pkg__inner_py="Y = 2\n",
    )
    folder = root / "products" / "fine"
    (folder / "helper.py").write_text("X = 1\n", encoding="utf-8")
    (folder / "pkg").mkdir(exist_ok=True)
    (folder / "pkg" / "__init__.py").write_text("", encoding="utf-8")
    (folder / "pkg" / "inner.py").write_text("Y = 2\n", encoding="utf-8")
    assert _problems(root) == {}


# ---------------------------------------------------------------------- bounded loading


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("while True:\n    pass\n", "longer than 1 s"),
        ("import time\ntime.sleep(3600)\n", "longer than 1 s"),
        (
            "while True:\n    try:\n        pass\n    except Exception:\n        pass\n",
            "longer than 1 s",
        ),
        ("import sys\nsys.exit(3)\n", "sys.exit(3)"),
        ("raise KeyError('nope')\n", "KeyError: 'nope' (line 1 of components.py)"),
    ],
    ids=["loop", "sleep", "stubborn-loop", "exit", "error"],
)
def test_a_product_that_hangs_or_exits_at_import_is_reported_by_name(
    root: Path, code: str, reason: str
) -> None:
    """validate() reports the bad product with its reason and still checks the others."""
    _product(root, "bad", code)
    started = time.monotonic()
    problems = _problems(root)
    assert time.monotonic() - started < 10
    assert list(problems) == ["bad"]
    assert reason in problems["bad"]
    with ms.Workbench.open(root) as wb:
        assert wb.run("good/f").status == "waiting_approval"


def test_a_hanging_import_is_bounded_outside_the_main_thread(root: Path) -> None:
    """A loop at import is stopped in a worker thread too (a watchdog, not a signal)."""
    _product(root, "bad", "while True:\n    pass\n")
    found: list[str] = []

    def check() -> None:
        found.extend(str(p) for p in _problems(root).values())

    worker = threading.Thread(target=check)
    worker.start()
    worker.join(timeout=30)
    assert not worker.is_alive()
    assert found and "longer than 1 s" in found[0]


@pytest.mark.parametrize("command", ["validate", "flows"])
def test_the_cli_reports_a_hanging_or_exiting_product_and_goes_on(root: Path, command: str) -> None:
    """`master validate` and `master flows` finish, name the bad products, list the good."""
    _product(root, "loops", "while True:\n    pass\n")
    _product(root, "exits", "import sys\nsys.exit(3)\n")
    done = subprocess.run(
        [sys.executable, "-m", "master_sdk.cli", "--root", str(root), command],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "loops" in done.stderr and "longer than 1 s" in done.stderr
    assert "exits" in done.stderr and "sys.exit(3)" in done.stderr
    if command == "flows":
        assert done.stdout.split() == ["good/f"]
    else:
        assert done.returncode == 1


def test_a_bounded_import_leaves_the_signal_handlers_as_they_were(root: Path) -> None:
    """After a load was interrupted, the process's signal handlers are unchanged."""
    import signal

    watched = (signal.SIGALRM, signal.SIGUSR1, signal.SIGUSR2)
    handlers = [signal.getsignal(s) for s in watched]
    _product(root, "bad", "import time\ntime.sleep(3600)\n")
    assert "longer than 1 s" in _problems(root)["bad"]
    assert [signal.getsignal(s) for s in watched] == handlers


# ---------------------------------------------------------------------- duplicate names


def test_two_tools_with_one_name_in_a_module_are_refused_naming_both(root: Path) -> None:
    """A second @tool def echo does not silently replace the first."""
    code = TOOL + ("\n@tool\ndef echo(text: str) -> Echoed:\n    return Echoed(text=text)\n" * 2)
    _product(root, "twice", code)
    problem = _problems(root)["twice"]
    assert "two tools are named 'echo'" in problem
    assert "components.py:9" in problem and "components.py:13" in problem


def test_two_agents_named_alike_across_modules_are_refused(root: Path) -> None:
    """Two modules registering one agent name: both definitions are named (file:line)."""
    agent = (
        "from master_sdk.authoring import AgentContext, AgentOutput, agent\n"
        "class Out(AgentOutput):\n    text: str\n"
        "@agent(model='default', name='writer')\n"
        "def {fn}(ctx: AgentContext, text: str) -> Out:\n    return Out(text=text)\n"
    )
    folder = _product(root, "clash", None)
    (folder / "a.py").write_text(agent.format(fn="first"), encoding="utf-8")
    (folder / "b.py").write_text(agent.format(fn="second"), encoding="utf-8")
    (folder / "manifest.yaml").write_text(
        "name: clash\ncomponents: [a.py, b.py]\n", encoding="utf-8"
    )
    problem = _problems(root)["clash"]
    assert "two agents are named 'writer'" in problem
    assert "a.py:4" in problem and "b.py:4" in problem


def test_a_tool_imported_under_two_names_is_one_tool(root: Path) -> None:
    """An alias of the same tool is not a duplicate."""
    code = TOOL + "\n@tool\ndef echo(text: str) -> Echoed:\n    return Echoed(text=text)\n"
    _product(root, "alias", code + "again = echo\n")
    assert _problems(root) == {}


# ---------------------------------------------------------------------- no components


def test_a_product_without_components_is_valid(root: Path) -> None:
    """A flow of human steps needs no components.py; it runs."""
    assert _problems(root) == {}
    with ms.Workbench.open(root) as wb:
        assert wb.run("good/f").approve().status == "completed"


def test_a_named_components_module_that_is_missing_says_so(root: Path) -> None:
    """A manifest that names a missing module gets 'does not exist', not 'wrong type'."""
    folder = _product(root, "gone", None)
    (folder / "manifest.yaml").write_text("name: gone\ncomponents: tools.py\n", encoding="utf-8")
    problem = _problems(root)["gone"]
    assert "'tools.py' does not exist" in problem


# ---------------------------------------------------------------------- isolated checks


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("sum(range(10**15))\n", "could not be interrupted"),
        ("import os\nos._exit(3)\n", "ended the process (exit code 3)"),
        ("import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n", "killed by signal SIGSEGV"),
    ],
    ids=["c-level-loop", "os-exit", "crash"],
)
def test_validate_isolated_reports_what_in_process_bounds_cannot_stop(
    root: Path, code: str, reason: str
) -> None:
    """validate(isolate=True) names a product that stalls uncatchably or kills its process,
    and still checks and runs the others."""
    _product(root, "worst", code)
    _product(root, "also_good", None)
    with ms.Workbench.open(root) as wb:
        problems = wb.validate(isolate=True)
        assert [p for p in problems if "worst" not in str(p)] == []
        (problem,) = problems
        assert "product 'worst'" in str(problem) and reason in str(problem)
        assert wb.flows() == ["also_good/f", "good/f"]
        assert wb.run("good/f").status == "waiting_approval"


def test_master_validate_survives_a_crashing_product(root: Path) -> None:
    """The command prints every problem and exits 1; it is not killed with the product."""
    _product(root, "crash", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n")
    done = subprocess.run(
        [sys.executable, "-m", "master_sdk.cli", "--root", str(root), "validate"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    assert "product 'crash'" in done.stderr and "SIGKILL" in done.stderr
