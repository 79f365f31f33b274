"""wb.evaluate(backend="ray") on a real local Ray cluster (2 CPUs), SQLite and PostgreSQL.

One cluster for the whole module (starting one costs seconds); each test opens its own
project and store. Workers are real Ray worker processes: one is killed with SIGKILL
mid-experiment to check that no case is lost and none runs twice.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest

import master_sdk as ms
from master_sdk.experiments.ray_backend import ClusterError, RayOptions, RayPool, TravelError
from tests.support.experiments import LabelModel, TravellingLabelModel, open_triage, triage_cases

REPO = Path(__file__).resolve().parents[2]
EXACT = ms.scorers.exact("label", expected="expected_label")
# what must be equal between a threads and a ray experiment on the same cases
STABLE = ["case_key", "case_index", "status", "output.label", "output.confidence", "output.tag",
          "exact_label", "tokens_in", "tokens_out", "cost_usd", "error"]  # fmt: skip

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def cluster() -> Iterator[Any]:
    """A local Ray cluster with 2 CPUs, no dashboard, a small object store; shut down (its
    processes end) after the last test."""
    import ray

    from master_sdk.experiments.ray_backend import start_local

    start_local(
        ray,
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=100 * 1024 * 1024,
        log_to_driver=False,
        logging_level=logging.WARNING,
        runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}},
    )
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.fixture
def wb(tmp_path: Path, cluster: Any) -> Iterator[ms.Workbench]:
    bench = open_triage(tmp_path / "proj", providers={"default": TravellingLabelModel()})
    yield bench
    bench.close()


@pytest.fixture
def pg_wb(tmp_path: Path, cluster: Any) -> Iterator[ms.Workbench]:
    from tests.support import postgres

    url = postgres.server().fresh_database()
    bench = open_triage(
        tmp_path / "proj", store=url, providers={"default": TravellingLabelModel()}
    )
    yield bench
    bench.close()


def stable(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[STABLE].astype("object").reset_index(drop=True)


def one_run_per_case(wb: ms.Workbench, n: int) -> None:
    """The store holds exactly one run per case, each linked from its case."""
    runs = wb.runs()
    assert len(runs) == n, f"{len(runs)} runs for {n} cases"


def test_results_on_ray_equal_results_on_threads_with_sqlite(wb: ms.Workbench) -> None:
    """The same cases on threads and on Ray give the same results frame, one run per case."""
    cases = triage_cases(12)
    on_threads = wb.evaluate("triage/classify", cases, name="t", scorers=[EXACT], progress=False)
    on_ray = wb.evaluate(
        "triage/classify", cases, name="r", scorers=[EXACT], backend="ray", progress=False
    )
    assert on_ray.status == "completed"
    pd.testing.assert_frame_equal(stable(on_ray.results), stable(on_threads.results))
    assert on_ray.record.params["backend"] == "ray"  # type: ignore[index]
    one_run_per_case(wb, 24)
    assert set(on_ray.runs()["case_key"]) == {c["case_key"] for c in cases}


def test_results_on_ray_equal_results_on_threads_with_postgresql(pg_wb: ms.Workbench) -> None:
    """On a PostgreSQL store too, with scripted answers for a flow with human steps."""
    cases = triage_cases(6)
    answers = {"check": "approve", "note": {"note": "ok"}}
    kwargs: dict[str, Any] = {"scorers": [EXACT], "answers": answers, "progress": False}
    on_threads = pg_wb.evaluate("triage/review", cases, name="t", **kwargs)
    on_ray = pg_wb.evaluate("triage/review", cases, name="r", backend="ray", **kwargs)
    assert on_ray.status == "completed"
    assert set(on_ray.results["status"]) == {"completed"}
    columns = ["case_key", "status", "output.label", "exact_label", "tokens_in", "error"]
    pd.testing.assert_frame_equal(
        on_ray.results[columns].astype("object"), on_threads.results[columns].astype("object")
    )
    one_run_per_case(pg_wb, 12)


def test_a_judges_calls_on_ray_are_traced_in_the_case_runs_as_on_threads(
    wb: ms.Workbench,
) -> None:
    """A judge scoring on a Ray worker traces each call in the case's run, as on threads: a
    ``judge:<scorer>`` step whose ``model_called`` event holds the tokens and cost that the
    results' judge columns report, and the same scores as on threads."""
    rubric = ms.scorers.llm_judge("Right?", model="priced", name="quality")
    cases = triage_cases(4)
    kwargs: dict[str, Any] = {"scorers": [rubric], "progress": False}
    on_threads = wb.evaluate("triage/classify", cases, name="jt", **kwargs)
    on_ray = wb.evaluate("triage/classify", cases, name="jr", backend="ray", **kwargs)
    results = on_ray.results
    assert set(results["status"]) == {"completed"}
    assert results["error"].isna().all(), results["error"].tolist()
    columns = ["case_key", "quality", "quality.tokens", "quality.cost_usd"]
    pd.testing.assert_frame_equal(
        results[columns].astype("object"), on_threads.results[columns].astype("object")
    )
    trace = wb.traces(product="triage")
    ray_runs = set(results["run_id"])
    judged = trace[(trace["step_id"] == "judge:quality") & trace["run_id"].isin(ray_runs)]
    calls = judged[judged["event"] == "model_called"].set_index("run_id")
    assert sorted(calls.index) == sorted(ray_runs)
    for _, row in results.iterrows():
        call = calls.loc[row["run_id"]]
        assert call["tokens_in"] + call["tokens_out"] == row["quality.tokens"]
        assert call["cost_usd"] == pytest.approx(row["quality.cost_usd"])
    events = judged["event"].tolist()
    assert events.count("step_started") == events.count("step_completed") == len(cases)


def test_an_unpicklable_scorer_is_named_before_anything_is_stored(wb: ms.Workbench) -> None:
    """A scorer capturing a lock is refused, naming it and the captured variable."""
    lock = threading.Lock()

    def guarded(case: Any, output: Any) -> bool:
        with lock:
            return True

    with pytest.raises(TravelError) as caught:
        wb.evaluate(
            "triage/classify", triage_cases(2), name="x", scorers=[EXACT, guarded], backend="ray"
        )
    message = str(caught.value)
    assert "scorers[1] ('guarded')" in message
    assert "captured variable 'lock'" in message and "backend='threads'" in message
    assert wb.experiments().empty
    assert wb.runs().empty


def test_an_unpicklable_provider_is_named(tmp_path: Path, cluster: Any) -> None:
    """A provider holding a lock (LabelModel counts calls under one) is named with it."""
    with open_triage(tmp_path / "proj", providers={"default": LabelModel()}) as bench:
        with pytest.raises(TravelError, match=r"providers\['default'\] \(LabelModel\).*'_lock'"):
            bench.evaluate("triage/classify", triage_cases(1), name="x", backend="ray")
        assert bench.experiments().empty


def test_a_store_in_memory_is_refused(tmp_path: Path, cluster: Any) -> None:
    """memory:// lives in this process: Ray workers cannot reach it."""
    with (
        open_triage(tmp_path / "proj", store="memory://") as bench,
        pytest.raises(ClusterError, match="SQLite file or a PostgreSQL"),
    ):
        bench.evaluate("triage/classify", triage_cases(1), name="x", backend="ray")


def test_a_worker_that_loads_another_flow_is_refused(wb: ms.Workbench) -> None:
    """Workers check the flow hash and product version they loaded against the driver's."""
    real = wb.catalog.flow("triage/classify")
    other = SimpleNamespace(ref=real.ref, flow_hash="0" * 64, product_version="9.9")
    with pytest.raises(ClusterError, match=r"Ray worker .* loaded triage/classify .* hash 000000"):
        RayPool.start(
            wb, other, name="x", scorers=(), answers=None, concurrency=2,  # type: ignore[arg-type]
            max_cost_usd=None, models={}, spent_usd=0.0, options=RayOptions(workers=1),
        )  # fmt: skip


def test_the_cost_cap_holds_across_workers(wb: ms.Workbench) -> None:
    """One cap for every worker: the experiment ends blocked, the spend within the cap."""
    exp = wb.evaluate(
        "triage/classify", triage_cases(30), name="capped", models={"default": "priced"},
        max_cost_usd=0.1, concurrency=2, backend="ray", progress=False,
    )  # fmt: skip
    assert exp.status == "blocked"
    assert "max_cost_usd=$0.1" in (exp.error or "")
    results = exp.results
    assert results["cost_usd"].sum() <= 0.1 + 1e-9
    assert (results["status"] == "pending").sum() > 0


def test_rate_limits_back_off_every_worker(tmp_path: Path, cluster: Any) -> None:
    """429s seen by workers halve the one shared window; every case still completes."""
    root = tmp_path / "proj"
    open_triage(root).close()
    (root / "configs" / "policy.yaml").write_text(
        "policy:\n  model_retries: {max_attempts: 3, backoff_s: 0.001, max_backoff_s: 0.01}\n"
    )
    model = TravellingLabelModel(rate_limit_every=4)
    with open_triage(root, providers={"default": model}) as bench:
        exp = bench.evaluate(
            "triage/classify", triage_cases(24), name="429", concurrency=4, backend="ray",
            progress=False,
        )  # fmt: skip
        assert set(exp.results["status"]) == {"completed"}
        assert exp._runner is not None
        state = exp._runner.gate.state()
        assert state.backoffs >= 1 and state.congestion >= 1


def _worker_pid(wb: ms.Workbench, deadline: float) -> int:
    """The pid of a worker process that is executing a step of a run right now."""
    while time.monotonic() < deadline:
        for _run_id, owner in wb.store.find_runs(status="running"):
            if owner:
                pid = int(owner.split(":")[1])
                if pid != os.getpid():
                    return pid
        time.sleep(0.05)
    raise AssertionError("no run was seen executing on a Ray worker")


def test_a_killed_worker_loses_no_case_and_runs_none_twice(tmp_path: Path, cluster: Any) -> None:
    """SIGKILL one worker mid-step: its cases go to a worker that finds their claims; the
    run cut short is interrupted, never duplicated; resume() completes it, and the results
    equal the same experiment on threads."""
    cases = triage_cases(12)
    model = TravellingLabelModel(latency_s=0.4)
    with open_triage(tmp_path / "proj", providers={"default": model}) as bench:
        exp = bench.evaluate(
            "triage/classify", cases, name="killed", scorers=[EXACT], concurrency=4,
            backend="ray", wait=False, progress=False,
        )  # fmt: skip
        pid = _worker_pid(bench, time.monotonic() + 120)
        os.kill(pid, signal.SIGKILL)
        exp.wait()
        assert exp.status == "interrupted", exp.error
        assert "died" in (exp.error or "")
        results = exp.results
        assert "pending" not in set(results["status"])
        cut = results["status"] == "interrupted"
        assert cut.sum() >= 1
        assert set(results["status"]) <= {"completed", "interrupted"}
        one_run_per_case(bench, 12)

        exp.resume(progress=False)
        assert exp.status == "completed"
        one_run_per_case(bench, 12)
        on_threads = bench.evaluate(
            "triage/classify", cases, name="threads", scorers=[EXACT], progress=False
        )
        # a model call cut short by the kill stays counted at its worst case (its usage
        # was never confirmed), so usage is compared for the other cases only
        usage = ["tokens_in", "tokens_out", "cost_usd"]
        same = [c for c in STABLE if c not in usage]
        pd.testing.assert_frame_equal(
            stable(exp.results)[same], stable(on_threads.results)[same]
        )
        pd.testing.assert_frame_equal(
            stable(exp.results)[usage][~cut.to_numpy()],
            stable(on_threads.results)[usage][~cut.to_numpy()],
        )
