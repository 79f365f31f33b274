"""The experiment gate: AIMD window on model calls, and the shared cost cap."""

from __future__ import annotations

import threading

import pytest

from master_sdk.errors import PolicyViolation
from master_sdk.experiments.limiter import COST_RULE, ExperimentGate


def test_a_rate_limit_halves_the_window_once_per_cooldown() -> None:
    """Several 429s in a burst count as one backoff; the window halves."""
    gate = ExperimentGate(concurrency=16, cooldown_s=60)
    for _ in range(3):
        gate.acquire()
    for _ in range(3):
        gate.release("rate_limit")
    state = gate.state()
    assert state.window == 8
    assert state.backoffs == 1
    assert state.congestion == 3
    assert state.backing_off


def test_successes_grow_the_window_back_to_the_concurrency() -> None:
    """Additive increase: successful calls widen the window up to its ceiling."""
    gate = ExperimentGate(concurrency=8, increase=1.0, cooldown_s=0)
    gate.acquire()
    gate.release("timeout")
    assert gate.state().window == 4
    for _ in range(10):
        gate.acquire()
        gate.release("ok")
    assert gate.state().window == 8
    assert not gate.state().backing_off


def test_calls_beyond_the_window_wait_for_a_slot() -> None:
    """With the window full, acquire() blocks until a slot is released."""
    gate = ExperimentGate(concurrency=1)
    gate.acquire()
    entered = threading.Event()

    def second() -> None:
        gate.acquire()
        entered.set()
        gate.release("ok")

    thread = threading.Thread(target=second)
    thread.start()
    assert not entered.wait(0.05)
    gate.release("ok")
    assert entered.wait(5)
    thread.join()


def test_other_errors_do_not_shrink_the_window() -> None:
    """Only rate limits and timeouts are congestion."""
    gate = ExperimentGate(concurrency=4)
    gate.acquire()
    gate.release("bad_request")
    assert gate.state().window == 4


def test_the_cost_cap_counts_spent_and_reserved_cost() -> None:
    """A call is refused when spent + in-flight reservations + its worst case pass the cap."""
    gate = ExperimentGate(concurrency=4, max_cost_usd=1.0)
    first = gate.admit(step_id="s", model="m", worst_cost=0.6)
    with pytest.raises(PolicyViolation) as caught:
        gate.admit(step_id="s", model="m", worst_cost=0.6)
    assert caught.value.rule == COST_RULE
    assert "max_cost_usd=$1" in str(caught.value)
    assert gate.state().blocked is not None
    gate.settle(first, 0.1)
    assert gate.state().spent_usd == pytest.approx(0.1)


def test_an_unpriced_model_is_refused_under_a_cost_cap() -> None:
    """worst_cost None (no price) cannot be checked against a cap: refused."""
    gate = ExperimentGate(concurrency=1, max_cost_usd=5.0)
    with pytest.raises(PolicyViolation, match="no price"):
        gate.admit(step_id="s", model="m", worst_cost=None)


def test_no_cap_reserves_nothing() -> None:
    """Without a cap every call is admitted."""
    gate = ExperimentGate(concurrency=1)
    assert gate.admit(step_id="s", model="m", worst_cost=None) == 0.0
