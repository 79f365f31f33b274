"""An open workbench picks up every edit to a product on its next use, without a restart."""

from __future__ import annotations

import os
import sys
import textwrap
import threading
from pathlib import Path

import pytest

import master_sdk as ms
from tests.conftest import Project

FLOW = """
id: f
inputs: {type: object, properties: {text: {type: string}}, required: [text]}
steps:
  - id: echo
    type: tool
    tool: echo
    input: {text: "{{ inputs.text }}"}
  - id: review
    type: hitl
    prompt: ok?
output: "{{ steps.echo.output }}"
"""


def _write(path: Path, text: str) -> None:
    """Write a file and move its mtime on, as an editor saving a second later would."""
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


def _echo_components(suffix: str) -> str:
    return f"""
    from pydantic import BaseModel
    from master_sdk.authoring import tool

    class Echoed(BaseModel):
        text: str

    @tool
    def echo(text: str) -> Echoed:
        return Echoed(text=text + {suffix!r})
    """


@pytest.fixture
def demo(project: Project) -> Project:
    _write(project.root / "products/demo/components.py", _echo_components(""))
    project.flow("f", FLOW)
    return project


def test_an_edited_components_module_is_used_by_the_next_run(demo: Project) -> None:
    """Editing components.py changes what the next run of the same workbench does."""
    wb = demo.open()
    assert wb.run("demo/f", {"text": "a"}).approve().output == {"text": "a"}
    _write(demo.root / "products/demo/components.py", _echo_components("!"))
    assert wb.run("demo/f", {"text": "a"}).approve().output == {"text": "a!"}
    wb.close()


def test_an_edit_within_the_same_second_and_size_is_still_seen(demo: Project) -> None:
    """A change that keeps size and mtime-to-the-second is seen (hashes, no stale .pyc)."""
    wb = demo.open()
    path = demo.root / "products/demo/components.py"
    _write(path, _echo_components("1"))
    assert wb.run("demo/f", {"text": "a"}).approve().output == {"text": "a1"}
    before = path.stat()
    path.write_text(path.read_text().replace("'1'", "'2'"), encoding="utf-8")
    # the same second and size: Python's bytecode cache would call this file unchanged
    same_second = before.st_mtime_ns - before.st_mtime_ns % 1_000_000_000 + 999_999_999
    os.utime(path, ns=(before.st_atime_ns, same_second))
    assert wb.run("demo/f", {"text": "a"}).approve().output == {"text": "a2"}
    assert not list((demo.root / "products/demo").rglob("*.pyc"))
    wb.close()


def test_an_edited_helper_module_is_used_by_the_next_run(demo: Project) -> None:
    """A helper imported by components.py is reloaded with it (the product is one unit)."""
    product = demo.root / "products/demo"
    _write(product / "wording.py", "SUFFIX = '?'\n")
    _write(
        product / "components.py",
        """
        from pydantic import BaseModel
        from master_sdk.authoring import tool
        from . import wording

        class Echoed(BaseModel):
            text: str

        @tool
        def echo(text: str) -> Echoed:
            return Echoed(text=text + wording.SUFFIX)
        """,
    )
    wb = demo.open()
    assert wb.run("demo/f", {"text": "a"}).approve().output == {"text": "a?"}
    _write(product / "wording.py", "SUFFIX = '!!'\n")
    assert wb.run("demo/f", {"text": "a"}).approve().output == {"text": "a!!"}
    wb.close()


def test_an_edited_manifest_version_and_product_policy_are_used(demo: Project) -> None:
    """manifest.yaml and config/product.yaml edits reach the next run."""
    wb = demo.open()
    first = wb.run("demo/f", {"text": "a"})
    assert wb.runs().iloc[0]["product_version"] == "1.0"
    _write(demo.root / "products/demo/manifest.yaml", "name: demo\nversion: '2.0'\n")
    (demo.root / "products/demo/config").mkdir()
    _write(demo.root / "products/demo/config/product.yaml", "policy: {allowed_tools: [count]}\n")
    with pytest.raises(ms.FlowError, match="allowed_tools"):
        wb.run("demo/f", {"text": "a"})
    _write(demo.root / "products/demo/config/product.yaml", "policy: {max_steps: 9}\n")
    second = wb.run("demo/f", {"text": "b"})
    versions = dict(zip(wb.runs()["run_id"], wb.runs()["product_version"], strict=True))
    assert versions[second.id] == "2.0" and versions[first.id] == "1.0"
    wb.close()


def test_a_flow_added_while_open_can_be_run(demo: Project) -> None:
    """A flow file created after the workbench loaded the product is found."""
    wb = demo.open()
    assert wb.flows() == ["demo/f"]
    demo.flow("g", FLOW.replace("id: f", "id: g"))
    assert wb.flows() == ["demo/f", "demo/g"]
    assert wb.run("demo/g", {"text": "x"}).status == "waiting_approval"
    wb.close()


def test_a_broken_edit_is_reported_and_a_fix_is_picked_up(demo: Project) -> None:
    """A product broken by an edit raises FlowError; fixing the file makes it work again."""
    wb = demo.open()
    path = demo.root / "products/demo/components.py"
    _write(path, "raise RuntimeError('half-written')\n")
    with pytest.raises(ms.FlowError, match="half-written"):
        wb.run("demo/f", {"text": "a"})
    _write(path, _echo_components("."))
    assert wb.run("demo/f", {"text": "a"}).approve().output == {"text": "a."}
    wb.close()


def test_a_paused_run_refuses_edited_components_unless_allowed(demo: Project) -> None:
    """A component edit under a paused run is a flow change: FlowChanged names it."""
    wb = demo.open()
    run = wb.run("demo/f", {"text": "a"})
    _write(demo.root / "products/demo/components.py", _echo_components("!"))
    with pytest.raises(ms.FlowChanged, match="product's code") as caught:
        run.approve()
    assert caught.value.diff == ""
    assert run.status == "waiting_approval"
    assert run.approve(allow_flow_change=True).status == "completed"
    wb.close()


def test_a_paused_run_survives_an_unrelated_flow_being_added(demo: Project) -> None:
    """Adding another flow reloads the product but does not change a paused run's pin."""
    wb = demo.open()
    run = wb.run("demo/f", {"text": "a"})
    demo.flow("g", FLOW.replace("id: f", "id: g"))
    assert run.approve().status == "completed"
    wb.close()


def test_flow_changed_carries_a_short_diff_of_the_flow(demo: Project) -> None:
    """FlowChanged.diff shows the lines of the flow file that changed."""
    wb = demo.open()
    run = wb.run("demo/f", {"text": "a"})
    demo.flow("f", FLOW.replace("prompt: ok?", "prompt: really ok?"))
    with pytest.raises(ms.FlowChanged) as caught:
        run.approve()
    assert "-    prompt: ok?" in caught.value.diff
    assert "+    prompt: really ok?" in caught.value.diff
    assert "steps changed: review" in caught.value.changes
    wb.close()


def test_threads_sharing_a_workbench_load_a_changed_product_once(demo: Project) -> None:
    """Many threads loading a changed product at once all get one whole new version.

    (The store's own thread safety is tested with the store; this is the loader's.)"""
    wb = demo.open()
    wb.run("demo/f", {"text": "warm"})
    old = wb.catalog.product("demo").package
    before = _packages()
    _write(demo.root / "products/demo/components.py", _echo_components("#"))
    errors: list[BaseException] = []
    outputs: list[object] = []
    start = threading.Barrier(8)

    def use() -> None:
        try:
            start.wait()
            product = wb.catalog.product("demo")
            flow = wb.catalog.flow("demo/f")
            outputs.append(product.tools["echo"].fn("t").model_dump())
            assert flow.steps[0].tool is product.tools["echo"]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=use) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert outputs == [{"text": "t#"}] * 8
    after = _packages()
    new = wb.catalog.product("demo").package
    assert after - before == {new.split(".")[1]}  # loaded once, by one of the threads
    assert old.split(".")[1] not in after  # the version it replaced was dropped
    wb.close()
    assert new.split(".")[1] not in _packages()  # closing the workbench drops its products


def _packages() -> set[str]:
    return {m.split(".")[1] for m in sys.modules if m.startswith("master_products.demo_v")}


def _age(folder: Path, seconds: float) -> None:
    """Set a folder's mtime ``seconds`` back, as if its last change was that long ago."""
    stat = folder.stat()
    back = int(seconds * 1e9)
    os.utime(folder, ns=(stat.st_atime_ns - back, stat.st_mtime_ns - back))


def test_a_helper_module_added_to_a_still_folder_is_used(demo: Project) -> None:
    """A folder whose listing is remembered is listed again once an entry is added."""
    from master_sdk.products.fingerprint import Fingerprinter

    folder = (demo.root / "products/demo").resolve()
    _age(folder, 60)
    prints = Fingerprinter()
    before = prints.of(folder, folder / "flows")
    assert str(folder) in prints._listings  # settled: remembered
    assert prints.of(folder, folder / "flows") == before
    (folder / "helper.py").write_text("X = 1\n", encoding="utf-8")
    after = prints.of(folder, folder / "flows")
    assert after.code != before.code
    (folder / "helper.py").unlink()
    assert prints.of(folder, folder / "flows").code == before.code


def test_a_folder_changed_just_now_is_listed_on_every_check(demo: Project) -> None:
    """A listing taken just after a change is not remembered: a second change within the
    same timestamp tick would leave the folder's stat as it was. Once the folder has been
    still for a moment, its listing is remembered (and its stat checked on every use)."""
    from master_sdk.products.fingerprint import Fingerprinter

    folder = (demo.root / "products/demo").resolve()
    (folder / "first.py").write_text("A = 1\n", encoding="utf-8")
    prints = Fingerprinter()
    before = prints.of(folder, folder / "flows")
    assert str(folder) not in prints._listings
    (folder / "second.py").write_text("B = 2\n", encoding="utf-8")
    assert prints.of(folder, folder / "flows").code != before.code
    _age(folder, 1)
    prints.of(folder, folder / "flows")
    assert str(folder) in prints._listings


def test_a_flow_added_to_a_still_flows_folder_is_listed(demo: Project) -> None:
    """The flow names come from the same remembered listing, refreshed on a change."""
    from master_sdk.products.fingerprint import Fingerprinter

    folder = (demo.root / "products/demo").resolve()
    flows = folder / "flows"
    _age(flows, 60)
    prints = Fingerprinter()
    assert prints.of(folder, flows).flows == ("f.yaml",)
    (flows / "g.yaml").write_text(FLOW.replace("id: f", "id: g"), encoding="utf-8")
    assert prints.of(folder, flows).flows == ("f.yaml", "g.yaml")
