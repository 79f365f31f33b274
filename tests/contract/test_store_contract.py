"""The Store contract: every implementation behaves the same, through one fixture.

A store joins the suite by adding one entry to ``STORES`` (a name and a function making a
fresh store in a temporary folder, with a redaction callable). The frames, exports and
imports are built above the store, so equal records mean equal frames.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import master_sdk as ms
from master_sdk.memory import frames
from master_sdk.memory.inmemory import InMemoryStore
from master_sdk.memory.postgres import PostgresStore
from master_sdk.memory.retention import PRUNED_BY_DEFAULT
from master_sdk.memory.sqlite import SQLiteStore
from master_sdk.memory.store import (
    ApprovalRecord,
    Changes,
    Commit,
    FlowSource,
    InputRecord,
    RunRecord,
    StepAttempt,
    Store,
    TraceEvent,
    VersionConflict,
)
from tests.support import postgres

TS = 1_767_225_600_000_000
SECRET = "tok-4f9a77c2e1"


def redact(value: Any) -> Any:
    """A stand-in for the workbench's redactor: hides SECRET in any string of a value."""
    if isinstance(value, str):
        return value.replace(SECRET, "<SECRET>")
    if isinstance(value, dict):
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


Make = Callable[[Path], Any]
STORES: dict[str, Make] = {
    "sqlite": lambda folder: SQLiteStore(folder / "store.sqlite3", scrub=redact),
    "memory": lambda folder: InMemoryStore(scrub=redact),
    "postgresql": lambda folder: PostgresStore(postgres.fresh_url(), scrub=redact),
    # through PgBouncer 1.18 in transaction pooling: every transaction may get another
    # server connection, and the pooler keeps no prepared statements
    "postgresql-pgbouncer": lambda folder: PostgresStore(
        postgres.bouncer().fresh_url(), scrub=redact
    ),
}


@pytest.fixture(params=sorted(STORES))
def make(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Any]]:
    """A factory of fresh stores of one implementation (each in its own folder)."""
    made: list[Any] = []

    def new() -> Any:
        folder = tmp_path / f"s{len(made)}"
        folder.mkdir()
        store = STORES[request.param](folder)
        made.append(store)
        return store

    yield new
    for store in made:
        store.close()


@pytest.fixture
def store(make: Callable[[], Any]) -> Any:
    return make()


# --------------------------------------------------------------------------- helpers

FLOW = FlowSource("h1", "demo", "f", "1.0", f"id: f  # {SECRET}")


def new_run(run_id: str = "r1", **fields: Any) -> RunRecord:
    values: dict[str, Any] = {
        "run_id": run_id,
        "product": "demo",
        "flow": "f",
        "status": "running",
        "version": 1,
        "cursor": 0,
        "created_us": TS,
        "updated_us": TS,
        "flow_hash": "h1",
        "product_version": "1.0",
        "created_by": "ana",
        "inputs": {"text": f"hello {SECRET}"},
        **fields,
    }
    return RunRecord(**values)


def event(seq: int, kind: str = "step_started", **fields: Any) -> TraceEvent:
    return TraceEvent(seq, TS + seq, kind, **fields)


def start(store: Store, run_id: str = "r1", events: int = 1) -> RunRecord:
    run = new_run(run_id)
    changes = Changes(
        events=[event(1, "run_started", attrs={"by": "ana"})]
        + [event(i) for i in range(2, events + 1)],
        flow_source=FLOW,
    )
    store.commit(run, changes, expect_version=None, label="start")
    return run


def advance(store: Store, run: RunRecord, changes: Changes, **fields: Any) -> None:
    expect = run.version
    run.version += 1
    for key, value in fields.items():
        setattr(run, key, value)
    store.commit(run, changes, expect_version=expect, label="step")


def story(store: Store) -> RunRecord:
    """A run with a failed then retried tool step, an approval, an input and a model call."""
    run = start(store)
    advance(
        store,
        run,
        Changes(
            steps={0: StepAttempt(0, "echo", "tool", "failed", 1, TS + 10, TS + 20, None, "boom")},
            events=[
                event(2, step_id="echo", step_type="tool", name="echo"),
                event(3, "step_failed", step_id="echo", step_type="tool", status="failed"),
            ],
        ),
        status="failed",
    )
    advance(
        store,
        run,
        Changes(
            steps={0: StepAttempt(0, "echo", "tool", "completed", 2, TS + 30, TS + 40, {"t": 1})},
            events=[
                event(4, "step_retried", step_id="echo"),
                event(
                    5,
                    "tool_called",
                    step_id="echo",
                    step_type="tool",
                    name="echo",
                    status="ok",
                    duration_ms=0.5,
                ),
            ],
        ),
        status="running",
        cursor=1,
    )
    advance(
        store,
        run,
        Changes(
            steps={1: StepAttempt(1, "review", "hitl", "completed", 1, TS + 50, TS + 60)},
            approvals=[ApprovalRecord("review", "approved", "bo", f"ok {SECRET}", TS + 55)],
            inputs=[InputRecord("review", {"note": SECRET}, "bo", TS + 56)],
            events=[
                event(
                    6,
                    "approval_decided",
                    step_id="review",
                    step_type="hitl",
                    status="approved",
                    attrs={"by": "bo"},
                ),
                event(
                    7,
                    "model_called",
                    step_id="summary",
                    step_type="agent",
                    name="default",
                    status="ok",
                    duration_ms=12.5,
                    tokens_in=10,
                    tokens_out=2**40,
                    cost_usd=0.25,
                    attrs={"model": "m", "n": [1, {"x": None}]},
                ),
            ],
        ),
        status="completed",
        cursor=2,
        output={"done": True},
        tokens_in=10,
        tokens_out=2**40,
        cost_usd=0.25,
    )
    return run


# --------------------------------------------------------------------------- writes


def test_a_new_run_gets_a_key_and_loads_back_as_written_and_redacted(store: Any) -> None:
    """The first commit sets ``run.pk``; load returns the run with its values decoded and
    passed through the store's redaction."""
    run = start(store)
    assert run.pk is not None
    loaded, steps = store.load("r1")
    assert loaded.run_id == "r1" and loaded.version == 1 and steps == []
    assert loaded.inputs == {"text": "hello <SECRET>"}
    assert store.flow_source("h1") == "id: f  # <SECRET>"


def test_compare_and_set_refuses_a_stale_version_and_writes_nothing(store: Any) -> None:
    """A commit expecting an older version raises VersionConflict (a StoreError) naming
    the stored status and version; none of its steps, events or approvals is written."""
    run = start(store)
    advance(store, run, Changes(), status="waiting_approval")
    stale = new_run(status="completed", version=2)
    stale.pk = run.pk
    changes = Changes(
        steps={0: StepAttempt(0, "echo", "tool", "completed")},
        events=[event(2)],
        approvals=[ApprovalRecord("review", "approved", "x", None, TS)],
    )
    with pytest.raises(VersionConflict) as caught:
        store.commit(stale, changes, expect_version=1, label="late")
    assert isinstance(caught.value, ms.StoreError)
    assert (caught.value.status, caught.value.version) == ("waiting_approval", 2)
    loaded, steps = store.load("r1")
    assert (loaded.status, loaded.version, steps) == ("waiting_approval", 2, [])
    assert store.count_events("r1") == 1
    assert store.approvals() == []


def test_a_second_start_of_the_same_run_id_is_a_store_error(store: Any) -> None:
    """Inserting a run id that exists fails with StoreError; the first run is intact."""
    start(store)
    with pytest.raises(ms.StoreError):
        store.commit(new_run(status="failed"), Changes(), expect_version=None, label="again")
    assert store.load("r1")[0].status == "running"


def test_every_attempt_of_a_step_is_kept_and_load_gives_the_latest(store: Any) -> None:
    """A failed attempt then a completed retry: load and the steps frame show the latest,
    attempts() and attempts=True show both, in order."""
    story(store)
    _, steps = store.load("r1")
    assert [(s.step_id, s.attempt, s.status) for s in steps] == [
        ("echo", 2, "completed"),
        ("review", 1, "completed"),
    ]
    every = store.attempts("r1")
    assert [(s.step_id, s.attempt, s.status, s.error) for s in every] == [
        ("echo", 1, "failed", "boom"),
        ("echo", 2, "completed", None),
        ("review", 1, "completed", None),
    ]
    assert store.step_attempts("r1", attempts=True) == every
    latest = frames.steps(store, "r1")
    assert list(latest["attempt"]) == [2, 1]
    assert list(frames.steps(store, "r1", attempts=True)["attempt"]) == [1, 2, 1]
    with pytest.raises(ms.NotFound):
        store.attempts("nope")
    assert store.step_attempts("nope") == []


def test_records_handed_out_are_copies(store: Any) -> None:
    """Changing a loaded run or step changes nothing stored."""
    story(store)
    run, steps = store.load("r1")
    run.output["done"] = False
    steps[0].output["t"] = 99
    again, steps_again = store.load("r1")
    assert again.output == {"done": True} and steps_again[0].output == {"t": 1}


def test_unknown_runs_are_not_found_and_a_closed_store_refuses_work(make: Any) -> None:
    """load of an unknown id raises NotFound; after close every call raises StoreError."""
    store = make()
    with pytest.raises(ms.NotFound):
        store.load("nope")
    store.close()
    store.close()
    with pytest.raises(ms.StoreError):
        store.find_runs()


# --------------------------------------------------------------------------- reads


def test_the_trace_round_trips_with_names_and_every_field(store: Any) -> None:
    """Each event reads back with its names and values (read_runs), and the trace frame
    has them in order, typed."""
    story(store)
    (stored,) = list(store.read_runs(["r1"]))
    assert [e.event for e in stored.events] == [
        "run_started",
        "step_started",
        "step_failed",
        "step_retried",
        "tool_called",
        "approval_decided",
        "model_called",
    ]
    model = stored.events[-1]
    assert (model.step_id, model.step_type, model.name, model.status) == (
        "summary",
        "agent",
        "default",
        "ok",
    )
    assert (model.duration_ms, model.tokens_in, model.tokens_out, model.cost_usd) == (
        12.5,
        10,
        2**40,
        0.25,
    )
    assert model.attrs == {"model": "m", "n": [1, {"x": None}]}
    trace = frames.traces(store)
    assert list(trace["seq"]) == list(range(1, 8))
    assert trace["tokens_in"].isna().sum() == 6
    assert trace.loc[6, "name"] == "default" and trace.loc[0, "attrs"] == {"by": "ana"}
    assert store.count_events() == store.count_events("r1") == 7
    since = frames.traces(store, since_us=TS + 5)
    assert list(since["seq"]) == [5, 6, 7]
    assert since["attrs"].tolist()[1:] == [{"by": "bo"}, {"model": "m", "n": [1, {"x": None}]}]


def test_approvals_and_inputs_round_trip_redacted(store: Any) -> None:
    """The approval and the input come back with who, when, and redacted text."""
    story(store)
    (approval,) = store.approvals()
    assert (approval.run_id, approval.approval.by, approval.approval.comment) == (
        "r1",
        "bo",
        "ok <SECRET>",
    )
    (stored,) = list(store.read_runs())
    assert stored.inputs == [InputRecord("review", {"note": "<SECRET>"}, "bo", TS + 56)]
    audit = frames.approvals(store)
    assert list(audit["decision"]) == ["approved"] and list(audit["comment"]) == ["ok <SECRET>"]


def test_filters_and_run_lists_agree(store: Any) -> None:
    """find_runs is oldest first, run_table newest first; status and product filters."""
    story(store)
    start(store, "r2")
    assert [r for r, _ in store.find_runs()] == ["r1", "r2"]
    assert [r for r, _ in store.find_runs(status="running")] == ["r2"]
    assert list(store.run_table().run_id) == ["r2", "r1"]
    assert list(store.run_table(status="completed").run_id) == ["r1"]
    assert list(store.run_table(product="other").run_id) == []
    assert set(frames.traces(store, status="running")["run_id"]) == {"r2"}


def test_frames_are_equal_across_implementations(tmp_path: Path) -> None:
    """The same commits give the same runs, trace, steps and approvals frames in every
    store implementation."""
    built = {}
    for name, new in STORES.items():
        folder = tmp_path / name
        folder.mkdir()
        store = new(folder)
        story(store)
        start(store, "r2", events=3)
        built[name] = {
            "runs": frames.runs(store),
            "trace": frames.traces(store),
            "steps": frames.steps(store, "r1", attempts=True),
            "approvals": frames.approvals(store),
        }
        store.close()
    first, *others = built.values()
    for other in others:
        for key, frame in first.items():
            pd.testing.assert_frame_equal(frame, other[key], obj=key)


# --------------------------------------------------------------------------- hooks


class Recorder:
    def __init__(self, name: str, calls: list[tuple[str, str, str]], store: Any) -> None:
        self.name, self.calls, self.store = name, calls, store

    def before_commit(self, commit: Commit) -> None:
        visible = any(r == commit.run.run_id for r, _ in self.store.find_runs())
        self.calls.append((self.name, "before", f"{commit.label} visible={visible}"))

    def after_commit(self, commit: Commit) -> None:
        visible = any(r == commit.run.run_id for r, _ in self.store.find_runs())
        seqs = ",".join(str(e.seq) for e in commit.events)
        self.calls.append((self.name, "after", f"{commit.label} visible={visible} {seqs}"))


def test_hooks_run_in_order_before_and_after_the_commit_is_durable(store: Any) -> None:
    """Every hook's before_commit runs, in list order, before the commit is visible to
    readers; then every after_commit, in order, once it is, with the commit's events."""
    calls: list[tuple[str, str, str]] = []
    store.hooks.extend([Recorder("a", calls, store), Recorder("b", calls, store)])
    start(store, events=2)
    assert calls == [
        ("a", "before", "start visible=False"),
        ("b", "before", "start visible=False"),
        ("a", "after", "start visible=True 1,2"),
        ("b", "after", "start visible=True 1,2"),
    ]


class Raising:
    def __init__(self, when: str) -> None:
        self.when = when

    def before_commit(self, commit: Commit) -> None:
        if self.when == "before":
            raise RuntimeError("hook failed before")

    def after_commit(self, commit: Commit) -> None:
        if self.when == "after":
            raise RuntimeError("hook failed after")


def test_a_hook_failing_before_the_commit_leaves_nothing_written(store: Any) -> None:
    """An exception from before_commit aborts the commit: it propagates and nothing of the
    run is stored."""
    store.hooks.append(Raising("before"))
    with pytest.raises(RuntimeError, match="hook failed before"):
        start(store)
    store.hooks.clear()
    assert store.find_runs() == [] and store.count_events() == 0
    start(store)  # the same run id is free: nothing was kept
    assert [r for r, _ in store.find_runs()] == ["r1"]


def test_a_hook_failing_after_the_commit_never_fails_the_committed_run(
    store: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """An exception from after_commit is logged; the commit stands and later hooks still
    see it."""
    calls: list[tuple[str, str, str]] = []
    store.hooks.extend([Raising("after"), Recorder("late", calls, store)])
    start(store)
    assert [r for r, _ in store.find_runs()] == ["r1"]
    assert calls[-1][:2] == ("late", "after")
    assert "hook failed after" in caplog.text or "failed after run r1" in caplog.text


# --------------------------------------------------------------------------- export, import


@pytest.mark.parametrize("suffix", [".jsonl", ".sqlite3"])
def test_export_then_import_into_every_kind_of_store_keeps_everything(
    make: Any, tmp_path: Path, suffix: str
) -> None:
    """Runs exported from this store and imported into a store of each kind read back
    with the same frames, every attempt included; a second import skips them all."""
    from master_sdk.memory.transfer import export_store, import_store

    source = make()
    story(source)
    start(source, "r2", events=2)
    target = tmp_path / f"share{suffix}"
    report = export_store(source, target)
    assert report.runs == ("r1", "r2")
    for name, new in STORES.items():
        folder = tmp_path / f"into-{name}"
        folder.mkdir()
        other = new(folder)
        assert import_store(other, target).runs == ("r1", "r2")
        pd.testing.assert_frame_equal(frames.traces(other), frames.traces(source))
        pd.testing.assert_frame_equal(
            frames.steps(other, "r1", attempts=True), frames.steps(source, "r1", attempts=True)
        )
        pd.testing.assert_frame_equal(frames.approvals(other), frames.approvals(source))
        assert other.load("r2")[0].owner is None
        assert import_store(other, target).skipped == ("r1", "r2")
        other.close()


# --------------------------------------------------------------------------- threads


def test_many_threads_commit_and_read_at_once_without_errors(store: Any) -> None:
    """8 threads, each starting and advancing 25 runs while reading frames, finish with
    every run stored completed and no error."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def work(t: int) -> None:
        try:
            barrier.wait()
            for i in range(25):
                run = start(store, f"t{t}-{i}", events=2)
                advance(
                    store,
                    run,
                    Changes(steps={0: StepAttempt(0, "echo", "tool", "completed")}),
                    status="completed",
                )
                frames.traces(store, run_id=run.run_id)
                store.load(run.run_id)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert store.info()["runs_by_status"] == {"completed": 200}
    assert store.count_events() == 400


def test_replacing_the_steps_keeps_the_attempts_of_a_step_the_flow_dropped(store: Any) -> None:
    """A commit that replaces every step (a paused run resumed on a changed flow: step b
    moved to 0, step a gone): load shows the new steps only, attempts() still has a's."""
    run = start(store)
    advance(
        store,
        run,
        Changes(
            steps={
                0: StepAttempt(0, "a", "tool", "completed", 1, TS, TS + 1, {"x": 1}),
                1: StepAttempt(1, "b", "hitl", "waiting_approval", 1, TS + 2),
            }
        ),
    )
    advance(
        store,
        run,
        Changes(
            steps={0: StepAttempt(0, "b", "hitl", "waiting_approval", 1, TS + 2)},
            replace_steps=True,
        ),
    )
    _, steps = store.load("r1")
    assert [(s.idx, s.step_id) for s in steps] == [(0, "b")]
    every = store.attempts("r1")
    assert [(s.idx, s.step_id, s.status, s.output) for s in every] == [
        (0, "a", "completed", {"x": 1}),
        (0, "b", "waiting_approval", None),
    ]


# --------------------------------------------------------------------------- reviewing


def pause(store: Store, run_id: str, status: str, *, at: int, **state: Any) -> RunRecord:
    """A run that paused at ``at`` (its pending state and updated time)."""
    run = start(store, run_id)
    pending = {"step": "review", "kind": "hitl", "since_us": at, "show": {"x": SECRET}}
    advance(
        store, run, Changes(), status=status, updated_us=at, state={"pending": pending, **state}
    )
    return run


def test_pending_runs_lists_the_asked_statuses_oldest_first_with_filters(store: Any) -> None:
    """``pending_runs`` returns only runs in the statuses asked, oldest update first, with
    their step, since when, the show value as text (redacted as stored), experiment name
    and no reservation; product and flow filter; an empty status list returns nothing."""
    pause(store, "b", "waiting_input", at=TS + 20)
    pause(store, "a", "waiting_approval", at=TS + 10, experiment={"name": "exp1", "case": "c"})
    start(store, "running")
    rows = store.pending_runs(statuses=["waiting_approval", "waiting_input"])
    assert [r.run_id for r in rows] == ["a", "b"]
    first = rows[0]
    assert first.status == "waiting_approval" and first.experiment == "exp1"
    assert (first.step, first.since_us) == ("review", TS + 10)
    assert first.show == '{"x":"<SECRET>"}'  # JSON text, as stored (redacted)
    assert first.created_by == "ana" and first.reservation is None
    assert rows[1].experiment is None
    pause(store, "c", "waiting_input", at=TS + 30)
    run = start(store, "s")
    text = {"pending": {"step": "ask", "show": "plain é"}}
    advance(store, run, Changes(), status="waiting_input", updated_us=TS + 40, state=text)
    assert store.pending_runs(statuses=["waiting_input"])[-1].show == "plain é"
    assert [r.run_id for r in store.pending_runs(statuses=["waiting_input"])] == ["b", "c", "s"]
    assert store.pending_runs(statuses=["waiting_input"], product="other") == []
    assert store.pending_runs(statuses=[]) == []


def test_a_reservation_is_granted_once_renewed_by_its_holder_and_free_after_expiry(
    store: Any,
) -> None:
    """The first reviewer gets the lease; a second is told who holds it; the holder renews
    or releases it; once expired anyone may take it; pending_runs shows it; an unknown run
    is NotFound."""
    pause(store, "a", "waiting_approval", at=TS)
    held = store.reserve("a", "ana", TS + 100, now_us=TS)
    assert (held.by, held.until_us) == ("ana", TS + 100)
    assert store.reserve("a", "bob", TS + 200, now_us=TS + 1).by == "ana"
    assert store.reserve("a", "ana", TS + 300, now_us=TS + 2).until_us == TS + 300
    assert store.reservation("a").until_us == TS + 300
    (row,) = store.pending_runs(statuses=["waiting_approval"])
    assert row.reservation is not None and row.reservation.by == "ana"
    taken = store.reserve("a", "bob", TS + 900, now_us=TS + 300)  # expired: free again
    assert (taken.by, taken.until_us) == ("bob", TS + 900)
    released = store.reserve("a", "bob", TS, now_us=TS + 400)
    assert released.until_us == TS + 400  # ends now
    assert store.reserve("a", "ana", TS + 500, now_us=TS + 401).by == "ana"
    with pytest.raises(ms.NotFound):
        store.reserve("nope", "ana", TS + 1, now_us=TS)
    assert store.reservation("nope") is None


def test_two_threads_reserving_at_once_one_gets_the_lease(store: Any) -> None:
    """Reservations are atomic: of many reviewers reserving the same run at the same moment,
    exactly one holds it afterwards and every caller is told that one."""
    pause(store, "a", "waiting_approval", at=TS)
    barrier = threading.Barrier(8)
    seen: list[str] = []

    def take(name: str) -> None:
        barrier.wait()
        seen.append(store.reserve("a", name, TS + 100, now_us=TS).by)

    threads = [threading.Thread(target=take, args=(f"r{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(seen)) == 1 and store.reservation("a").by == seen[0]


# --------------------------------------------------------------------------- lineage


def fork_of(store: Store, parent: str, run_id: str, at: str) -> RunRecord:
    run = new_run(run_id, parent_run_id=parent, forked_at=at)
    store.commit(run, Changes(events=[event(1, "run_started")]), expect_version=None, label="fork")
    return run


def test_a_forks_parent_and_fork_step_load_back_and_show_in_the_run_list(store: Any) -> None:
    """parent_run_id and forked_at are written with the new run, kept by later commits,
    and come back from load() and run_table(); a run not forked has neither."""
    start(store, "r1")
    fork = fork_of(store, "r1", "r2", "summary")
    advance(store, fork, Changes(), status="completed")
    loaded, _ = store.load("r2")
    assert (loaded.parent_run_id, loaded.forked_at) == ("r1", "summary")
    assert (store.load("r1")[0].parent_run_id, store.load("r1")[0].forked_at) == (None, None)
    table = store.run_table()
    assert list(table.run_id) == ["r2", "r1"]
    assert list(table.parent_run_id) == ["r1", None]
    assert list(table.forked_at) == ["summary", None]


def test_lineage_survives_export_and_import_into_every_kind_of_store(
    make: Any, tmp_path: Path
) -> None:
    """An exported fork (JSON Lines or SQLite) keeps its parent and fork step on import."""
    from master_sdk.memory.transfer import export_store, import_store

    source = make()
    start(source, "r1")
    fork_of(source, "r1", "r2", "summary")
    for suffix in (".jsonl", ".sqlite3"):
        target = tmp_path / f"lineage{suffix}"
        export_store(source, target)
        for name, new in STORES.items():
            folder = tmp_path / f"lineage-{name}{suffix}"
            folder.mkdir()
            other = new(folder)
            import_store(other, target)
            assert other.load("r2")[0].parent_run_id == "r1"
            assert other.load("r2")[0].forked_at == "summary"
            other.close()


# --------------------------------------------------------------------------- retention


def aged(store: Store, run_id: str, status: str, *, days_old: int) -> RunRecord:
    """A run with a step, two events and an approval, last updated ``days_old`` days
    before TS, now in ``status``."""
    run = start(store, run_id, events=2)
    at = TS - days_old * 86_400_000_000
    advance(
        store,
        run,
        Changes(
            steps={0: StepAttempt(0, "echo", "tool", "completed", 1, at, at, {"ok": 1})},
            approvals=[ApprovalRecord("ok", "approved", "bo", None, at)],
        ),
        status=status,
        updated_us=at,
    )
    return run


def test_prune_removes_old_ended_runs_with_their_rows_and_keeps_the_rest(store: Any) -> None:
    """By default prune removes only ended runs last updated before the cutoff, with their
    attempts, events and approvals; paused, running, failed and recent runs stay."""
    aged(store, "old-done", "completed", days_old=100)
    aged(store, "old-rejected", "rejected", days_old=100)
    aged(store, "old-paused", "waiting_approval", days_old=100)
    aged(store, "old-running", "running", days_old=100)
    aged(store, "old-failed", "failed", days_old=100)
    aged(store, "new-done", "completed", days_old=10)
    cutoff = TS - 90 * 86_400_000_000

    dry = store.prune(before_us=cutoff, statuses=PRUNED_BY_DEFAULT, dry_run=True)
    assert (dry.dry_run, dry.runs, dry.by_status) == (
        True, 2, {"completed": 1, "rejected": 1},
    )  # fmt: skip
    assert (dry.attempts, dry.events, dry.approvals, dry.inputs) == (2, 4, 2, 0)
    assert len(store.find_runs()) == 6  # a dry run writes nothing

    done = store.prune(before_us=cutoff, statuses=PRUNED_BY_DEFAULT)
    assert (done.dry_run, done.runs, done.by_status) == (False, 2, dry.by_status)
    assert (done.attempts, done.events, done.approvals) == (2, 4, 2)
    assert sorted(r for r, _ in store.find_runs()) == [
        "new-done", "old-failed", "old-paused", "old-running",
    ]  # fmt: skip
    for gone in ("old-done", "old-rejected"):
        with pytest.raises(ms.NotFound):
            store.load(gone)
        assert store.step_attempts(gone) == []
    assert store.count_events() == 4 * 2
    assert {a.run_id for a in store.approvals()} == {
        "new-done", "old-failed", "old-paused", "old-running",
    }  # fmt: skip
    assert store.flow_source("h1") is not None  # flow texts are kept
    again = store.prune(before_us=cutoff, statuses=PRUNED_BY_DEFAULT)
    assert again.runs == 0


def test_prune_takes_paused_or_running_runs_only_when_their_status_is_named(store: Any) -> None:
    """A paused or running run goes only when its status is asked for explicitly."""
    aged(store, "old-paused", "waiting_approval", days_old=100)
    aged(store, "old-done", "completed", days_old=100)
    cutoff = TS - 90 * 86_400_000_000
    done = store.prune(before_us=cutoff, statuses=("waiting_approval",))
    assert done.by_status == {"waiting_approval": 1}
    assert [r for r, _ in store.find_runs()] == ["old-done"]


def test_prune_keeps_runs_an_experiment_holds_and_counts_them(store: Any) -> None:
    """A run that is a case of an experiment is kept (its results read it) and counted."""
    from master_sdk.memory.experiments import CaseRecord, CaseUpdate, ExperimentRecord

    aged(store, "held", "completed", days_old=100)
    aged(store, "free", "completed", days_old=100)
    store.create_experiment(
        ExperimentRecord("exp", "demo/f", "h1", "1.0", "running", TS, TS),
        [CaseRecord("c0", 0, {"text": "t"})],
    )
    store.update_cases("exp", [CaseUpdate("c0", run_id="held")])
    done = store.prune(before_us=TS, statuses=PRUNED_BY_DEFAULT)
    assert (done.runs, done.kept_in_experiments) == (1, 1)
    assert [r for r, _ in store.find_runs()] == ["held"]
    assert [c.run_id for c in store.experiment_cases("exp")] == ["held"]


def test_claim_leases_the_oldest_free_runs_and_skips_ones_others_hold(store: Any) -> None:
    """A claim takes the oldest paused runs no lease holds (none, or expired), up to the
    limit; a run the claimer holds already is not claimed again; other statuses and flows
    are left alone."""
    pause(store, "p1", "waiting_approval", at=1)
    pause(store, "p2", "waiting_approval", at=2)
    pause(store, "p3", "waiting_approval", at=3)
    pause(store, "p4", "waiting_input", at=4)
    store.reserve("p1", "bo", TS + 1_000, now_us=TS)
    got = store.claim("ana", TS + 500, now_us=TS, statuses=["waiting_approval"], limit=5)
    assert [(c.run_id, c.by, c.until_us) for c in got] == [
        ("p2", "ana", TS + 500), ("p3", "ana", TS + 500),
    ]  # fmt: skip
    assert store.reservation("p1").by == "bo"
    assert store.claim("cy", TS + 500, now_us=TS, statuses=["waiting_approval"]) == []
    assert store.claim("ana", TS + 900, now_us=TS, statuses=["waiting_approval"]) == []
    assert store.reservation("p2").until_us == TS + 500
    later = store.claim("cy", TS + 3_000, now_us=TS + 2_000, statuses=["waiting_approval"])
    assert [c.run_id for c in later] == ["p1"]  # bo's lease has expired
    assert store.claim("cy", TS, now_us=TS, statuses=["waiting_input"], flow="other") == []


def test_reviewers_claiming_at_once_never_get_the_same_run(store: Any) -> None:
    """Eight threads claiming two runs each from twelve: every run goes to exactly one of
    them and no claim fails."""
    for i in range(12):
        pause(store, f"p{i}", "waiting_approval", at=i)
    barrier = threading.Barrier(8)
    got: dict[str, list[str]] = {}
    errors: list[BaseException] = []

    def reviewer(name: str) -> None:
        barrier.wait()
        try:
            claimed = store.claim(name, TS + 10_000, now_us=TS, statuses=["waiting_approval"],
                                  limit=2)  # fmt: skip
            got[name] = [c.run_id for c in claimed]
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=reviewer, args=(f"r{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    taken = [run_id for ids in got.values() for run_id in ids]
    assert len(taken) == len(set(taken)) == 12
    for name, ids in got.items():
        assert all(store.reservation(r).by == name for r in ids)
