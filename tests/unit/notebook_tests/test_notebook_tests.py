"""The pieces of ``master test`` that need no kernel: sanitising, comparing, merging,
the deterministic clock and ids, and the forms' text fallback."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

import master_sdk as ms
from master_sdk.errors import ConfigError
from master_sdk.notebook_tests import (
    Sanitizer,
    cell_text,
    merge_outputs,
    product_notebook,
    read_rules,
)
from master_sdk.notebook_tests.compare import compare_cells
from master_sdk.orchestrator.determinism import EPOCH_US, SeededRunIds, TestClock


def _cell(source: str, text: str, count: int = 1) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell(source)
    cell.execution_count = count
    cell.outputs = [
        nbformat.v4.new_output("execute_result", data={"text/plain": text}, execution_count=count)
    ]
    return cell


def test_shipped_rules_rewrite_ids_durations_timestamps_paths_and_addresses() -> None:
    """The package's own rules cover what changes between executions."""
    text = (
        "run 01a215f1bb4880366caf6930599f81b9 took  12.5 ms at 2026-12-05 12:00:01.5+00:00 "
        "in /tmp/master-test-x1/store <Obj at 0x7f43027c5b70>"
    )
    assert Sanitizer.default().apply(text) == (
        "run <RUN-ID> took<DURATION> at <TIMESTAMP> in <TMP-PATH> <Obj at <ADDRESS>>"
    )


def test_a_sanitize_file_next_to_the_notebook_adds_rules(tmp_path: Path) -> None:
    """Rules in ``sanitize.cfg`` beside a notebook apply after the shipped ones, literally."""
    (tmp_path / "sanitize.cfg").write_text(
        "[orders]\nregex: ORD-\\d+\nreplace: <ORDER\\1>\n", encoding="utf-8"
    )
    sanitizer = Sanitizer.for_notebook(tmp_path / "a.ipynb")
    assert sanitizer.apply("ORD-123 in /tmp/x") == "<ORDER\\1> in <TMP-PATH>"


def test_a_broken_rule_names_the_file_and_line(tmp_path: Path) -> None:
    """A regex that does not compile is a ConfigError naming the file, line and section."""
    path = tmp_path / "sanitize.cfg"
    path.write_text("[bad]\nregex: (unclosed\nreplace: x\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"sanitize.cfg.*line 2, \[bad\]"):
        read_rules(path)


def test_cell_text_merges_streams_and_shows_errors_and_images_as_text() -> None:
    """Streams however chunked, results' text/plain, images as a marker, errors by name."""
    outputs = [
        nbformat.v4.new_output("stream", name="stdout", text="a"),
        nbformat.v4.new_output("stream", name="stdout", text="b\n"),
        nbformat.v4.new_output("display_data", data={"image/png": "xx"}),
        nbformat.v4.new_output("error", ename="KeyError", evalue="'x'", traceback=[]),
    ]
    assert cell_text(outputs) == "ab\n<image/png>\nKeyError: 'x'\n"


def test_a_changed_cell_is_reported_with_index_first_line_and_diff() -> None:
    """Only the differing code cell is reported: its index, first source line, a diff."""
    old = [nbformat.v4.new_markdown_cell("# t"), _cell("x = 1\nx", "1"), _cell("y", "2")]
    new = [nbformat.v4.new_markdown_cell("# t"), _cell("x = 1\nx", "1"), _cell("y", "3")]
    [mismatch] = compare_cells(old, new, Sanitizer())
    assert (mismatch.index, mismatch.source, mismatch.kind) == (2, "y", "changed")
    assert mismatch.detail.splitlines()[-2:] == ["-2", "+3"]


def test_merge_keeps_unchanged_cells_byte_for_byte() -> None:
    """A cell that reads the same after sanitising keeps its committed outputs and count;
    a changed one takes the new outputs."""
    committed = nbformat.v4.new_notebook(
        cells=[_cell("a", "run 0123456789abcdef0123456789abcdef", 7), _cell("b", "1", 8)]
    )
    executed = nbformat.v4.new_notebook(
        cells=[_cell("a", "run fedcba9876543210fedcba9876543210", 1), _cell("b", "2", 2)]
    )
    merged = merge_outputs(committed, executed, Sanitizer.default())
    assert merged.cells[0] == committed.cells[0]
    assert merged.cells[1].outputs == executed.cells[1].outputs
    assert merged.cells[1].execution_count == 2


def test_test_clock_starts_at_a_fixed_instant_and_steps_on_each_read() -> None:
    """Timestamps are strictly increasing from 2026-01-01; durations are whole steps."""
    clock = TestClock()
    assert [clock.now_us() for _ in range(3)] == [EPOCH_US, EPOCH_US + 1000, EPOCH_US + 2000]
    start = clock.elapsed_ms()
    assert clock.elapsed_ms() - start == 1.0


def test_seeded_run_ids_repeat_per_seed_and_skip_taken_ones() -> None:
    """The same seed gives the same 32-hex ids; an id the store holds is skipped."""
    first = SeededRunIds(seed=0)
    ids = [first() for _ in range(3)]
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    again = SeededRunIds(seed=0, taken=lambda run_id: run_id == ids[0])
    assert [again(), again()] == ids[1:]


def test_deterministic_workbench_gives_the_same_ids_and_times(tmp_path: Path) -> None:
    """Two fresh stores opened deterministically show the same run id, timestamps and
    durations (tool and model calls included); a reopened store gets a new id and a later
    clock."""
    repo = Path(__file__).resolve().parents[3]
    seen = []
    for name in ("a", "b"):
        with ms.Workbench.open(repo, store=tmp_path / f"{name}.sqlite3", deterministic=True) as wb:
            run = wb.run("hello_world/greet", inputs={"text": "hi"})
            run.approve(by="ana")
            run.submit({"audience": "the board"}, by="ana")
            trace = run.trace()
            assert trace["duration_ms"].notna().sum() >= 4  # measured, on the test clock
            seen.append((run.id, trace[["ts", "duration_ms"]].to_string()))
    assert seen[0] == seen[1]
    with ms.Workbench.open(repo, store=tmp_path / "a.sqlite3", deterministic=True) as wb:
        later = wb.run("hello_world/greet", inputs={"text": "hi"})
        assert later.id != seen[0][0]
        assert str(later.trace()["ts"].min()) > "2026-01-01 00:00:01"


def test_run_view_text_names_status_step_and_buttons(tmp_path: Path) -> None:
    """A paused run's view reads ``waiting_approval · review · Approve/Reject`` as text."""
    pytest.importorskip("ipywidgets")
    repo = Path(__file__).resolve().parents[3]
    with ms.Workbench.open(repo, store=tmp_path / "s.sqlite3") as wb:
        run = wb.run("hello_world/greet", inputs={"text": "hi"})
        run.form()
        assert run.view().text.splitlines()[-1] == "waiting_approval · review · Approve/Reject"


def test_product_notebook_runs_the_flow_and_answers_forms() -> None:
    """The starter notebook starts the flow, carries the answers, asserts on frames."""
    nb = product_notebook("demo", "triage", inputs={"text": "x"}, answers={"a": {"b": 1}})
    sources = "\n".join(c.source for c in nb.cells)
    assert "wb.run('demo/triage', inputs={'text': 'x'})" in sources
    assert "ANSWERS = {'a': {'b': 1}}" in sources and "run.steps()" in sources
    nbformat.validate(nb)


def test_the_repository_sanitize_file_holds_every_shipped_rule() -> None:
    """``notebooks/sanitize.cfg`` (what nbval uses in ``make test``) stays equivalent to the
    rules shipped with the package."""
    repo = Path(__file__).resolve().parents[3]
    ours = {(r.pattern.pattern, r.replace) for r in read_rules(repo / "notebooks/sanitize.cfg")}
    shipped = {(r.pattern.pattern, r.replace) for r in Sanitizer.default().rules}
    assert shipped <= ours
