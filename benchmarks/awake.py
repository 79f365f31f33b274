"""``--awake``: keep every CPU busy at the lowest priority while the benchmark measures.

A process that waits for a disk sync sleeps; with nothing else to run, the CPU it ran on
goes idle, and on a virtual machine the hypervisor may then run something else on that
physical core. When the sync completes the process wakes on cold caches and the same
Python runs slower for a while. A durable run sleeps at least once per synced commit, so
part of what a synced commit costs is this wake-up, and it is the machine's, not the
code's. Running the benchmark with a busy loop per CPU at ``SCHED_IDLE`` (it runs only
when nothing else wants the CPU, and gives way at once when something does) keeps the
CPUs from going idle: the difference between a plain run and an awake run is that cost,
for every row of the same run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

_SPIN = """
import os
os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
while True:
    pass
"""


@contextmanager
def cpus_kept_awake(enabled: bool = True) -> Iterator[int]:
    """While inside, one idle-priority busy process per CPU (none when not ``enabled``);
    yields how many were started. They are killed on the way out."""
    if not enabled:
        yield 0
        return
    if not hasattr(os, "SCHED_IDLE"):
        raise SystemExit("--awake needs SCHED_IDLE (Linux)")
    spinners = [
        subprocess.Popen([sys.executable, "-c", _SPIN], stdin=subprocess.DEVNULL)
        for _ in range(os.cpu_count() or 1)
    ]
    try:
        yield len(spinners)
    finally:
        for spinner in spinners:
            spinner.kill()
        for spinner in spinners:
            spinner.wait()
