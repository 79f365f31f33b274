"""wb.evaluate end to end on real SQLite stores: results, scores, answers, caps, compare."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

import master_sdk as ms
from master_sdk.errors import MasterError, PolicyViolation
from master_sdk.memory.experiments import ExperimentExists
from master_sdk.models.providers.fake import FakeProvider
from tests.support.experiments import LabelModel, open_triage, triage_cases


@pytest.fixture
def model() -> LabelModel:
    return LabelModel()


@pytest.fixture
def wb(tmp_path: Path, model: LabelModel) -> Iterator[ms.Workbench]:
    bench = open_triage(tmp_path / "proj", providers={"default": model, "judge": model})
    yield bench
    bench.close()


EXACT = ms.scorers.exact("label", expected="expected_label")


def test_every_case_is_a_tagged_durable_run_with_its_scores(
    wb: ms.Workbench, model: LabelModel
) -> None:
    """One run per case, tagged with experiment and key; results carry outputs and scores."""
    exp = wb.evaluate("triage/classify", triage_cases(12), name="v1", scorers=[EXACT])
    results = exp.results
    assert len(results) == 12
    assert list(results["case_key"]) == [f"c{i}" for i in range(12)]
    assert set(results["status"]) == {"completed"}
    assert results["exact_label"].tolist() == [1.0] * 12
    assert results["output.tag"].iloc[0] == "#spam"
    assert results["total_tokens"].iloc[0] == 15
    assert results["duration_ms"].notna().all()
    assert model.calls == 12
    for column in ("case_key", "case_index", "run_id", "status", "tokens_in", "tokens_out",
                   "cost_usd", "duration_ms", "error"):  # fmt: skip
        assert column in results.columns
    run = wb.get_run(results["run_id"].iloc[3])
    assert run.status == "completed"
    runs = exp.runs()
    assert sorted(runs["case_key"]) == sorted(results["case_key"])
    assert exp.status == "completed"


def test_invalid_rows_are_reported_with_every_failing_field_and_do_not_stop_others(
    wb: ms.Workbench,
) -> None:
    """A row failing the inputs schema is 'invalid' with each field named; others run."""
    cases = [
        *triage_cases(3),
        {"case_key": "bad", "text": "", "style": "v9", "expected_label": "ham"},
    ]
    exp = wb.evaluate("triage/classify", cases, name="with-bad", scorers=[EXACT])
    results = exp.results.set_index("case_key")
    assert results.loc["bad", "status"] == "invalid"
    error = results.loc["bad", "error"]
    assert "text" in error and "style" in error
    assert (results.drop("bad")["status"] == "completed").all()


def test_extra_columns_reach_scorers_but_not_the_run(wb: ms.Workbench) -> None:
    """expected_label is not an input of the flow: the run's inputs hold text and style."""
    exp = wb.evaluate("triage/classify", triage_cases(1), name="cols", scorers=[EXACT])
    run = wb.get_run(exp.results["run_id"].iloc[0])
    assert run.inputs == {"text": "win money now, offer 0", "style": "v1"}


def test_a_dataframe_works_like_a_list_of_dicts(wb: ms.Workbench) -> None:
    """cases may be a DataFrame."""
    frame = pd.DataFrame(triage_cases(4))
    exp = wb.evaluate("triage/classify", frame, name="frame", scorers=[EXACT])
    assert exp.results["exact_label"].sum() == 4


def test_a_raising_scorer_marks_its_cases_and_the_experiment_completes(
    wb: ms.Workbench,
) -> None:
    """The error column names the scorer; other scores are present."""

    def fragile(case: dict[str, object], output: dict[str, object]) -> float:
        if case["case_key"] == "c1":
            raise ValueError("cannot score c1")
        return 1.0

    exp = wb.evaluate("triage/classify", triage_cases(3), name="fragile", scorers=[fragile, EXACT])
    results = exp.results.set_index("case_key")
    assert "scorer fragile: ValueError: cannot score c1" in results.loc["c1", "error"]
    assert pd.isna(results.loc["c1", "fragile"])
    assert results.loc["c1", "exact_label"] == 1.0
    assert results.loc["c0", "fragile"] == 1.0
    assert exp.status == "completed"


def test_names_are_unique_per_store(wb: ms.Workbench) -> None:
    """A second experiment with the same name is refused, pointing at resume()."""
    wb.evaluate("triage/classify", triage_cases(1), name="dup", progress=False)
    with pytest.raises(ExperimentExists, match="resume"):
        wb.evaluate("triage/classify", triage_cases(1), name="dup", progress=False)


def test_an_experiment_reopens_in_a_new_workbench(wb: ms.Workbench, tmp_path: Path) -> None:
    """wb.experiment(name) after a 'restart' shows the same results; experiments() lists it."""
    exp = wb.evaluate("triage/classify", triage_cases(5), name="keep", scorers=[EXACT])
    before = exp.results
    with open_triage(tmp_path / "proj") as again:
        reopened = again.experiment("keep")
        pd.testing.assert_frame_equal(reopened.results, before)
        listed = again.experiments()
        assert listed.loc[0, "name"] == "keep"
        assert listed.loc[0, "status"] == "completed"
        assert listed.loc[0, "cases"] == 5
        assert listed.loc[0, "flow_hash"] == exp.record.flow_hash
        with pytest.raises(ms.NotFound, match=r"wb\.experiments"):
            again.experiment("nope")


def test_summary_has_means_with_intervals_pass_rate_cost_latency_and_counts(
    wb: ms.Workbench,
) -> None:
    """summary(): one row per figure with the documented columns."""
    wrong = ms.scorers.exact("label", value="ham", name="always_ham")
    exp = wb.evaluate("triage/classify", triage_cases(30), name="sum", scorers=[EXACT, wrong])
    summary = exp.summary().set_index("metric")
    assert list(exp.summary().columns) == ["metric", "kind", "value", "ci_low", "ci_high", "n"]
    assert summary.loc["exact_label", "value"] == 1.0
    assert summary.loc["always_ham", "value"] == pytest.approx(20 / 30)
    low, high = summary.loc["always_ham", ["ci_low", "ci_high"]]
    assert low < 20 / 30 < high
    assert summary.loc["pass_rate", "value"] == pytest.approx(20 / 30)
    assert summary.loc["completed", "value"] == 30
    assert summary.loc["p95_ms", "value"] >= summary.loc["p50_ms", "value"]
    assert "exact_label" in exp._repr_mimebundle_()["text/plain"]


def test_scripted_answers_drive_approvals_and_inputs(wb: ms.Workbench) -> None:
    """answers= approves and submits; each run completes with the answer recorded."""
    answers = {"check": "approve", "note": {"note": "fine"}}
    exp = wb.evaluate("triage/review", triage_cases(4), name="answered", answers=answers)
    assert set(exp.results["status"]) == {"completed"}
    approvals = wb.approvals()
    assert len(approvals) == 4 and set(approvals["decision"]) == {"approved"}


def test_a_callable_answer_decides_per_case(wb: ms.Workbench) -> None:
    """answers=f(case, step): reject the spam, approve the rest."""

    def answer(case: dict[str, object], step: dict[str, object]) -> object:
        if step["step"] == "check":
            return "reject" if case["expected_label"] == "spam" else "approve"
        return {"note": f"ok {case['case_key']}"}

    exp = wb.evaluate("triage/review", triage_cases(6), name="callable", answers=answer)
    statuses = exp.results.set_index("case_key")["status"]
    assert statuses["c0"] == "rejected" and statuses["c1"] == "completed"


def test_unanswered_runs_stay_paused_and_the_experiment_completes_when_answered(
    wb: ms.Workbench,
) -> None:
    """No answer for 'note': runs wait; answering them by hand completes the experiment."""
    exp = wb.evaluate("triage/review", triage_cases(3), name="paused", answers={"check": "approve"})
    assert set(exp.results["status"]) == {"waiting_input"}
    assert exp.status == "waiting"
    for run_id in exp.results["run_id"]:
        wb.get_run(run_id).submit({"note": "by hand"})
    assert exp.status == "completed"
    assert set(exp.results["status"]) == {"completed"}


def test_resume_with_answers_continues_paused_runs(wb: ms.Workbench, model: LabelModel) -> None:
    """resume(answers=...) answers the runs left paused; nothing else runs again."""
    exp = wb.evaluate("triage/review", triage_cases(3), name="later", progress=False)
    assert set(exp.results["status"]) == {"waiting_approval"}
    exp.resume(answers={"check": "approve", "note": {"note": "x"}}, progress=False)
    assert set(exp.results["status"]) == {"completed"}
    assert model.calls == 3


def test_the_cost_cap_blocks_the_experiment_before_a_call_passes_it(wb: ms.Workbench) -> None:
    """With an expensive model the cap is reached: the experiment ends blocked, with why."""
    exp = wb.evaluate(
        "triage/classify",
        triage_cases(40),
        name="capped",
        models={"default": "priced"},
        max_cost_usd=0.1,
        concurrency=2,
        progress=False,
    )
    assert exp.status == "blocked"
    assert "max_cost_usd=$0.1" in (exp.error or "")
    results = exp.results
    spent = results["cost_usd"].sum()
    assert spent <= 0.1 + 1e-9
    assert (results["status"] == "blocked").sum() >= 1
    # no new case started once the cap was reached
    assert (results["status"] == "pending").sum() > 0
    assert exp.record.params["models"] == {"default": "priced"}  # type: ignore[index]


def test_a_model_override_outside_the_allow_list_is_refused(
    wb: ms.Workbench, tmp_path: Path
) -> None:
    """models= names a configured model; an unknown one is refused before anything runs."""
    with pytest.raises(ms.ConfigError, match="nope"):
        wb.evaluate("triage/classify", triage_cases(1), name="x", models={"default": "nope"})
    policy = tmp_path / "proj" / "configs" / "policy.yaml"
    policy.write_text("policy:\n  allowed_models: [default]\n", encoding="utf-8")
    with open_triage(tmp_path / "proj") as strict, pytest.raises(PolicyViolation):
        strict.evaluate("triage/classify", triage_cases(1), name="y", models={"default": "judge"})


def test_an_unknown_backend_is_refused_with_the_ones_there_are(wb: ms.Workbench) -> None:
    """backend= is 'threads' or 'ray': anything else is refused before anything is stored."""
    with pytest.raises(MasterError, match=r"'threads'.*'ray'"):
        wb.evaluate("triage/classify", triage_cases(1), name="r", backend="spark")
    with pytest.raises(MasterError, match="backend='ray'"):
        wb.evaluate("triage/classify", triage_cases(1), name="r", workers=4)
    assert wb.experiments().empty


def test_rate_limits_back_the_experiment_off_and_no_case_fails_for_them(tmp_path: Path) -> None:
    """A fake answering 429 to a third of calls: every case completes; backoffs happened."""
    root = tmp_path / "proj"
    open_triage(root).close()
    (root / "configs" / "policy.yaml").write_text(
        "policy:\n  model_retries: {max_attempts: 3, backoff_s: 0.001, max_backoff_s: 0.01}\n"
    )
    fake = FakeProvider(rate_limit_rate=0.3, seed=7)
    with open_triage(root, providers={"default": fake}) as wb:
        exp = wb.evaluate(
            "triage/classify", triage_cases(60), name="429", concurrency=8, progress=False
        )
        assert set(exp.results["status"]) == {"completed"}
        assert fake.rate_limited > 0
        assert exp._runner is not None
        assert exp._runner.gate.state().backoffs >= 1
        retries = wb.traces(run_id=None)
        assert (retries["event"] == "model_retry").sum() == fake.rate_limited


def test_cancel_stops_new_cases_and_resume_finishes_without_repeating_calls(
    wb: ms.Workbench, model: LabelModel
) -> None:
    """cancel() on a background experiment; resume() runs only what is left."""
    release = threading.Event()
    started = threading.Event()
    slow = LabelModel()

    def gated_complete(request):  # type: ignore[no-untyped-def]
        started.set()
        release.wait(10)
        return LabelModel.complete(slow, request)

    slow.complete = gated_complete  # type: ignore[method-assign]
    wb.router._overrides["default"] = slow  # the same workbench, a slower model
    exp = wb.evaluate("triage/classify", triage_cases(20), name="stop", concurrency=2, wait=False)
    assert started.wait(10)
    cancelling = threading.Thread(target=exp.cancel)
    cancelling.start()
    release.set()
    cancelling.join(10)
    assert exp.status == "cancelled"
    done = (exp.results["status"] == "completed").sum()
    assert 0 < done < 20
    exp.resume(progress=False)
    assert set(exp.results["status"]) == {"completed"}
    assert slow.calls == 20
    assert max(slow.prompts.values()) == 1


def test_keyboard_interrupt_stops_cleanly_and_resume_completes(wb: ms.Workbench) -> None:
    """Ctrl-C during evaluate: cases in flight finish, the rest wait for resume()."""
    counting = LabelModel()
    main = threading.main_thread().ident
    sent = threading.Event()
    original = counting.complete

    def interrupt_once(request):  # type: ignore[no-untyped-def]
        if sent.is_set():
            # after the Ctrl-C, calls take a while, as real ones do: the cases still to run
            # cannot all finish before the main thread takes the signal on a loaded machine
            time.sleep(0.05)
        reply = original(request)
        if counting.calls >= 5 and not sent.is_set():
            sent.set()
            assert main is not None
            signal.pthread_kill(main, signal.SIGINT)
        return reply

    counting.complete = interrupt_once  # type: ignore[method-assign]
    wb.router._overrides["default"] = counting
    exp = wb.evaluate("triage/classify", triage_cases(60), name="ctrl-c", concurrency=2)
    assert exp.status == "interrupted"
    assert "KeyboardInterrupt" in (exp.error or "")
    statuses = exp.results["status"]
    assert (statuses == "pending").sum() > 0
    assert not statuses.isin(["failed", "interrupted"]).any()
    exp.resume(progress=False)
    assert set(exp.results["status"]) == {"completed"}
    assert counting.calls == 60 and max(counting.prompts.values()) == 1
    assert os.getpid() > 0


def test_compare_pairs_cases_and_reports_deltas_and_changed_fields(wb: ms.Workbench) -> None:
    """Two prompt styles: confidence changes on every case, labels do not."""
    conf = ms.scorers.scorer(lambda c, o: o["confidence"], name="confidence")
    wb.evaluate("triage/classify", triage_cases(20), name="a", scorers=[EXACT, conf])
    wb.evaluate("triage/classify", triage_cases(20, style="v2"), name="b", scorers=[EXACT, conf])
    comparison = wb.compare("a", "b")
    cases = comparison.cases
    assert len(cases) == 20
    assert cases["output_changed"].all()
    assert set(cases["changed_fields"]) == {"confidence"}
    assert cases["confidence_delta"].tolist() == pytest.approx([0.3] * 20)
    summary = comparison.summary.set_index("metric")
    assert summary.loc["confidence", "wins"] == 20
    assert summary.loc["exact_label", "ties"] == 20
    assert summary.loc["confidence", "ci_low"] == pytest.approx(0.3)
    assert "win/tie/loss 20/0/0" in repr(comparison)
    assert "background-color" in comparison._repr_mimebundle_()["text/html"]


def test_compare_on_a_column_pairs_tables_without_shared_keys(wb: ms.Workbench) -> None:
    """on= pairs by a case column when keys differ (hashed rows)."""
    rows = [{k: v for k, v in r.items() if k != "case_key"} | {"ticket": i}
            for i, r in enumerate(triage_cases(5))]  # fmt: skip
    wb.evaluate("triage/classify", rows, name="h1", progress=False)
    wb.evaluate("triage/classify", [r | {"style": "v2"} for r in rows], name="h2", progress=False)
    assert len(wb.compare("h1", "h2").cases) == 0
    assert len(wb.compare("h1", "h2", on="ticket").cases) == 5


def test_a_judge_grades_through_the_router_with_its_own_tokens_and_cost(
    tmp_path: Path,
) -> None:
    """llm_judge's score, reason, tokens and cost land in their own columns."""
    from master_sdk.testing import FunctionModel

    judge = FunctionModel(lambda request: {"score": 0.75, "reason": "mostly right"})
    with open_triage(tmp_path / "proj", providers={"default": LabelModel(), "judge": judge}) as wb:
        rubric = ms.scorers.llm_judge(
            "Is the label right?", model="judge", context=["expected_label"]
        )
        exp = wb.evaluate("triage/classify", triage_cases(3), name="judged", scorers=[rubric])
        results = exp.results
        assert results["judge"].tolist() == [0.75] * 3
        assert results["judge.reason"].iloc[0] == "mostly right"
        assert (results["judge.tokens"] > 0).all()
        assert "expected_label" in judge.calls[0].messages[-1].content


def test_outside_jupyter_progress_goes_to_stderr(
    wb: ms.Workbench, capsys: pytest.CaptureFixture[str]
) -> None:
    """progress=True prints the progress line (counts, rate, cost, ETA) to stderr only."""
    wb.evaluate("triage/classify", triage_cases(5), name="loud", progress=True)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "loud: 5/5 done, 0 paused, 0 failed" in captured.err
    assert "cases/s" in captured.err and "ETA" in captured.err


def test_a_judge_is_governed_by_the_flows_allow_list(tmp_path: Path) -> None:
    """A judge on a model the policy does not allow records a policy error per case."""
    root = tmp_path / "proj"
    open_triage(root).close()
    (root / "configs" / "policy.yaml").write_text("policy:\n  allowed_models: [default]\n")
    with open_triage(root, providers={"default": LabelModel()}) as wb:
        judge = ms.scorers.llm_judge("fine?", model="judge")
        exp = wb.evaluate("triage/classify", triage_cases(2), name="j", scorers=[judge, EXACT])
        results = exp.results
        assert results["exact_label"].tolist() == [1.0, 1.0]
        assert results["error"].str.contains("scorer judge:.*allowed_models", regex=True).all()


class _Events:
    """A commit hook keeping every committed event (what telemetry sees)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str | None, int | None, float | None]] = []
        self._lock = threading.Lock()

    def before_commit(self, commit: object) -> None:
        pass

    def after_commit(self, commit: object) -> None:
        with self._lock:
            self.events.extend(
                (e.event, e.step_id, e.tokens_in, e.cost_usd)
                for e in commit.events  # type: ignore[attr-defined]
            )


def test_a_judges_calls_are_traced_in_the_case_run_with_tokens_and_cost(tmp_path: Path) -> None:
    """Each judge call is a model_called event of a `judge:<scorer>` step in the case's
    run, with its tokens and cost, committed through the hooks like any model call; the
    run's own usage is the flow's (the judge's has its own columns)."""
    from master_sdk.testing import FunctionModel

    judge = FunctionModel(lambda request: {"score": 1.0, "reason": "right"})
    hook = _Events()
    providers = {"default": LabelModel(), "priced": judge}
    with open_triage(tmp_path / "proj", providers=providers, hooks=[hook]) as wb:
        rubric = ms.scorers.llm_judge("Right?", model="priced", name="quality")
        exp = wb.evaluate(
            "triage/classify", triage_cases(4), name="traced", scorers=[rubric], progress=False
        )
        results = exp.results
        trace = wb.traces(product="triage")
    calls = trace[(trace["event"] == "model_called") & (trace["step_id"] == "judge:quality")]
    assert sorted(calls["run_id"]) == sorted(results["run_id"])
    assert (calls["tokens_in"] > 0).all() and (calls["cost_usd"] > 0).all()
    by_run = calls.set_index("run_id")
    for _, row in results.iterrows():
        judged = by_run.loc[row["run_id"]]
        assert judged["tokens_in"] + judged["tokens_out"] == row["quality.tokens"]
        assert judged["cost_usd"] == pytest.approx(row["quality.cost_usd"])
    assert results["total_tokens"].tolist() == [15] * 4  # the flow's own call only
    steps = trace[trace["step_id"] == "judge:quality"]["event"].tolist()
    assert steps.count("step_started") == steps.count("step_completed") == 4
    seen = [e for e in hook.events if e[0] == "model_called" and e[1] == "judge:quality"]
    assert len(seen) == 4 and all(e[3] for e in seen)


def test_a_judges_calls_count_against_the_experiment_cost_cap(tmp_path: Path) -> None:
    """The cap covers judges: with a cheap flow and a priced judge, the experiment ends
    blocked by its cap once the judges' spending reaches it, never past it."""
    from master_sdk.testing import FunctionModel
    from tests.support.triage import write_triage

    root = write_triage(
        tmp_path / "proj",
        models="""
        models:
          default: {provider: fake}
          priced: {provider: fake, model: priced-fake, max_tokens: 20}
        prices:
          priced-fake: {input: 1000.0, output: 1000.0}
        """,
    )
    judge = FunctionModel(lambda request: {"score": 1.0, "reason": "ok"})
    with open_triage(root, providers={"default": LabelModel(), "priced": judge}) as wb:
        rubric = ms.scorers.llm_judge("Right?", model="priced", name="quality")
        exp = wb.evaluate(
            "triage/classify",
            triage_cases(30),
            name="judged-cap",
            scorers=[rubric],
            max_cost_usd=0.5,
            concurrency=2,
            progress=False,
        )
        results = exp.results
        assert exp.status == "blocked"
        assert "max_cost_usd=$0.5" in (exp.error or "")
    assert results["cost_usd"].fillna(0).sum() == 0  # the flow's model has no price
    spent = results["quality.cost_usd"].fillna(0).sum()
    assert 0 < spent <= 0.5 + 1e-9
    assert results["error"].fillna("").str.contains("scorer quality: .*cost cap").any()
    assert (results["status"] == "pending").sum() > 0
