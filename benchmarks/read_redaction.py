"""What redacting on the way out costs: ``wb.traces()`` with and without read-time redaction.

The store redacts every value before writing it; the public frames redact again on the way
out (defence in depth for data stored before a secret was known). This measures that second
pass on a store of ``hello_world/greet`` events (filled by ``trace_frames.fill``): the raw
frame from the store, then the same frame through ``redact_frame`` (every ``attrs`` cell
walked), with no secrets and with a realistic secrets file, and what ``wb.traces()`` does
(the store redacts each distinct ``attrs`` text once as it builds the frame, ``redact_frame``
the rest), in one process, best and median of several repetitions.

Usage::

    python benchmarks/read_redaction.py                    # 100,000 events, 7 repetitions
    python benchmarks/read_redaction.py --events 1000000 --repeat 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.trace_frames import fill  # noqa: E402  # after the path fix above
from master_sdk.governance.exports import redact_frame  # noqa: E402
from master_sdk.governance.redaction import Redactor  # noqa: E402
from master_sdk.memory.sqlite import TRACE_REDACTED, SQLiteStore  # noqa: E402

SECRETS = [f"secret-value-{i:02d}-Zq8xKp" for i in range(20)]


def timed(call: object, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        call()  # type: ignore[operator]  # a zero-argument callable
        out.append(time.perf_counter() - t0)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="read-redaction-") as tmp:
        path = Path(tmp) / "traces.sqlite3"
        runs = fill(path, args.events)
        store = SQLiteStore(path)
        frame = store.trace_frame()
        print(f"{len(frame):,} events in {runs:,} runs", file=sys.stderr)
        redact = Redactor(SECRETS).value
        scrubbing = SQLiteStore(path, scrub=redact)

        def as_the_workbench() -> object:
            # attrs redacted while the frame is built, the other columns after
            built = scrubbing.trace_frame()
            return redact_frame(built, redact, redacted=TRACE_REDACTED)

        cases = {
            "store.trace_frame()": lambda: store.trace_frame(),
            "redact_frame, no secrets": lambda: redact_frame(frame, Redactor().value),
            "redact_frame, 20 secrets": lambda: redact_frame(frame, Redactor(SECRETS).value),
            "both, as wb.traces() does": as_the_workbench,
        }
        print(f"{'what':<28} {'best s':>8} {'median s':>9} {'us/event':>9}")
        for name, call in cases.items():
            seconds = timed(call, args.repeat)
            best = min(seconds)
            print(
                f"{name:<28} {best:>8.3f} {statistics.median(seconds):>9.3f} "
                f"{best / len(frame) * 1e6:>9.2f}"
            )
        store.close()
        scrubbing.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
