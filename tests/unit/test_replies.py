"""ReplyJournal: replies kept in the run's state, reused in order while requests match."""

from __future__ import annotations

from typing import Any

from master_sdk.memory.records import RunRow
from master_sdk.orchestrator.replies import REPLIES, ReplyJournal


def _run(state: dict[str, Any] | None = None) -> RunRow:
    row = RunRow(
        run_id="r", product="p", flow="f", status="running", version=1, cursor=1,
        created_us=0, updated_us=0, flow_hash="h", product_version="1",
    )  # fmt: skip
    row.state.update(state or {})
    return row


def _entry(key: str) -> dict[str, Any]:
    return {"key": key, "text": f"reply to {key}", "tokens_in": 3, "tokens_out": 2}


def test_a_kept_reply_is_in_the_state_and_committed_before_keep_returns() -> None:
    """keep() writes the reply under REPLIES for its step and commits at once."""
    run = _run()
    commits: list[dict[str, Any]] = []
    journal = ReplyJournal(run, "classify", lambda: commits.append(dict(run.state[REPLIES])))
    journal.keep(_entry("a"))
    journal.keep(_entry("b"))
    assert [c["calls"][-1]["key"] for c in commits] == ["a", "b"]
    assert run.state[REPLIES]["step"] == "classify"


def test_a_retry_reuses_kept_replies_in_order_while_the_requests_match() -> None:
    """The retry's calls get the kept replies one by one; the first request that differs
    ends reuse, and what it keeps replaces the stale rest."""
    run = _run({REPLIES: {"step": "classify", "calls": [_entry("a"), _entry("b"), _entry("c")]}})
    journal = ReplyJournal(run, "classify", lambda: None)
    assert journal.pending
    assert journal.reuse("a") == _entry("a")
    assert journal.pending
    assert journal.reuse("x") is None  # asked something else: goes to the model
    assert not journal.pending  # the stale rest is dropped: calls need no key to reuse
    assert journal.reuse("c") is None  # and nothing after it is reused
    journal.keep(_entry("x"))
    assert [c["key"] for c in run.state[REPLIES]["calls"]] == ["a", "x"]


def test_replies_of_another_step_are_not_reused() -> None:
    """A journal reads only the replies its own step kept."""
    run = _run({REPLIES: {"step": "summary", "calls": [_entry("a")]}})
    journal = ReplyJournal(run, "classify", lambda: None)
    assert journal.kept == 0 and not journal.pending and journal.reuse("a") is None
