"""Reviewers claiming paused runs from separate processes on one PostgreSQL store: every
run goes to exactly one of them, and a claim skips runs another claimer is locking instead
of waiting for them (``FOR NO KEY UPDATE SKIP LOCKED``)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import psycopg

from master_sdk.memory.postgres import PostgresStore
from tests.contract.test_store_contract import TS, pause
from tests.support import postgres

RUNS = 40
# a reviewer process: waits for the start file, then claims one run at a time until none
# is left, and prints what it got
CLAIMER = """
import json, sys, time
from pathlib import Path
from master_sdk.memory.postgres import PostgresStore
url, name, go = sys.argv[1], sys.argv[2], Path(sys.argv[3])
store = PostgresStore(url)
deadline = time.monotonic() + 60
while not go.exists():
    if time.monotonic() > deadline:
        raise SystemExit("the start file never came")
    time.sleep(0.005)
got = []
while True:
    claimed = store.claim(name, 2**62, now_us=0, statuses=["waiting_approval"],
                          limit=int(sys.argv[4]))
    if not claimed:
        break
    got.extend(c.run_id for c in claimed)
store.close()
print(json.dumps(got))
"""


def paused_store(url: str, n: int) -> list[str]:
    store = PostgresStore(url)
    try:
        return [pause(store, f"p{i:02d}", "waiting_approval", at=TS + i).run_id for i in range(n)]
    finally:
        store.close()


def claimer(url: str, name: str, go: Path, limit: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CLAIMER, url, name, str(go), str(limit)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_processes_claiming_the_same_queue_share_it_without_overlap(tmp_path: Path) -> None:
    """Two processes released together claim one run at a time until none is left: the
    forty runs are split between them, none twice, and each lease names its claimer."""
    url = postgres.fresh_url()
    ids = paused_store(url, RUNS)
    go = tmp_path / "go"
    procs = {name: claimer(url, name, go, 1) for name in ("ana", "bo")}
    go.touch()
    got: dict[str, list[str]] = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        got[name] = json.loads(out)
    taken = got["ana"] + got["bo"]
    assert sorted(taken) == ids and len(set(taken)) == RUNS
    with psycopg.connect(url) as conn:
        holders = dict(
            conn.execute(
                "SELECT r.run_id, v.reserved_by FROM reservations v JOIN runs r ON r.pk = v.run_pk"
            ).fetchall()
        )
    assert holders == {run_id: name for name, runs in got.items() for run_id in runs}


def test_a_claim_skips_runs_another_claimer_has_locked_instead_of_waiting(
    tmp_path: Path,
) -> None:
    """While another transaction holds the two oldest runs locked (as a claimer does while
    it claims them), a claiming process takes the others and finishes; it never waits for
    the lock, and the locked runs stay unclaimed."""
    url = postgres.fresh_url()
    ids = paused_store(url, 6)
    go = tmp_path / "go"
    with psycopg.connect(url) as holder:
        locked = holder.execute(
            "SELECT run_id FROM runs ORDER BY updated_us LIMIT 2 FOR NO KEY UPDATE"
        ).fetchall()
        assert [r[0] for r in locked] == ids[:2]
        proc = claimer(url, "ana", go, 10)
        go.touch()
        began = time.monotonic()
        out, err = proc.communicate(timeout=60)  # would hang here if the claim waited
        assert proc.returncode == 0, err
        assert json.loads(out) == ids[2:]
        assert time.monotonic() - began < 60
        holder.rollback()
    store = PostgresStore(url)
    try:
        assert store.reservation(ids[0]) is None and store.reservation(ids[1]) is None
    finally:
        store.close()
