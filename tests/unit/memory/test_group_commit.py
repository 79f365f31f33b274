"""Group commit: many threads' commits share one transaction, each kept or failed alone."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from master_sdk.errors import StoreError
from master_sdk.memory.group_commit import GroupCommit, Pending, WriteOne


class Store:
    """A real SQLite file; each group is one BEGIN IMMEDIATE ... COMMIT."""

    def __init__(self, path: Path, *, commit_delay: float = 0.0) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("CREATE TABLE t (k TEXT PRIMARY KEY)")
        self.lock = threading.Lock()
        self.commit_delay = commit_delay
        self.syncs: list[bool] = []
        self.fail_commit = False
        self.group = GroupCommit(self.transaction)

    def transaction(self, batch: list[Pending], write_one: WriteOne, sync: bool) -> None:
        with self.lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                for pending in batch:
                    write_one(self.conn, pending)
                if self.fail_commit:
                    raise StoreError("disk full")
                time.sleep(self.commit_delay)  # stands for the WAL sync
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.syncs.append(sync)

    def insert(self, key: str, **kwargs: object) -> None:
        self.group.commit(
            Pending(lambda conn: conn.execute("INSERT INTO t VALUES (?)", (key,)), **kwargs)  # type: ignore[arg-type]
        )

    def keys(self, path: Path) -> set[str]:
        other = sqlite3.connect(path)
        try:
            return {row[0] for row in other.execute("SELECT k FROM t")}
        finally:
            other.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "g.sqlite3", commit_delay=0.002)
    yield s
    s.conn.close()


def test_a_lone_commit_is_durable_when_it_returns(store: Store, tmp_path: Path) -> None:
    """One caller: its own group, visible to another connection at once."""
    store.insert("a")
    assert store.keys(tmp_path / "g.sqlite3") == {"a"}
    assert store.group.groups == 1


def test_concurrent_commits_share_transactions(store: Store, tmp_path: Path) -> None:
    """32 threads x 20 commits: every row written, in far fewer transactions."""

    def worker(n: int) -> None:
        for i in range(20):
            store.insert(f"{n}-{i}")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(store.keys(tmp_path / "g.sqlite3")) == 640
    assert store.group.commits == 640
    assert store.group.groups < 640 / 4


def test_a_failing_commit_is_rolled_back_alone(store: Store, tmp_path: Path) -> None:
    """A duplicate key in a group fails only its caller; the others are written."""
    store.insert("dup")
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def worker(key: str) -> None:
        barrier.wait()
        try:
            store.insert(key)
        except sqlite3.IntegrityError as exc:
            errors.append(exc)

    keys = ["dup", *(f"k{i}" for i in range(7))]
    threads = [threading.Thread(target=worker, args=(k,)) for k in keys]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(errors) == 1
    assert store.keys(tmp_path / "g.sqlite3") == {"dup", *(f"k{i}" for i in range(7))}


def test_a_before_commit_check_that_raises_drops_only_its_commit(
    store: Store, tmp_path: Path
) -> None:
    """before_commit runs inside the transaction; raising rolls that commit back."""

    def refuse() -> None:
        raise RuntimeError("not this one")

    with pytest.raises(RuntimeError, match="not this one"):
        store.insert("x", before_commit=refuse)
    store.insert("y")
    assert store.keys(tmp_path / "g.sqlite3") == {"y"}


def test_a_failed_transaction_fails_every_commit_of_the_group(store: Store, tmp_path: Path) -> None:
    """COMMIT failing: nothing of the group is written, each caller gets the error, and
    each commit's undo ran."""
    store.fail_commit = True
    undone: list[str] = []
    with pytest.raises(StoreError, match="disk full"):
        store.insert("z", undo=lambda: undone.append("z"))
    assert undone == ["z"]
    store.fail_commit = False
    assert store.keys(tmp_path / "g.sqlite3") == set()


def test_a_group_syncs_when_any_of_its_commits_asks(store: Store) -> None:
    """sync=False commits alone do not ask for a sync; one sync=True in the group does."""
    store.insert("a", sync=False)
    store.insert("b", sync=True)
    assert store.syncs == [False, True]


def test_commits_that_need_no_sync_do_not_wait_for_one(tmp_path: Path) -> None:
    """Mixed unsynced and synced commits: the unsynced ones are written in transactions
    that do not sync, whatever groups they fall in; every commit is written."""
    store = Store(tmp_path / "q.sqlite3", commit_delay=0.005)
    barrier = threading.Barrier(12)

    def insert(i: int) -> None:
        barrier.wait()
        store.insert(f"k{i}", sync=i % 2 == 0)

    threads = [threading.Thread(target=insert, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert False in store.syncs and True in store.syncs
    assert len(store.keys(tmp_path / "q.sqlite3")) == 12
    store.conn.close()


def test_a_caller_interrupted_while_waiting_is_taken_out_and_the_others_go_on(
    tmp_path: Path,
) -> None:
    """A KeyboardInterrupt in a caller waiting behind a leader: its commit is not written,
    the leader's is, and later commits find a leader (nobody waits for the one that left)."""
    import os
    import signal

    store = Store(tmp_path / "g.sqlite3", commit_delay=0.4)
    leading = threading.Thread(target=store.insert, args=("a",))
    leading.start()
    deadline = time.monotonic() + 5
    while not store.group._leading:  # the leader is inside its transaction
        assert time.monotonic() < deadline
        time.sleep(0.001)
    threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGINT)).start()
    with pytest.raises(KeyboardInterrupt):
        store.insert("main")
    store.commit_delay = 0.0
    after = [threading.Thread(target=store.insert, args=(f"b{i}",)) for i in range(4)]
    for t in after:
        t.start()
    for t in [leading, *after]:
        t.join(5)
        assert not t.is_alive()
    assert store.keys(tmp_path / "g.sqlite3") == {"a", "b0", "b1", "b2", "b3"}
    store.conn.close()
