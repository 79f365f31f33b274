"""The golden path, through the public API."""

from __future__ import annotations

import pytest

import master_sdk as ms


def test_hello_world_pauses_for_approval_then_input_then_completes(wb: ms.Workbench) -> None:
    """A run stops at the approval, then at the input, and ends with a summary naming both."""
    run = wb.run("hello_world/greet", inputs={"text": "Hello from a notebook"})
    assert run.status == "waiting_approval"
    assert run.waiting_for is not None
    assert run.waiting_for["step"] == "review"
    assert run.waiting_for["show"] == {"text": "Hello from a notebook"}

    run.approve(comment="looks fine", by="ana")
    assert run.status == "waiting_input"
    assert run.waiting_for is not None and run.waiting_for["step"] == "audience"

    run.submit({"audience": "the board"}, by="ana")
    assert run.status == "completed"
    assert "the board" in run.output["summary"]
    assert "Hello from a notebook" in run.output["summary"]
    assert run.output["audience"] == "the board"


def test_rejecting_the_review_ends_the_run_as_rejected(wb: ms.Workbench) -> None:
    """on_reject: stop ends the run as rejected; nothing after the review runs."""
    run = wb.run("hello_world/greet", inputs={"text": "nope"})
    run.reject("not this one", by="ana")
    assert run.status == "rejected"
    events = list(run.trace()["event"])
    assert "run_rejected" in events
    assert "model_called" not in events
    approvals = wb.approvals()
    assert list(approvals["decision"]) == ["rejected"]
    assert list(approvals["by"]) == ["ana"]
    assert list(approvals["comment"]) == ["not this one"]


def test_invalid_user_input_lists_every_field_and_changes_nothing(wb: ms.Workbench) -> None:
    """submit() with bad data raises InputInvalid naming fields; the stored run is as before."""
    run = wb.run("hello_world/greet", inputs={"text": "x"})
    run.approve()
    before = wb.get_run(run.id)
    events_before = len(run.trace())
    with pytest.raises(ms.InputInvalid) as caught:
        run.submit({"audience": ""})
    assert [e.path for e in caught.value.errors] == ["audience"]
    assert caught.value.errors[0].message == "must not be blank"
    with pytest.raises(ms.InputInvalid) as missing:
        run.submit({})
    assert [e.path for e in missing.value.errors] == ["audience"]
    after = wb.get_run(run.id)
    assert after.status == before.status == "waiting_input"
    assert len(after.trace()) == events_before


def test_invalid_flow_inputs_are_refused_before_anything_is_stored(wb: ms.Workbench) -> None:
    """Inputs failing the flow's schema raise InputInvalid and create no run."""
    with pytest.raises(ms.InputInvalid) as caught:
        wb.run("hello_world/greet", inputs={"text": "", "extra": 1})
    paths = sorted(e.path for e in caught.value.errors)
    assert paths == ["extra", "text"]
    assert len(wb.runs()) == 0


def test_acting_on_a_run_not_paused_for_it_is_a_clear_error(wb: ms.Workbench) -> None:
    """approve on a run waiting for input, submit on one waiting for approval: NotWaiting."""
    run = wb.run("hello_world/greet", inputs={"text": "x"})
    with pytest.raises(ms.NotWaiting, match="not waiting for input"):
        run.submit({"audience": "a"})
    run.approve()
    with pytest.raises(ms.NotWaiting, match="waiting_input, not waiting for approval"):
        run.approve()
    assert wb.get_run(run.id).status == "waiting_input"


def test_trace_records_every_step_tool_model_approval_and_input(wb: ms.Workbench) -> None:
    """The trace has one event per step boundary, call, decision and input, with ids."""
    run = wb.run("hello_world/greet", inputs={"text": "hi"})
    run.approve(by="ana")
    run.submit({"audience": "board"}, by="ana")
    trace = run.trace()
    assert list(trace["seq"]) == list(range(1, len(trace) + 1))
    events = list(trace["event"])
    for needed in (
        "run_started",
        "step_started",
        "step_completed",
        "tool_called",
        "model_called",
        "approval_requested",
        "approval_decided",
        "input_requested",
        "input_received",
        "run_completed",
    ):
        assert needed in events, needed
    assert set(trace["run_id"]) == {run.id}
    assert set(trace["product"]) == {"hello_world"}
    assert set(trace["flow"]) == {"greet"}
    model = trace[trace["event"] == "model_called"].iloc[0]
    assert model["step_id"] == "summary"
    assert model["tokens_in"] > 0 and model["tokens_out"] > 0
    assert str(trace["ts"].dtype) == "datetime64[us, UTC]"


def test_budget_frame_reports_used_limit_remaining_and_percent(wb: ms.Workbench) -> None:
    """run.budget() has a row per budget with the product's limits."""
    run = wb.run("hello_world/greet", inputs={"text": "hi"})
    run.approve()
    run.submit({"audience": "board"})
    budget = run.budget().set_index("budget")
    assert list(budget.index) == ["steps", "tool_calls", "model_calls", "total_tokens", "cost_usd"]
    assert budget.loc["steps", "used"] == 4
    assert budget.loc["steps", "limit"] == 20
    assert budget.loc["tool_calls", "remaining"] == 4
    assert budget.loc["model_calls", "percent"] == pytest.approx(20.0)
    trace = run.trace()
    tokens = trace["tokens_in"].sum() + trace["tokens_out"].sum()
    assert budget.loc["total_tokens", "used"] == tokens


def test_runs_frame_lists_runs_newest_first_with_documented_columns(wb: ms.Workbench) -> None:
    """wb.runs() has stable columns, tz-aware timestamps and filters."""
    first = wb.run("hello_world/greet", inputs={"text": "a"})
    second = wb.run("hello_world/greet", inputs={"text": "b"})
    second.reject()
    runs = wb.runs()
    assert list(runs["run_id"]) == [second.id, first.id]
    assert list(runs.columns[:4]) == ["run_id", "product", "flow", "status"]
    assert str(runs["created_at"].dtype) == "datetime64[us, UTC]"
    assert list(wb.runs(status="waiting_approval")["run_id"]) == [first.id]
    assert list(runs["waiting_step"].fillna("")) == ["", "review"]


def test_get_run_in_a_new_workbench_shows_the_same_paused_state(wb: ms.Workbench) -> None:
    """A second Workbench on the same store sees and resumes the paused run."""
    run = wb.run("hello_world/greet", inputs={"text": "hi"})
    other = ms.Workbench.open(wb.root)
    try:
        again = other.get_run(run.id)
        assert again.status == "waiting_approval"
        assert again.waiting_for == run.waiting_for
        again.approve()
        again.submit({"audience": "team"})
        assert again.status == "completed"
    finally:
        other.close()
    assert run.refresh().status == "completed"


def test_an_audience_of_spaces_is_refused_in_plain_words(wb: ms.Workbench) -> None:
    """hello_world's audience must hold a non-space character; the error says so plainly."""
    run = wb.run("hello_world/greet", inputs={"text": "Hi"}).approve()
    with pytest.raises(ms.InputInvalid) as caught:
        run.submit({"audience": "   "})
    assert [(e.path, e.message) for e in caught.value.errors] == [
        ("audience", "must not be blank")
    ]
    assert run.status == "waiting_input"
    assert run.submit({"audience": " the board "}).status == "completed"
