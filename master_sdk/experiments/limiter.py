"""The experiment's gate on model calls: one AIMD window and one cost cap for every case.

A rate limit (429) or a timeout seen by any case halves the number of model calls the
whole experiment keeps in flight (multiplicative decrease, at most once per
``cooldown_s``, so one burst of errors counts once); every successful call widens it again
by ``increase`` (additive increase) up to ``concurrency``. Calls beyond the window wait for
a slot. The state shows in the progress display (``window``, ``backoffs``).

The cost cap is checked before every model call, on what has been spent plus what calls in
flight could still spend (each call reserves its worst-case cost until it ends), so the
cap holds with many calls in flight. Once a call is refused no new case starts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

from master_sdk.errors import PolicyViolation
from master_sdk.models.gates import CONGESTION_KINDS

COST_RULE = "experiment.max_cost_usd"
COST_TOLERANCE_USD = 1e-9


@dataclass(frozen=True, slots=True)
class GateState:
    """A snapshot for the progress display."""

    window: float
    limit: int
    in_flight: int
    backoffs: int
    congestion: int
    spent_usd: float
    blocked: str | None

    @property
    def backing_off(self) -> bool:
        """True while the window is below the concurrency asked for."""
        return self.window < self.limit - 1e-9


class ExperimentGate:
    """Implements :class:`master_sdk.models.gates.CallGate` for one experiment.

    Args:
        concurrency: the most model calls in flight (the window's ceiling).
        max_cost_usd: the experiment's cost cap (None: no cap).
        models: logical model overrides for this experiment.
        spent_usd: cost already spent by this experiment (a resumed one).
        increase: window growth per successful call.
        cooldown_s: the least time between two halvings.
        congestion_attempts: tries a call gets while rate limits or timeouts persist.
    """

    def __init__(
        self,
        *,
        concurrency: int,
        max_cost_usd: float | None = None,
        models: Mapping[str, str] | None = None,
        spent_usd: float = 0.0,
        increase: float = 0.25,
        cooldown_s: float = 1.0,
        congestion_attempts: int = 8,
    ) -> None:
        self.limit = max(1, int(concurrency))
        # every reply is committed as soon as it is seen: a killed case's retry reuses it
        self.keep_replies = True
        self.max_cost_usd = max_cost_usd
        self.models: Mapping[str, str] = dict(models or {})
        self.congestion_attempts = congestion_attempts
        self.increase = increase
        self.cooldown_s = cooldown_s
        self._monotonic = time.monotonic
        self._cond = threading.Condition()
        self.window = float(self.limit)
        self.in_flight = 0
        self.backoffs = 0
        self.congestion = 0
        self._last_cut = -1e18
        self.spent_usd = spent_usd
        self._reserved = 0.0
        self.blocked: str | None = None

    # ------------------------------------------------------------------ cost cap

    def admit(self, *, step_id: str, model: str, worst_cost: float | None) -> float:
        """Reserve ``worst_cost`` under the cap, or refuse the call (see module docstring)."""
        cap = self.max_cost_usd
        if cap is None:
            return 0.0
        with self._cond:
            if worst_cost is None:
                reason = (
                    f"model '{model}' has no price, and the experiment caps cost at "
                    f"${cap:g} (add the model to prices: in configs/models.yaml)"
                )
                self.blocked = self.blocked or reason
                raise PolicyViolation(
                    COST_RULE, limit=cap, value=None, message=reason, step=step_id
                )
            total = self.spent_usd + self._reserved + worst_cost
            if total > cap + COST_TOLERANCE_USD:
                reason = (
                    f"the experiment's cost cap max_cost_usd=${cap:g} is reached: "
                    f"${self.spent_usd:.6f} spent, ${self._reserved:.6f} reserved by calls in "
                    f"flight, and this call to '{model}' could cost ${worst_cost:.6f}"
                )
                self.blocked = self.blocked or reason
                raise PolicyViolation(
                    COST_RULE, limit=cap, value=round(total, 9), message=reason, step=step_id
                )
            self._reserved += worst_cost
            return worst_cost

    def settle(self, reserved: float, cost: float | None) -> None:
        """Release a reservation and charge what the call cost."""
        with self._cond:
            self._reserved = max(0.0, self._reserved - reserved)
            self.spent_usd += cost or 0.0

    def charge(self, cost: float | None) -> None:
        """Count a cost spent outside a gated call (nothing reserved)."""
        self.settle(0.0, cost)

    # ------------------------------------------------------------------ AIMD window

    def acquire(self) -> None:
        """Wait until a slot of the window is free, then take it."""
        with self._cond:
            while self.in_flight >= max(1, int(self.window)):
                self._cond.wait()
            self.in_flight += 1

    def release(self, outcome: str) -> None:
        """Give a slot back; widen the window on success, halve it on congestion."""
        with self._cond:
            self.in_flight -= 1
            if outcome == "ok":
                if self.window < self.limit:
                    self.window = min(float(self.limit), self.window + self.increase)
            elif outcome in CONGESTION_KINDS:
                self.congestion += 1
                now = self._monotonic()
                if now - self._last_cut >= self.cooldown_s:
                    self._last_cut = now
                    self.window = max(1.0, self.window / 2)
                    self.backoffs += 1
            self._cond.notify_all()

    def state(self) -> GateState:
        """What the progress display shows."""
        with self._cond:
            return GateState(
                window=self.window,
                limit=self.limit,
                in_flight=self.in_flight,
                backoffs=self.backoffs,
                congestion=self.congestion,
                spent_usd=self.spent_usd,
                blocked=self.blocked,
            )
