"""Safe YAML: no code, no alias bombs, no deep nesting, no duplicate keys, no huge files;
product files stay inside the product folder."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from master_sdk.config import safe_yaml
from master_sdk.config.loader import load_settings
from master_sdk.errors import ConfigError, FlowError
from master_sdk.products.loader import confined
from tests.conftest import REPO, Project

BILLION_LAUGHS = """
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def test_an_alias_bomb_fails_fast_with_the_line() -> None:
    """The first alias is refused: no expansion, a clear error naming line 3."""
    started = time.perf_counter()
    with pytest.raises(safe_yaml.YamlProblem) as caught:
        safe_yaml.loads(BILLION_LAUGHS)
    assert time.perf_counter() - started < 0.5
    assert caught.value.line == 3
    assert "aliases" in str(caught.value)


def test_a_merge_key_alias_is_refused_too() -> None:
    """`<<: *base` is an alias like any other."""
    with pytest.raises(safe_yaml.YamlProblem, match="aliases"):
        safe_yaml.loads("base: &base {x: 1}\nother:\n  <<: *base\n")


def test_an_anchor_without_alias_is_harmless() -> None:
    """Anchors alone do nothing and are accepted."""
    assert safe_yaml.loads("a: &x 1\n") == {"a": 1}


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("a: 1\na: 2\n", "a"),
        ("1: a\n0x1: b\n", "1"),
        ("yes: a\ntrue: b\n", "True"),
        ("outer:\n  x: 1\n  x: 2\n", "x"),
        ("- {k: 1, k: 2}\n", "k"),
    ],
)
def test_duplicate_keys_are_an_error(text: str, key: str) -> None:
    """Duplicates are refused, including keys that differ only in how they are spelled."""
    with pytest.raises(safe_yaml.YamlProblem, match=f"duplicate key '{key}'"):
        safe_yaml.loads(text)


@pytest.mark.parametrize(
    "text",
    [
        "!!python/object/apply:os.system ['echo pwned']\n",
        "x: !!python/name:os.system\n",
        "x: !!python/object/new:subprocess.Popen [['id']]\n",
    ],
)
def test_python_tags_are_refused(text: str) -> None:
    """Safe loading only: no object construction from tags."""
    with pytest.raises(safe_yaml.YamlProblem):
        safe_yaml.loads(text)


@pytest.mark.parametrize("text", ["[" * 5000 + "]" * 5000, "a:\n" + "".join(
    f"{'  ' * i}k{i}:\n" for i in range(1, 300)
)])  # fmt: skip
def test_deep_nesting_fails_with_a_clear_error(text: str) -> None:
    """Nesting past 100 levels is refused instead of overflowing the parser."""
    with pytest.raises(safe_yaml.YamlProblem, match="nested deeper than 100"):
        safe_yaml.loads(text)


def test_nesting_up_to_the_cap_is_fine() -> None:
    """100 levels load."""
    assert safe_yaml.loads("[" * 99 + "1" + "]" * 99) is not None


def test_a_file_over_the_cap_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    """A 5 MB file fails with the limit named; at most the cap plus one byte is read."""
    path = tmp_path / "big.yaml"
    path.write_text("x: '" + "a" * 5_000_000 + "'\n", encoding="utf-8")
    with pytest.raises(safe_yaml.YamlProblem, match="larger than 1000000 bytes"):
        safe_yaml.load_file(path)


def test_a_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    """Binary junk is a YamlProblem, not a UnicodeDecodeError."""
    path = tmp_path / "bin.yaml"
    path.write_bytes(b"x: \xff\xfe\n")
    with pytest.raises(safe_yaml.YamlProblem, match="not UTF-8"):
        safe_yaml.load_file(path)


def test_a_config_alias_bomb_names_the_file(tmp_path: Path) -> None:
    """configs/policy.yaml with an alias bomb is a ConfigError naming the file."""
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "policy.yaml").write_text(BILLION_LAUGHS, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path, environ={})
    assert caught.value.file is not None and caught.value.file.endswith("policy.yaml")


def test_a_flow_file_over_the_cap_is_a_flow_error(project: Project) -> None:
    """A huge flow file fails to load with its path named."""
    path = project.flow("f", "id: f\n# " + "x" * 1_100_000 + "\nsteps: []\n")
    wb = project.open()
    with pytest.raises(FlowError) as caught:
        wb.flow("demo/f")
    assert caught.value.file == str(path)
    assert "larger than" in str(caught.value)
    wb.close()


def test_ruff_bans_yaml_load_outside_the_safe_module(tmp_path: Path) -> None:
    """The project's lint rules (S506) flag yaml.load with an unsafe loader."""
    planted = tmp_path / "planted.py"
    planted.write_text("import yaml\n\nyaml.load(open('x'), Loader=yaml.Loader)\n", "utf-8")
    ruff = Path(sys.executable).with_name("ruff")
    result = subprocess.run(
        [str(ruff), "check", "--config", str(REPO / "pyproject.toml"), "--no-cache", str(planted)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 1
    assert "S506" in result.stdout


# --- product paths ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "relative", ["../other/components.py", "/etc/passwd", "flows/../../x", "a\x00b", "a\\..\\b"]
)
def test_paths_that_leave_the_product_are_refused(tmp_path: Path, relative: str) -> None:
    """'..', absolute paths, NUL bytes and backslashes are refused with the field named."""
    with pytest.raises(FlowError) as caught:
        confined(tmp_path, relative, file="manifest.yaml", field="components")
    assert caught.value.field == "components"


def test_a_symlink_loop_is_a_flow_error(tmp_path: Path) -> None:
    """A link pointing at itself cannot crash the loader."""
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    with pytest.raises(FlowError):
        confined(tmp_path, "loop/x.py", file="manifest.yaml", field="components")


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    folder = tmp_path / "outside"
    folder.mkdir()
    return folder


def product_error(project: Project) -> FlowError:
    wb = project.open()
    try:
        with pytest.raises(FlowError) as caught:
            wb.flow("demo/f")
    finally:
        wb.close()
    return caught.value


def test_a_components_symlink_escaping_the_product_is_refused(
    project: Project, outside: Path
) -> None:
    """components.py linked to a file outside the product folder is not imported."""
    product = project.root / "products" / "demo"
    (outside / "evil.py").write_text("raise SystemExit('imported')\n", encoding="utf-8")
    (product / "components.py").unlink()
    (product / "components.py").symlink_to(outside / "evil.py")
    error = product_error(project)
    assert error.field == "components" and "leaves the product folder" in str(error)


def test_a_flows_folder_symlink_escaping_the_product_is_refused(
    project: Project, outside: Path
) -> None:
    """manifest flows: pointing through a link to another folder is refused."""
    product = project.root / "products" / "demo"
    (product / "linked").symlink_to(outside, target_is_directory=True)
    manifest = product / "manifest.yaml"
    manifest.write_text("name: demo\nversion: '1.0'\nflows: linked/\n", encoding="utf-8")
    error = product_error(project)
    assert error.field == "flows"


def test_a_flow_file_symlink_escaping_the_product_is_refused(
    project: Project, outside: Path
) -> None:
    """One flow file linked from outside stops the product from loading."""
    (outside / "f.yaml").write_text("id: f\nsteps: [{id: a, type: hitl, prompt: x}]\n", "utf-8")
    (project.root / "products" / "demo" / "flows" / "f.yaml").symlink_to(outside / "f.yaml")
    error = product_error(project)
    assert "leaves the product folder" in str(error)


@pytest.mark.parametrize("which", ["config", "manifest"])
def test_product_config_and_manifest_symlinks_escaping_are_refused(
    project: Project, outside: Path, which: str
) -> None:
    """product.yaml or manifest.yaml linked to a file outside the product is not read
    (a loosened policy cannot be smuggled in from elsewhere)."""
    product = project.root / "products" / "demo"
    project.flow("f", "id: f\nsteps: [{id: a, type: hitl, prompt: x}]\n")
    if which == "config":
        (outside / "product.yaml").write_text("policy: {max_steps: 1}\n", encoding="utf-8")
        (product / "config").mkdir()
        (product / "config" / "product.yaml").symlink_to(outside / "product.yaml")
    else:
        (outside / "manifest.yaml").write_text("name: demo\n", encoding="utf-8")
        (product / "manifest.yaml").unlink()
        (product / "manifest.yaml").symlink_to(outside / "manifest.yaml")
    error = product_error(project)
    assert error.field == which and "leaves the product folder" in str(error)


def test_a_symlink_inside_the_product_is_fine(project: Project) -> None:
    """Links that stay within the product folder are allowed."""
    product = project.root / "products" / "demo"
    (product / "flows" / "real.yaml").write_text(
        "id: real\nsteps: [{id: a, type: hitl, prompt: x}]\n", encoding="utf-8"
    )
    os.symlink(product / "flows" / "real.yaml", product / "flows" / "alias.yaml")
    wb = project.open()
    assert "demo/real" in wb.flows()
    wb.close()
