"""What live export costs the runs' own thread, and which part of it is the hook's own work.

The durable benchmark flow (``benchmarks/master_sdk_flow.py``) on four workbenches, in
interleaved blocks, CPU time of the runs' thread per run (``time.thread_time``: what the
thread itself ran, whatever else the machine does):

* ``off``: telemetry off;
* ``on``: exporting through the exporter process to an OTLP receiver on 127.0.0.1;
* ``hook only``: the same commit hook (tuples, ``marshal``, one ``os.write`` per commit)
  writing its frames to ``/dev/null`` — no exporter process reads them;
* ``no hook``: telemetry on but the hook removed from the store (the exporter idles).

``hook only`` minus ``off`` is the hook's own cost; ``on`` minus ``hook only`` is what the
exporter process's work costs the runs' thread without running on it (a shared machine's
caches and cores): small when the exporter has a core to itself, larger on a busy machine.

    python -m benchmarks.otel_hook_cost [--runs 200] [--repeat 10]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.master_sdk_flow import make_project, one_run
from benchmarks.otel_overhead import open_workbench


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200, help="runs per block")
    parser.add_argument("--repeat", type=int, default=10, help="rounds: one block each")
    args = parser.parse_args(argv)

    from master_sdk.tracing.otel.hook import TelemetryHook
    from master_sdk.tracing.otel.process import ExportProcess
    from tests.support.otlp_receiver import OtlpReceiver

    class DevNull(ExportProcess):
        """The runs' side with its frames written to /dev/null."""

        def __init__(self, settings: Any, fd: int) -> None:
            super().__init__(settings, scrub=lambda value: value)
            self._null = fd

        def write(self, frame: bytes, events: int) -> None:
            os.write(self._null, frame)

    load_start = os.getloadavg()
    null = os.open(os.devnull, os.O_WRONLY)
    with OtlpReceiver() as receiver, tempfile.TemporaryDirectory(prefix="otel-hook-") as tmp:
        root = make_project(Path(tmp) / "project")
        on = {"endpoint": receiver.url}
        benches = {
            "off": open_workbench(root, Path(tmp) / "off.sqlite3", False),
            "on": open_workbench(root, Path(tmp) / "on.sqlite3", on),
            "hook only": open_workbench(root, Path(tmp) / "hook.sqlite3", False),
            "no hook": open_workbench(root, Path(tmp) / "nohook.sqlite3", on),
        }
        settings = benches["on"]._telemetry.settings
        benches["hook only"].add_hook(TelemetryHook(DevNull(settings, null)))
        idle = benches["no hook"]._telemetry
        benches["no hook"].store.hooks.remove(idle)
        for wb in benches.values():
            for index in range(30):
                one_run(wb, -1 - index)
            wb.flush_telemetry(10.0)
        per_run: dict[str, list[float]] = {name: [] for name in benches}
        names = list(benches)
        for rep in range(args.repeat):
            order = names[rep % len(names) :] + names[: rep % len(names)]
            for name in order:
                wb = benches[name]
                clock = time.thread_time()
                for index in range(rep * args.runs, (rep + 1) * args.runs):
                    one_run(wb, index)
                per_run[name].append((time.thread_time() - clock) * 1e6 / args.runs)
                wb.flush_telemetry(10.0)
        for wb in benches.values():
            wb.close()
    os.close(null)
    load_end = os.getloadavg()
    print(
        f"durable flow, {args.repeat} rounds x {args.runs} runs; CPU of the runs' thread per "
        f"run, median, and its paired increase over off; load average "
        f"{' '.join(f'{x:.2f}' for x in load_start)} at the start, "
        f"{' '.join(f'{x:.2f}' for x in load_end)} at the end"
    )
    base = per_run["off"]
    for name, values in per_run.items():
        more = statistics.median((v / b - 1) * 100 for v, b in zip(values, base, strict=True))
        print(f"{name:<10} {statistics.median(values):8.1f} us/run  {more:+6.1f} %")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
