"""The experiment half of the Store contract, on every store implementation."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import master_sdk as ms
from master_sdk.memory.experiments import CaseRecord, CaseUpdate, ExperimentExists, ExperimentRecord
from master_sdk.memory.store import Changes, RunRecord
from tests.contract.test_store_contract import SECRET, STORES, TS, new_run


@pytest.fixture(params=sorted(STORES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    made = STORES[request.param](tmp_path)
    yield made
    made.close()


def record(name: str = "e1", at: int = TS, **fields: Any) -> ExperimentRecord:
    values: dict[str, Any] = {
        "name": name, "ref": "demo/f", "flow_hash": "h1", "product_version": "1.0",
        "status": "running", "created_us": at, "updated_us": at, "created_by": "ana",
        "params": {"concurrency": 4, "models": {"default": "gpt"}}, **fields,
    }  # fmt: skip
    return ExperimentRecord(**values)


def cases(n: int = 3) -> list[CaseRecord]:
    return [CaseRecord(f"c{i}", i, {"text": f"t{i}", "expected": "x"}) for i in range(n)]


def tagged_run(store: Any, run_id: str, experiment: str, case: str, **fields: Any) -> RunRecord:
    run = new_run(run_id, state={"experiment": {"name": experiment, "case": case}}, **fields)
    store.commit(run, Changes(), expect_version=None, label="start")
    return run


def test_an_experiment_is_stored_with_its_cases_and_parameters(store: Any) -> None:
    """create_experiment then get_experiment: the header, parameters and case count."""
    store.create_experiment(record(), cases())
    got = store.get_experiment("e1")
    assert (got.name, got.ref, got.status, got.cases) == ("e1", "demo/f", "running", 3)
    assert got.params == {"concurrency": 4, "models": {"default": "gpt"}}
    listed = store.experiment_cases("e1")
    assert [c.case_key for c in listed] == ["c0", "c1", "c2"]
    assert listed[0].row == {"text": "t0", "expected": "x"}
    assert listed[0].run_id is None and listed[0].status is None


def test_names_are_unique_and_a_refused_create_writes_nothing(store: Any) -> None:
    """A second experiment with the same name raises ExperimentExists."""
    store.create_experiment(record(), cases(2))
    with pytest.raises(ExperimentExists):
        store.create_experiment(record(), cases(5))
    assert store.get_experiment("e1").cases == 2


def test_unknown_experiments_are_not_found(store: Any) -> None:
    """Every read or write of an unknown name raises NotFound."""
    with pytest.raises(ms.NotFound):
        store.get_experiment("nope")
    with pytest.raises(ms.NotFound):
        store.experiment_cases("nope")
    with pytest.raises(ms.NotFound):
        store.update_cases("nope", [CaseUpdate("c0", run_id="r1")])


def test_experiments_list_newest_first(store: Any) -> None:
    """experiments() orders by creation time, newest first."""
    store.create_experiment(record("old", at=TS), [])
    store.create_experiment(record("new", at=TS + 10), [])
    assert [e.name for e in store.experiments()] == ["new", "old"]


def test_cases_join_their_runs_scores_and_errors(store: Any) -> None:
    """update_cases links runs and records scores and errors; reads join the run."""
    store.create_experiment(record(), cases())
    tagged_run(store, "r0", "e1", "c0", status="completed", output={"label": "x"},
               tokens_in=5, tokens_out=2, cost_usd=0.25)  # fmt: skip
    scores = {"values": {"exact": 1.0}, "meta": {}, "errors": {}}
    store.update_cases(
        "e1",
        [CaseUpdate("c0", run_id="r0", scores=scores),
         CaseUpdate("c1", error="could not start", set_error=True)],
    )  # fmt: skip
    c0, c1, _ = store.experiment_cases("e1")
    assert (c0.run_id, c0.status, c0.output, c0.scores) == (
        "r0",
        "completed",
        {"label": "x"},
        scores,
    )
    assert (c0.tokens_in, c0.tokens_out, c0.cost_usd) == (5, 2, 0.25)
    assert c1.case_error == "could not start" and c1.run_id is None
    assert store.case_statuses("e1") == {"completed": 1, None: 2}


def test_raw_reads_leave_json_text_and_rows_can_be_skipped(store: Any) -> None:
    """raw=True gives the stored JSON texts; rows=False leaves rows empty."""
    store.create_experiment(record(), cases(1))
    raw = store.experiment_cases("e1", raw=True)[0]
    assert isinstance(raw.row, str) and '"t0"' in raw.row
    assert store.experiment_cases("e1", rows=False)[0].row == {}


def test_tagged_runs_find_a_case_whose_link_was_never_written(store: Any) -> None:
    """A run carries its experiment and case in its state: found without the link row."""
    store.create_experiment(record(), cases())
    tagged_run(store, "r1", "e1", "c1")
    tagged_run(store, "r9", "other", "c1")
    tagged_run(store, "r2", "e1", "c1")  # the case ran again: the newest run wins
    assert store.tagged_runs("e1") == {"c1": "r2"}


def test_status_and_parameters_are_updated(store: Any) -> None:
    """set_experiment_status records status, reason and (when given) new parameters."""
    store.create_experiment(record(), [])
    store.set_experiment_status("e1", "blocked", error="cap", at_us=TS + 5)
    got = store.get_experiment("e1")
    assert (got.status, got.error, got.updated_us) == ("blocked", "cap", TS + 5)
    assert got.params == {"concurrency": 4, "models": {"default": "gpt"}}
    store.set_experiment_status("e1", "completed", error=None, at_us=TS + 6, params={"a": 1})
    assert store.get_experiment("e1").params == {"a": 1}


def test_case_rows_and_errors_are_redacted_when_stored(store: Any) -> None:
    """What a case row holds passes through the store's redaction, like run data."""
    store.create_experiment(record(), [CaseRecord("c0", 0, {"text": f"key {SECRET}"})])
    store.update_cases("e1", [CaseUpdate("c0", error=f"failed with {SECRET}", set_error=True)])
    case = store.experiment_cases("e1")[0]
    assert SECRET not in case.row["text"] and SECRET not in (case.case_error or "")


def test_a_case_is_claimed_once_and_the_loser_learns_the_winner(store: Any) -> None:
    """claim_case links a run to a case with no run; a second claim changes nothing and
    returns the first claim's run id."""
    store.create_experiment(record(), cases(2))
    assert store.claim_case("e1", "c0", "r1") == "r1"
    assert store.claim_case("e1", "c0", "r2") == "r1"
    assert store.claim_case("e1", "c1", "r2") == "r2"
    assert store.claim_case("e1", "nope", "r3") is None
    tagged_run(store, "r1", "e1", "c0")
    by_key = {c.case_key: c.run_id for c in store.experiment_cases("e1")}
    assert by_key == {"c0": "r1", "c1": None}  # r2 is claimed, not started: no run joins


def test_a_claim_replaces_only_the_run_it_expects(store: Any) -> None:
    """With ``expected`` the claim is a compare-and-set on the case's current run id."""
    store.create_experiment(record(), cases(1))
    store.claim_case("e1", "c0", "r1")
    assert store.claim_case("e1", "c0", "r2", expected="other") == "r1"
    assert store.claim_case("e1", "c0", "r2", expected="r1") == "r2"
    assert store.claim_case("e1", "c0", "r3") == "r2"  # expected None: taken
    with pytest.raises(ms.NotFound):
        store.claim_case("nope", "c0", "r1")


def test_concurrent_claims_of_one_case_grant_exactly_one(store: Any) -> None:
    """Eight threads claiming the same case: one wins, all see the winner."""
    import threading

    store.create_experiment(record(), cases(1))
    seen: list[str | None] = []
    start = threading.Barrier(8)

    def claim(i: int) -> None:
        start.wait()
        seen.append(store.claim_case("e1", "c0", f"r{i}"))

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(seen)) == 1 and len(seen) == 8
