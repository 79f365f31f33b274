"""Trace frames of a PostgreSQL store read in bulk (``COPY ... TO STDOUT (FORMAT binary)``,
``memory/postgres/traces.py``): the same frame as the row-by-row read and as a SQLite
store of the same commits, whatever order the blocks lie in on disk, for every filter,
across more runs than one COPY row holds."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from master_sdk.memory import frames
from master_sdk.memory.postgres import PostgresStore, traces
from master_sdk.memory.sqlite import SQLiteStore
from master_sdk.memory.store import Changes, RunRecord, TraceEvent
from master_sdk.memory.trace_decoding import Chunks
from tests.contract.test_store_contract import TS, advance, new_run, redact
from tests.support import postgres

RUNS = 40
ROUNDS = 4


def interleaved(store: Any) -> None:
    """``RUNS`` runs committed round-robin, ``ROUNDS`` commits each (so one run's blocks
    lie between other runs' on disk), with metrics, attributes and two products."""
    runs: list[RunRecord] = []
    for i in range(RUNS):
        run = new_run(f"r{i:02d}", product="demo" if i % 3 else "other")
        store.commit(
            run,
            Changes(events=[TraceEvent(1, TS + i, "run_started", attrs={"by": f"u{i}"})]),
            expect_version=None,
            label="start",
        )
        runs.append(run)
    for k in range(ROUNDS):
        for i, run in enumerate(runs):
            seq = 2 + 2 * k
            events = [
                TraceEvent(seq, TS + 1000 * k + i, "step_started", step_id=f"s{k}", name="t"),
                TraceEvent(
                    seq + 1, TS + 1000 * k + i + 1, "tool_called", step_id=f"s{k}", name="t",
                    status="ok", duration_ms=1.5 * i, attrs={"k": k} if i % 2 else None,
                ),
            ]  # fmt: skip
            advance(store, run, Changes(events=events))


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any]]:
    folder = tmp_path_factory.mktemp("frames")
    pg = PostgresStore(postgres.fresh_url(), scrub=redact)
    lite = SQLiteStore(folder / "s.sqlite3", scrub=redact)
    for store in (pg, lite):
        interleaved(store)
    yield pg, lite
    pg.close()
    lite.close()


FILTERS: list[dict[str, Any]] = [
    {},
    {"product": "other"},
    {"run_id": "r07"},
    {"status": "running", "flow": "f"},
    {"since": TS + 2000},
    {"run_id": "nope"},
]


@pytest.mark.parametrize("given", FILTERS, ids=lambda f: ",".join(f) or "all")
def test_the_copy_frame_equals_the_row_frame_and_sqlites(
    stores: tuple[Any, Any], given: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """For each filter: COPY, the ordinary SELECT and the SQLite store give one frame."""
    pg, lite = stores
    since = given.get("since")
    args = {k: v for k, v in given.items() if k != "since"}

    def frame(store: Any) -> pd.DataFrame:
        return frames.trace_frame(store.trace_table(since_us=since, **args))

    by_copy = frame(pg)
    monkeypatch.setattr(traces, "read_blocks", traces.fetch_blocks)
    by_rows = frame(pg)
    pd.testing.assert_frame_equal(by_copy, by_rows)
    pd.testing.assert_frame_equal(by_copy, frame(lite))
    if given.get("run_id") != "nope":
        assert len(by_copy) > 0


def test_a_frame_spanning_several_copy_rows_is_whole(
    stores: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With seven runs to a COPY row, the forty runs come in six rows and still make the
    same frame, every run's seq 1..9 in order."""
    pg, lite = stores
    monkeypatch.setattr(traces, "RUNS_PER_ROW", 7)
    frame = frames.trace_frame(pg.trace_table())
    pd.testing.assert_frame_equal(frame, frames.trace_frame(lite.trace_table()))
    assert len(frame) == RUNS * (1 + 2 * ROUNDS)
    for _, seqs in frame.groupby("run_id", observed=True)["seq"]:
        assert list(seqs) == list(range(1, 2 + 2 * ROUNDS))


def test_blocks_read_out_of_order_are_put_in_run_then_commit_order(
    stores: tuple[Any, Any],
) -> None:
    """``in_order`` on the blocks shuffled: the run keys, records, metrics and attributes
    of each block move together, back to the order of the ordinary SELECT."""
    pg, _lite = stores
    pks = pg.read(lambda conn: np.array([r[0] for r in conn.execute("SELECT pk FROM runs")]))
    ordered = pg.read(lambda conn: traces.fetch_blocks(conn, "", [], pks))
    assert ordered is not None
    n = len(ordered.pk)
    order = np.random.default_rng(5).permutation(n)
    sizes, msizes = ordered.data_sizes, ordered.metric_sizes
    starts, mstarts = np.cumsum(sizes) - sizes, np.cumsum(msizes) - msizes
    shuffled = Chunks(
        pk=ordered.pk[order],
        data=b"".join(ordered.data[starts[i] : starts[i] + sizes[i]] for i in order),
        data_sizes=sizes[order],
        metrics=b"".join(ordered.metrics[mstarts[i] : mstarts[i] + msizes[i]] for i in order),
        metric_sizes=msizes[order],
        attrs=[ordered.attrs[i] for i in order],
    )
    back = traces.in_order(shuffled)
    assert back.pk.tolist() == ordered.pk.tolist()
    assert back.data == ordered.data and back.metrics == ordered.metrics
    assert back.attrs == ordered.attrs
    assert back.data_sizes.tolist() == sizes.tolist()
    assert back.metric_sizes.tolist() == msizes.tolist()


def test_the_frame_through_pgbouncer_equals_the_direct_one(
    stores: tuple[Any, Any], tmp_path: Path
) -> None:
    """COPY in a repeatable-read transaction through PgBouncer in transaction pooling."""
    pg, _lite = stores
    database = pg.location.rsplit("/", 1)[1]
    through = PostgresStore(postgres.bouncer().url(database), scrub=redact)
    try:
        pd.testing.assert_frame_equal(
            frames.trace_frame(through.trace_table()), frames.trace_frame(pg.trace_table())
        )
    finally:
        through.close()
