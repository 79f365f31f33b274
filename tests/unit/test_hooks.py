"""Commit hooks: observers of every commit, called once it is durable.

The trace log, crash points, telemetry and progress bars all use this one mechanism
(``Workbench.open(hooks=...)`` / ``wb.add_hook``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

import master_sdk as ms
from master_sdk.memory.store import Commit, TraceEvent


class Recorder:
    """Records what each commit carried, and what a fresh reader saw once it was durable."""

    def __init__(self, reader: ms.Workbench | None = None) -> None:
        self.reader = reader
        self.before: list[str] = []
        self.after: list[tuple[str, str, list[str]]] = []
        self.seen: list[tuple[int, int]] = []

    def before_commit(self, commit: Commit) -> None:
        self.before.append(commit.label)

    def after_commit(self, commit: Commit) -> None:
        assert all(isinstance(e, TraceEvent) for e in commit.events)
        self.after.append((commit.label, commit.run.status, [e.event for e in commit.events]))
        if self.reader is not None:
            stored, _ = self.reader.store.load(commit.run.run_id)
            self.seen.append((stored.version, commit.run.version))


def test_a_hook_sees_every_commit_with_named_events_once_another_reader_can(
    hello_root: Path,
) -> None:
    """Given to ``Workbench.open``, a hook is called around each commit of a run; in
    ``after_commit`` another workbench on the store already reads that version, and the
    events arrive with names, in order."""
    with ms.Workbench.open(hello_root) as reader:
        hook = Recorder(reader)
        with ms.Workbench.open(hello_root, hooks=[hook]) as wb:
            assert wb.hooks == [hook]
            run = wb.run("hello_world/greet", {"text": "hi"})
            run.approve(by="ana")
            run.submit({"audience": "board"}, by="ana")
            assert run.status == "completed"
            traced = len(run.trace())
    assert hook.before == [label for label, _, _ in hook.after]
    assert [status for _, status, _ in hook.after][-1] == "completed"
    assert hook.seen and all(stored == committed for stored, committed in hook.seen)
    events = [event for _, _, names in hook.after for event in names]
    assert events[0] == "run_started" and events[-1] == "run_completed"
    assert "approval_decided" in events and "model_called" in events
    assert len(events) == traced


def test_a_hook_that_fails_after_the_commit_never_fails_the_run(
    wb: ms.Workbench, caplog: pytest.LogCaptureFixture
) -> None:
    """An exception in ``after_commit`` is logged as a warning naming the run; the run
    carries on and completes, and every later commit still reaches the hook."""

    class Broken:
        calls = 0

        def before_commit(self, commit: Commit) -> None:
            pass

        def after_commit(self, commit: Commit) -> None:
            Broken.calls += 1
            raise RuntimeError("telemetry collector is down")

    wb.add_hook(Broken())
    with caplog.at_level(logging.WARNING):
        run = wb.run("hello_world/greet", {"text": "hi"})
        run.approve(by="ana").submit({"audience": "board"}, by="ana")
    assert run.status == "completed"
    assert Broken.calls >= 3
    assert run.id in caplog.text and "commit hook" in caplog.text


def test_a_hook_that_fails_before_the_commit_aborts_it_and_nothing_is_written(
    wb: ms.Workbench,
) -> None:
    """Raising in ``before_commit`` aborts that transaction: the run it would have created
    is not in the store."""

    class Veto:
        def before_commit(self, commit: Commit) -> None:
            raise RuntimeError("not now")

        def after_commit(self, commit: Commit) -> None:
            pass

    wb.add_hook(Veto())
    with pytest.raises(RuntimeError, match="not now"):
        wb.run("hello_world/greet", {"text": "hi"})
    assert wb.store.find_runs() == []


def test_closing_a_workbench_removes_its_hooks_from_a_shared_store(hello_root: Path) -> None:
    """Two workbenches on one Store object: each one's hooks see the other's commits while
    both are open; once one closes, its hooks are gone and the store stays usable."""
    from master_sdk.memory.inmemory import InMemoryStore

    store = InMemoryStore()
    first, second = Recorder(), Recorder()
    one = ms.Workbench.open(hello_root, store=store, hooks=[first])
    two = ms.Workbench.open(hello_root, store=store)
    two.add_hook(second)
    two.run("hello_world/greet", {"text": "from two"})
    assert first.after and second.after
    one.close()
    assert store.hooks == [second]
    seen = len(first.after)
    two.run("hello_world/greet", {"text": "again"})
    assert len(first.after) == seen
    two.close()
    assert store.hooks == []


def test_the_trace_log_is_a_hook_only_when_it_logs(hello_root: Path) -> None:
    """With logging on, the trace log is the workbench's first hook; off, there is none."""
    app = hello_root / "configs" / "app.yaml"
    text = app.read_text(encoding="utf-8").replace("log_level: WARNING", "log_level: INFO")
    app.write_text(text, encoding="utf-8")
    with ms.Workbench.open(hello_root) as wb:
        kinds: list[Any] = [type(h).__name__ for h in wb.hooks]
        assert kinds == ["TraceLog"]
