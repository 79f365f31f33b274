"""Vector memory against Chroma, side by side in one run: ``python -m benchmarks.vectors``.

Both systems get the same seeded data — ``--n`` unit vectors of ``--dim`` dimensions, each
with a short text and two metadata fields — inserted in batches of 1,000, then the same
``--queries`` top-10 searches without and with a metadata filter (a tenth of the rows
match). Each repetition runs each system in a fresh process (see
``benchmarks/vectors_workers.py``); the table shows the median of the repetitions and the
range.

What is compared:

* master_sdk: the governed ``Collection`` path (redaction, metadata checks, upserts in the
  run store's SQLite file, each batch one transaction synced with ``synchronous=FULL``),
  exact search with numpy over the whole collection;
* Chroma's local ``PersistentClient`` (its own SQLite and an HNSW index, cosine space):
  approximate search; ``recall@10`` shows how many of the exact top 10 it returned for
  the first query.

Embedding is not measured (both receive ready vectors). Install Chroma with the ``bench``
extra: ``pip install -e '.[bench]'``.

    python -m benchmarks.vectors                 # 100,000 x 384, 3 repetitions
    python -m benchmarks.vectors --n 20000 --repeat 1
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
METRICS: tuple[tuple[str, str, str], ...] = (
    ("insert_per_s", "inserts/s", "{:,.0f}"),
    ("search.p50_ms", "search p50 ms", "{:.2f}"),
    ("search.p99_ms", "search p99 ms", "{:.2f}"),
    ("search.cpu_p50_ms", "search CPU p50 ms", "{:.2f}"),
    ("search.cpu_p99_ms", "search CPU p99 ms", "{:.2f}"),
    ("search_filtered.p50_ms", "filtered p50 ms", "{:.2f}"),
    ("search_filtered.p99_ms", "filtered p99 ms", "{:.2f}"),
    ("search_filtered.cpu_p99_ms", "filt. CPU p99 ms", "{:.2f}"),
    ("search.load_avg_1m", "load avg (1 min)", "{:.1f}"),
    ("recall_at_10", "recall@10", "{:.1f}"),
    ("rss_growth_mib", "RSS growth MiB", "{:.0f}"),
    ("peak_rss_mib", "peak RSS MiB", "{:.0f}"),
    ("store_bytes_per_vector", "store B/vector", "{:,.0f}"),
)


def _get(result: dict[str, Any], dotted: str) -> float:
    value: Any = result
    for part in dotted.split("."):
        value = value[part]
    return float(value)


def run_worker(which: str, n: int, dim: int, queries: int, seed: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"vectors-{which}-") as folder:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.vectors_workers",
                which,
                folder,
                str(n),
                str(dim),
                str(queries),
                str(seed),
            ],
            capture_output=True,
            text=True,
            check=False,
            cwd=Path(__file__).resolve().parents[1],
        )
    if done.returncode != 0:
        raise SystemExit(f"{which} worker failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def table(runs: dict[str, list[dict[str, Any]]]) -> str:
    names = list(runs)
    lines = [f"{'metric':<18}" + "".join(f"{runs[name][0]['system']:>34}" for name in names)]
    for key, label, fmt in METRICS:
        cells = []
        for name in names:
            values = [_get(r, key) for r in runs[name]]
            mid = fmt.format(statistics.median(values))
            spread = f" ({fmt.format(min(values))}-{fmt.format(max(values))})"
            cells.append(f"{mid + (spread if len(values) > 1 else ''):>34}")
        lines.append(f"{label:<18}" + "".join(cells))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--only", choices=("master", "chroma"), action="append")
    args = parser.parse_args(argv)
    systems = args.only or ["master", "chroma"]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in systems}
    for rep in range(args.repeat):
        for name in systems:
            result = run_worker(name, args.n, args.dim, args.queries, args.seed + rep)
            runs[name].append(result)
            print(f"repetition {rep + 1}: {name}: {json.dumps(result)}", flush=True)
    text = table(runs)
    header = (
        f"{args.n:,} vectors x {args.dim} dims, {args.queries} top-10 queries, medians of "
        f"{args.repeat} (min-max); {platform.node()}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    )
    print(header)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    stamp = f"{datetime.now(UTC):%Y-%m-%d}"
    out = RESULTS / f"vectors-{platform.node()}-{stamp}.json"
    out.write_text(
        json.dumps({"args": vars(args), "runs": runs, "table": text}, indent=2) + "\n",
        encoding="utf-8",
    )
    (out.with_suffix(".txt")).write_text(header + "\n" + text + "\n", encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
