"""wb.fork over an experiment: a new experiment of forks that wb.compare pairs with the
source by case key, on real SQLite files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import master_sdk as ms
from master_sdk.testing import FunctionModel
from tests.support.forks import answer, make_project


def short(case: dict[str, Any], output: dict[str, Any]) -> bool:
    """A scorer: the published url is short."""
    return len(output["url"]) < 25


CASES = [{"id": f"c{i}", "text": "word " * (i + 1)} for i in range(6)]


def test_an_experiment_forked_at_a_step_is_a_new_experiment_compare_pairs(
    tmp_path: Path,
) -> None:
    """Every case's run is forked (nothing before the fork step runs again), the case keys
    are kept, forks are scored, and wb.compare pairs them with the source's cases."""
    project = make_project(tmp_path)
    with project.open(FunctionModel(answer)) as wb:
        v1 = wb.evaluate("news/report", CASES, name="v1", scorers=[short], progress=False)
        assert v1.status == "completed"
        cleaned = project.calls().count("clean")
        project.set_prompt("Tell it at length:")
        v2 = wb.fork(v1, at="summary", name="v2", scorers=[short])
        assert v2.status == "completed"
        assert project.calls().count("clean") == cleaned
        results = v2.results.set_index("case_key")
        assert list(results.index) == [c["id"] for c in CASES]
        assert (results["status"] == "completed").all()
        parents = v1.results.set_index("case_key")["run_id"]
        runs = wb.runs().set_index("run_id")
        assert [runs.loc[r, "parent_run_id"] for r in results["run_id"]] == list(parents)
        assert set(runs.loc[list(results["run_id"]), "forked_at"]) == {"summary"}
        comparison = wb.compare("v1", "v2")
        cases = comparison.cases.set_index("case_key")
        assert list(cases.index) == [c["id"] for c in CASES]
        assert cases["output_changed"].all()
        assert "short_delta" in cases.columns
        assert wb.experiment("v2").record.params["forked_from"] == "v1"


def test_human_steps_of_forked_cases_are_answered_again_or_left_waiting(
    tmp_path: Path,
) -> None:
    """Forks of a flow with a human step after the fork point ask again: answered from
    answers=, or left paused (the experiment is then waiting)."""
    project = make_project(tmp_path)
    with project.open(FunctionModel(answer)) as wb:
        cases = [{"id": "a", "text": "one"}, {"id": "b", "text": "two"}]
        v1 = wb.evaluate(
            "news/reviewed",
            cases,
            name="r1",
            answers={"review": "approve", "check": "approve"},
            progress=False,
        )
        assert v1.status == "completed"
        waiting = wb.fork(v1, at="summary", name="r2")
        assert waiting.status == "waiting"
        assert set(waiting.results["status"]) == {"waiting_approval"}
        answered = wb.fork(v1, at="summary", name="r3", answers={"check": "approve"})
        assert answered.status == "completed"
        assert len(wb.approvals()) == 2 * 2 + 2  # the source's four and r3's two: none reused


def test_one_case_that_cannot_be_forked_refuses_the_experiment_fork(tmp_path: Path) -> None:
    """A case whose run is paused before the fork step refuses the whole fork: no new
    experiment and no new run."""
    project = make_project(tmp_path)
    with project.open(FunctionModel(answer)) as wb:
        cases = [{"id": "a", "text": "one"}, {"id": "b", "text": "two"}]
        v1 = wb.evaluate(
            "news/reviewed",
            cases,
            name="p1",
            answers=lambda case, step: "approve" if case["id"] == "a" else None,
            progress=False,
        )
        runs = len(wb.runs())
        with pytest.raises(ms.RunError, match="did not finish"):
            wb.fork(v1, at="summary", name="p2")
        assert len(wb.runs()) == runs
        with pytest.raises(ms.NotFound):
            wb.experiment("p2")
        with pytest.raises(ms.MasterError, match="name="):
            wb.fork(v1, at="review")


class _Events:
    """A commit hook keeping every committed event's name, step, tokens and cost."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str | None, int | None, float | None]] = []

    def before_commit(self, commit: object) -> None:
        pass

    def after_commit(self, commit: object) -> None:
        self.events.extend(
            (e.event, e.step_id, e.tokens_in, e.cost_usd)
            for e in commit.events  # type: ignore[attr-defined]
        )


def test_a_judges_calls_on_forked_cases_are_traced_in_the_forks_runs(tmp_path: Path) -> None:
    """As in wb.evaluate: each judge call is a model_called event of a `judge:<scorer>`
    step in the fork's run, with the tokens and cost of the results' columns, committed
    through the hooks; the fork's own usage stays the flow's."""
    project = make_project(tmp_path)
    (project.root / "configs" / "models.yaml").write_text(
        "models:\n  default: {provider: fake}\n  other: {provider: fake, model: priced-fake}\n"
        "  banned: {provider: fake}\nprices:\n  priced-fake: {input: 1.0, output: 2.0}\n",
        encoding="utf-8",
    )
    judge = FunctionModel(lambda request: {"score": 0.5, "reason": "fair"})
    hook = _Events()
    providers = {"default": FunctionModel(answer), "other": judge, "banned": judge}
    with ms.Workbench.open(project.root, providers=providers, hooks=[hook]) as wb:  # type: ignore[arg-type]
        v1 = wb.evaluate("news/report", CASES[:3], name="v1", progress=False)
        rubric = ms.scorers.llm_judge("Short enough?", model="other", name="quality")
        v2 = wb.fork(v1, at="summary", name="v2", scorers=[rubric])
        results = v2.results
        trace = wb.traces(product="news")
        runs = wb.runs().set_index("run_id")
    assert results["quality"].tolist() == [0.5] * 3
    calls = trace[(trace["event"] == "model_called") & (trace["step_id"] == "judge:quality")]
    assert sorted(calls["run_id"]) == sorted(results["run_id"])
    by_run = calls.set_index("run_id")
    for _, row in results.iterrows():
        judged = by_run.loc[row["run_id"]]
        assert judged["tokens_in"] + judged["tokens_out"] == row["quality.tokens"] > 0
        assert (
            judged["cost_usd"] == pytest.approx(row["quality.cost_usd"]) and judged["cost_usd"] > 0
        )
        assert runs.loc[row["run_id"], "cost_usd"] == 0  # the flow's model has no price
    steps = trace[trace["step_id"] == "judge:quality"]["event"].tolist()
    assert steps.count("step_started") == steps.count("step_completed") == 3
    seen = [e for e in hook.events if e[0] == "model_called" and e[1] == "judge:quality"]
    assert len(seen) == 3 and all(e[3] for e in seen)
