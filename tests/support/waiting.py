"""Waiting for something another thread or process does, with a deadline."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(done: Callable[[], object], timeout_s: float = 20.0) -> bool:
    """Poll ``done()`` every 20 ms until it is true or ``timeout_s`` passed; its last
    answer, as a bool."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if done():
            return True
        time.sleep(0.02)
    return bool(done())
