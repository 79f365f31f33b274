"""The public surface: __all__ is sorted and complete, and importing is cheap."""

from __future__ import annotations

import subprocess
import sys

import master_sdk as ms


def test_all_is_sorted_and_every_name_resolves() -> None:
    """Every exported name exists; the list is sorted (case-sensitive, like ruff's RUF022)."""
    assert list(ms.__all__) == sorted(ms.__all__)
    for name in ms.__all__:
        assert getattr(ms, name) is not None


def test_exported_errors_share_one_root() -> None:
    """Every exported exception derives from MasterError."""
    for name in ms.__all__:
        value = getattr(ms, name)
        if isinstance(value, type) and issubclass(value, BaseException):
            assert issubclass(value, ms.MasterError), name


def test_importing_master_sdk_loads_no_heavy_dependency() -> None:
    """`import master_sdk` pulls in neither pandas, pydantic, jinja2, openai nor ipywidgets."""
    code = (
        "import sys, master_sdk;"
        "heavy = ['pandas', 'pydantic', 'jinja2', 'openai', 'ipywidgets', 'jsonschema', 'yaml'];"
        "print([m for m in heavy if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


def test_a_flow_run_outside_jupyter_imports_no_notebook_machinery(tmp_path) -> None:
    """Running hello_world in plain Python never imports ipywidgets or IPython."""
    from tests.conftest import REPO

    code = (
        "import sys, master_sdk as ms;"
        f"wb = ms.Workbench.open({str(REPO)!r}, store={str(tmp_path / 's.sqlite3')!r});"
        "run = wb.run('hello_world/greet', inputs={'text': 'x'}); run.approve();"
        "run.submit({'audience': 'a'}); print(repr(run));"
        "print([m for m in ('ipywidgets', 'IPython', 'openai') if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    lines = out.stdout.strip().splitlines()
    assert "completed" in lines[0]
    assert lines[-1] == "[]"
