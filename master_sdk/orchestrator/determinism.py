"""Where run ids and time come from: the system, or a reproducible source for tests.

The engine asks a :class:`Clock` for every timestamp and step duration and an id source for
every new run id. By default these are the system clock and random time-ordered ids. In
deterministic mode (``Workbench.open(..., deterministic=True)``, ``deterministic: true`` in
``configs/app.yaml`` or ``MASTER_DETERMINISTIC=1``; ``master test`` turns it on) the engine
gets a :class:`TestClock` and :class:`SeededRunIds` instead, so two executions of the same
notebook show the same ids, timestamps and step durations.

Example:
    >>> clock = TestClock()
    >>> clock.now_us(), clock.now_us()
    (1767225600000000, 1767225600001000)
    >>> ids = SeededRunIds(seed=0)
    >>> len(ids()), ids() != ids()
    (32, True)
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Callable
from typing import Protocol

__all__ = [
    "EPOCH_US",
    "STEP_US",
    "Clock",
    "SeededRunIds",
    "SystemClock",
    "TestClock",
    "random_run_id",
]

EPOCH_US = 1_767_225_600_000_000
"""Where a test clock starts: 2026-01-01T00:00:00Z, in microseconds since the epoch."""

STEP_US = 1_000
"""How far a test clock moves on every read: one millisecond."""


class Clock(Protocol):
    """Wall-clock timestamps and a monotonic timer for durations."""

    def now_us(self) -> int:
        """Microseconds since the epoch (UTC)."""
        ...

    def elapsed_ms(self) -> float:
        """A monotonic reading in milliseconds; only differences between readings mean
        anything."""
        ...


class SystemClock:
    """The real clock: ``time.time_ns`` and ``time.perf_counter``."""

    def now_us(self) -> int:
        return time.time_ns() // 1000

    def elapsed_ms(self) -> float:
        return time.perf_counter() * 1000


class TestClock:
    """A clock that starts at a fixed instant and moves a fixed step on every read.

    Both readings share one counter, so timestamps are strictly increasing and a duration is
    a whole number of steps: the same on every execution of the same code.

    Args:
        start_us: the first reading (default :data:`EPOCH_US`, 2026-01-01T00:00:00Z).
        step_us: how far every read moves the clock (default :data:`STEP_US`, 1 ms).
    """

    __test__ = False  # a helper, not a test class for pytest to collect

    def __init__(self, start_us: int = EPOCH_US, step_us: int = STEP_US) -> None:
        self._start = start_us
        self._next = start_us
        self._step = step_us
        self._lock = threading.Lock()

    def now_us(self) -> int:
        with self._lock:
            value = self._next
            self._next += self._step
        return value

    def elapsed_ms(self) -> float:
        # counted from the start, in whole steps: differences are exact in floating point
        return (self.now_us() - self._start) / 1000


def random_run_id(clock: Clock | None = None) -> str:
    """A 32-hex-digit id that sorts by creation time (48-bit ms clock + 80 random bits)."""
    ms = (clock.now_us() if clock is not None else time.time_ns() // 1000) // 1000
    return f"{ms:012x}{secrets.token_hex(10)}"


class SeededRunIds:
    """Run ids from a seeded sequence: ``sha256("seed:n")``'s first 32 hex digits.

    Valid run ids (32 lowercase hex digits), the same sequence on every execution, and unique
    per store: an id the store already holds (a notebook that reopens its store) is skipped.

    Args:
        seed: picks the sequence.
        taken: tells whether the store already has a run with this id (default: never).
    """

    def __init__(self, seed: int = 0, taken: Callable[[str], bool] | None = None) -> None:
        self._seed = seed
        self._n = 0
        self._taken = taken
        self._lock = threading.Lock()

    def __call__(self) -> str:
        with self._lock:
            while True:
                self._n += 1
                digest = hashlib.sha256(f"{self._seed}:{self._n}".encode()).hexdigest()
                run_id = digest[:32]
                if self._taken is None or not self._taken(run_id):
                    return run_id
