"""Run a piece of work in a forked child with an address-space limit and a CPU limit, so a
regression fails its test instead of eating the machine."""

from __future__ import annotations

import multiprocessing
import os
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: Extra address space a child may map beyond what it inherited.
HEADROOM = 1536 * 2**20


@dataclass(frozen=True)
class Outcome:
    """How the work ended: ``ok`` (its value's repr), ``error`` (type and message),
    ``killed`` (the child died: out of memory, CPU limit, signal); ``seconds`` of CPU time
    (the machine may be shared, so wall time says little), ``wall`` seconds, and how many MB
    the child's peak resident size grew."""

    kind: str
    detail: str
    seconds: float
    grew_mb: float
    wall: float = 0.0


def _vm_size() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _child(work: Callable[[], Any], conn: Any) -> None:
    limit = _vm_size() + HEADROOM
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_CPU, (20, 20))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    cpu = time.process_time()
    try:
        value = work()
        kind, detail = "ok", repr(value)[:200]
    except BaseException as exc:  # the point is to see what escaped
        kind, detail = "error", f"{type(exc).__name__}: {str(exc)[:300]}"
    seconds = time.process_time() - cpu
    wall = time.perf_counter() - start
    grew = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    conn.send(Outcome(kind, detail, seconds, grew, wall))
    conn.close()
    os._exit(0)


def run_bounded(work: Callable[[], Any], *, timeout: float = 60.0) -> Outcome:
    """Run ``work()`` in a forked child limited to :data:`HEADROOM` more address space."""
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_child, args=(work, child))
    process.start()
    child.close()
    try:
        if parent.poll(timeout):
            outcome: Outcome = parent.recv()
        else:
            outcome = Outcome("killed", f"no answer within {timeout} s", timeout, 0.0)
    except EOFError:
        outcome = Outcome("killed", "the child died without an answer", 0.0, 0.0)
    process.join(5)
    if process.is_alive():
        process.kill()
        process.join()
    return outcome
