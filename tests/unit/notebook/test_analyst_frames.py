"""The frames an analyst iterating on a product needs: steps across runs, human waiting
times, one dtype per column name."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd

import master_sdk as ms


def _complete(wb: ms.Workbench, text: str) -> ms.Run:
    run = wb.run("hello_world/greet", inputs={"text": text})
    run.approve(comment="ok", by="ana")
    return run.submit({"audience": "board"}, by="ana")


def test_steps_across_runs_filtered_by_product_flow_status_and_since(wb: ms.Workbench) -> None:
    """wb.steps() is every run's steps in one frame; the filters work like traces()'."""
    done = [_complete(wb, f"text {i}") for i in range(2)]
    paused = wb.run("hello_world/greet", inputs={"text": "later"})
    frame = wb.steps(product="hello_world", flow="greet")
    assert len(frame) == 4 * 2 + 2  # the paused run reached echo and review
    assert set(frame["run_id"]) == {*(r.id for r in done), paused.id}
    completed = wb.steps(status="completed")
    assert set(completed["run_id"]) == {r.id for r in done}
    waiting = wb.steps(status="waiting_approval")
    assert waiting["step_id"].tolist() == ["echo", "review"]
    assert wb.steps(product="nothing").empty
    future = datetime.now(UTC) + timedelta(hours=1)
    assert wb.steps(since=future).empty
    assert len(wb.steps(since="2000-01-01")) == len(frame)
    one = wb.steps(done[0].id)
    assert one["run_id"].unique().tolist() == [done[0].id]
    assert one.columns.tolist() == frame.columns.tolist()


def test_human_steps_have_durations_in_the_trace(wb: ms.Workbench) -> None:
    """step_completed of hitl/user_input steps, approval_decided and input_received carry
    how long the run waited for a person."""
    run = _complete(wb, "wait for me")
    trace = run.trace()
    human = trace[trace["step_type"].isin(["hitl", "user_input"])]
    for event in ("step_completed", "approval_decided", "input_received"):
        rows = human[human["event"] == event]
        assert len(rows) >= 1, event
        assert rows["duration_ms"].notna().all(), event
        assert (rows["duration_ms"] >= 0).all(), event
    steps = run.steps().set_index("step_id")
    completed = human[human["event"] == "step_completed"].set_index("step_id")
    for step in ("review", "audience"):
        assert abs(completed.loc[step, "duration_ms"] - steps.loc[step, "duration_ms"]) < 50
    by_step = wb.traces()
    ended = by_step[by_step["event"] == "step_completed"]
    assert ended.groupby("step_id", observed=True)["duration_ms"].count().min() >= 1


def test_a_column_has_one_dtype_in_every_frame(wb: ms.Workbench) -> None:
    """run_id, step_id, product, flow, status... are typed alike wherever they appear, so
    merges keep their dtype."""
    run = _complete(wb, "types")
    frames = {
        "runs": wb.runs(),
        "traces": wb.traces(),
        "steps": wb.steps(),
        "run.steps": run.steps(),
        "approvals": wb.approvals(),
    }
    seen: dict[str, tuple[str, str]] = {}
    for label, frame in frames.items():
        for column, dtype in frame.dtypes.items():
            name = getattr(dtype, "name", str(dtype))
            if column in seen:
                assert name == seen[column][1], (column, label, seen[column])
            else:
                seen[column] = (label, name)
    assert seen["run_id"][1] == "string" and seen["step_id"][1] == "string"
    merged = frames["traces"].merge(frames["steps"], on=["run_id", "step_id"])
    assert str(merged["run_id"].dtype) == "string"
    assert str(merged["step_id"].dtype) == "string"
    with_runs = frames["traces"].merge(frames["runs"][["run_id", "created_by"]], on="run_id")
    assert str(with_runs["run_id"].dtype) == "string"
    assert len(with_runs) == len(frames["traces"])
    assert isinstance(frames["traces"]["step_id"].dtype, pd.StringDtype)
