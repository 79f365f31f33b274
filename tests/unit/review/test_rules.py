"""Team rules in policy: approvers, four eyes, reservations; tighten-only; a refused
decision says who, which rule and what to do, is traced as ``policy_violation`` and
changes nothing else."""

from __future__ import annotations

import pytest

import master_sdk as ms
from tests.conftest import Project

FLOW = """
id: f
policy:
  {policy}
steps:
  - {{id: a, type: tool, tool: echo, input: {{text: hi}}}}
  - id: review
    type: hitl
    prompt: Go on?
    show: "{{{{ steps.a.output }}}}"
  - {{id: b, type: tool, tool: echo, input: {{text: done}}}}
"""


def bench(project: Project, policy: str = "{}", platform: str = "") -> ms.Workbench:
    project.flow("f", FLOW.format(policy=policy))
    if platform:
        (project.root / "configs" / "policy.yaml").write_text(
            f"policy:\n  {platform}\n", encoding="utf-8"
        )
    return project.open()


def refusals(run: ms.Run) -> list[dict[str, object]]:
    trace = run.trace()
    return list(trace.loc[trace["event"] == "policy_violation", "attrs"])


def test_only_the_listed_approvers_may_decide_and_a_refusal_changes_nothing_else(
    project: Project,
) -> None:
    """``approvers: [ana]``: bob's approval is refused naming him, the rule and who may
    decide; the run still waits, no approval is stored, the trace holds the violation;
    ana's approval then goes through."""
    wb = bench(project, "approvers: [ana]")
    run = wb.run("demo/f", by="carl")
    version = run.trace()["seq"].max()
    with pytest.raises(ms.DecisionRefused) as refused:
        run.approve("ok", by="bob")
    assert refused.value.rule == "approvers"
    assert "bob may not decide" in str(refused.value) and "ana" in str(refused.value)
    run.refresh()
    assert run.status == "waiting_approval" and wb.approvals().empty
    (violation,) = refusals(run)
    assert violation["rule"] == "approvers" and violation["by"] == "bob"
    assert run.trace()["seq"].max() == version + 1  # the violation event, nothing else
    run.approve("ok", by="ana")
    assert run.status == "completed"


def test_approvers_per_step_and_the_star_default(project: Project) -> None:
    """A mapping names approvers per step; ``'*'`` covers the steps it does not name."""
    wb = bench(project, "approvers: {review: [dana], '*': [ana]}")
    run = wb.run("demo/f")
    with pytest.raises(ms.DecisionRefused, match="dana"):
        run.approve(by="ana")
    run.approve(by="dana")
    assert run.status == "completed"


def test_four_eyes_refuses_the_starter_and_accepts_another_reviewer(project: Project) -> None:
    """``four_eyes: true``: who started the run may not approve it; someone else may."""
    wb = bench(project, "four_eyes: true")
    run = wb.run("demo/f", by="ana")
    with pytest.raises(ms.DecisionRefused, match="four_eyes") as refused:
        run.approve(by="ana")
    assert refused.value.rule == "four_eyes" and "another reviewer" in str(refused.value)
    assert refusals(run)[0]["rule"] == "four_eyes"
    run.approve(by="bob")
    assert run.status == "completed"


def test_a_reservation_refuses_other_reviewers_until_released(project: Project) -> None:
    """A run reserved by ana: bob may neither reserve nor decide it (told who holds it);
    ana may; once released (minutes=0) bob may decide it; the pending list shows the lease."""
    wb = bench(project)
    run = wb.run("demo/f")
    lease = run.reserve(10, by="ana")
    assert lease.by == "ana"
    assert wb.pending()["reserved_by"].tolist() == ["ana"]
    with pytest.raises(ms.DecisionRefused, match="ana holds it"):
        wb.reserve(run.id, 5, by="bob")
    with pytest.raises(ms.DecisionRefused, match="ana reserved it") as refused:
        run.approve(by="bob")
    assert refused.value.rule == "reservation"
    wb.reserve(run.id, 0, by="ana")
    assert wb.pending()["reserved_by"].isna().all()
    run.approve(by="bob")
    assert run.status == "completed"


def test_an_expired_reservation_is_free_again(project: Project) -> None:
    """A lease that ended (here one reserved for a tiny fraction of a minute, waited out)
    no longer refuses anyone."""
    wb = bench(project)
    run = wb.run("demo/f")
    wb.reserve(run.id, 1e-6, by="ana")
    import time

    deadline = time.monotonic() + 5
    while wb.pending()["reserved_by"].notna().any():
        assert time.monotonic() < deadline
    run.approve(by="bob")
    assert run.status == "completed"


def test_reservations_are_capped_by_policy_and_need_a_paused_run(project: Project) -> None:
    """``max_reservation_minutes`` caps a lease (refused above it); a run that does not
    wait cannot be reserved."""
    wb = bench(project, "max_reservation_minutes: 15")
    run = wb.run("demo/f")
    with pytest.raises(ms.DecisionRefused, match="at most 15"):
        run.reserve(30, by="ana")
    run.approve(by="ana")
    with pytest.raises(ms.NotWaiting):
        run.reserve(5, by="ana")


def test_team_rules_only_tighten(project: Project) -> None:
    """A flow may narrow the platform's approvers and turn four_eyes on, never widen the
    approvers, turn four_eyes off or raise max_reservation_minutes (FlowError naming the
    field)."""
    wb = bench(project, "approvers: [zed]", platform="approvers: [ana, bob]")
    with pytest.raises(ms.FlowError, match=r"policy\.approvers"):
        wb.run("demo/f")
    wb.close()
    wb = bench(project, "four_eyes: false", platform="four_eyes: true")
    with pytest.raises(ms.FlowError, match="four_eyes"):
        wb.run("demo/f")
    wb.close()
    wb = bench(project, "max_reservation_minutes: 90", platform="max_reservation_minutes: 30")
    with pytest.raises(ms.FlowError, match="max_reservation_minutes"):
        wb.run("demo/f")
    wb.close()
    wb = bench(project, "approvers: [bob]\n  four_eyes: true", platform="approvers: [ana, bob]")
    run = wb.run("demo/f", by="ana")
    with pytest.raises(ms.DecisionRefused, match="approvers"):
        run.approve(by="ana")
    run.approve(by="bob")
    assert run.status == "completed"
