"""Writers of one store queue in the kernel (``memory/sqlite/writer_queue.py``).

Every writer process of the library takes an ``flock`` on ``<store>-wlock`` around its
write transaction. These tests hold it from real processes — writers, a reader and the
``master`` CLI at once, a holder SIGKILLed inside its commit, a foreign ``sqlite3``
connection that knows nothing of the side file — and check that nothing is lost, that
waiting ends when the holder dies, and that the busy timeout still bounds every wait.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import master_sdk as ms
from master_sdk.memory.sqlite import writer_queue
from master_sdk.memory.sqlite.store import SQLiteStore
from master_sdk.memory.sqlite.writer_queue import WriterQueue
from tests.support.durability import REPO, copy_hello_project, driver_env, last_json, spawn

WRITERS = 4
RUNS_EACH = 30
PAUSED = 6


@pytest.fixture(params=["futex", "thread"])
def waiting(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """How this process's writers wait for the side lock: on the futex in the side file
    (Linux), or through a helper thread's blocking ``flock`` (elsewhere)."""
    if request.param == "futex" and writer_queue._SYS_FUTEX is None:
        pytest.skip("no futex(2) on this machine")
    if request.param == "thread":
        monkeypatch.setattr(writer_queue, "_SYS_FUTEX", None)
    return str(request.param)


def neighbour(store: Path) -> WriterQueue:
    """Another store of this process that has opened ``store``'s side file: a writer that
    is the file's only user skips the side lock (nobody to queue with), so tests of how
    writers queue keep one more user registered (close it at the end)."""
    queue = WriterQueue(store)
    assert queue.enabled
    return queue


def uses(queue: WriterQueue, waiting: str) -> None:
    """Check the queue waits the way the test asked for."""
    assert queue.enabled
    assert (queue._futex is not None) == (waiting == "futex")


def cli(root: Path, store: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``master --root ROOT --store STORE ARGS`` in a new process."""
    return subprocess.run(
        [sys.executable, "-m", "master_sdk.cli", "--root", str(root), "--store", str(store), *args],
        cwd=REPO,
        env=driver_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def read_line(proc: subprocess.Popen[str]) -> dict[str, Any]:
    """The next JSON line a driver prints (with its stderr when it printed none)."""
    assert proc.stdout is not None
    line = proc.stdout.readline()
    report: dict[str, Any] | None = json.loads(line) if line.startswith("{") else None
    assert report is not None, line + (proc.stderr.read() if proc.stderr else "")
    return report


@pytest.mark.slow
def test_writer_processes_a_reader_and_the_cli_on_one_store_lose_nothing(tmp_path: Path) -> None:
    """4 writer processes x 30 hello_world runs, a reader process reading the runs and
    traces all along, and ``master approve`` of six paused runs from the CLI, all on one
    store: no errors, every run there and whole, the reader never saw half a run, and the
    writers really queued in the kernel (the side file exists, waits were counted)."""
    root = copy_hello_project(tmp_path / "hello")
    store = tmp_path / "shared.sqlite3"
    with ms.Workbench.open(root, store=store) as wb:
        paused = [wb.run("hello_world/greet", {"text": f"paused {i}"}).id for i in range(PAUSED)]
    folder = tmp_path / "writers"
    folder.mkdir()
    writers = spawn("writers", root, store, str(WRITERS), str(RUNS_EACH), folder)
    reader = spawn("reader", root, store, "6")
    approvals = [cli(root, store, "approve", run_id, "--by", "cli") for run_id in paused]
    out, err = writers.communicate(timeout=300)
    assert writers.returncode == 0, err
    report = last_json(out)
    assert report is not None and set(report["codes"].values()) == {0}, report
    reader_out, reader_err = reader.communicate(timeout=120)
    assert reader.returncode == 0, reader_err
    seen = last_json(reader_out)
    for done in approvals:
        assert done.returncode == 0, done.stderr

    results = report["results"]
    assert all(r["errors"] == [] and r["completed"] == RUNS_EACH for r in results), results
    assert sum(r["queued"] for r in results) > 0  # they did wait for each other in the kernel
    assert not Path(f"{store}-wlock").exists()  # the last store to close removed it
    assert seen is not None and seen["reads"] > 0 and seen["broken"] == [], seen
    total = WRITERS * RUNS_EACH
    with ms.Workbench.open(root, store=store) as wb:
        info = wb.store_info()
        assert info["integrity"] == "ok"
        assert info["runs_by_status"] == {"completed": total, "waiting_input": PAUSED}
        audit = wb.approvals()
        assert set(audit[audit["by"] == "cli"]["run_id"]) == set(paused)
        trace = wb.traces()
    seqs = trace.groupby("run_id", observed=True)["seq"].agg(["min", "max", "count", "nunique"])
    assert len(seqs) == total + PAUSED
    assert (seqs["min"] == 1).all() and (seqs["max"] == seqs["count"]).all()
    assert (seqs["nunique"] == seqs["count"]).all()


def in_thread(work: Callable[[], object]) -> tuple[threading.Thread, dict[str, Any]]:
    """Run ``work`` in a thread; the dict gets its ``result`` or ``error`` and ``ended``."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = work()
        except BaseException as exc:  # handed to the test
            box["error"] = exc
        box["ended"] = time.monotonic()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, box


def test_a_writer_killed_inside_its_commit_hands_the_lock_to_the_next_at_once(
    tmp_path: Path, waiting: str
) -> None:
    """A process stopped inside its first commit (both locks held) is SIGKILLed; a writer
    of another store object queued behind it in the kernel goes on as soon as it dies,
    long before its 30 s busy timeout; the killed run was never written."""
    root = copy_hello_project(tmp_path / "hello")
    store = tmp_path / "s.sqlite3"
    with ms.Workbench.open(root, store=store) as wb:
        wb.run("hello_world/greet", {"text": "before"}).approve(by="ana")
    near = neighbour(store)
    holder = spawn("hold-commit", root, store, stdin=subprocess.PIPE)
    try:
        held = read_line(holder)
        assert held["held"] == "commit"
        waiter = SQLiteStore(store, busy_timeout_ms=30_000)
        try:
            uses(waiter._writers, waiting)
            thread, box = in_thread(
                lambda: waiter.transaction(
                    lambda conn: conn.execute("CREATE TABLE IF NOT EXISTS marks (x)")
                )
            )
            deadline = time.monotonic() + 20
            while waiter._writers.waits == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(0.2)
            assert thread.is_alive() and waiter._writers.waits == 1  # queued in the kernel
            killed = time.monotonic()
            os.kill(holder.pid, signal.SIGKILL)
            holder.wait(timeout=30)
            thread.join(timeout=30)
            assert "error" not in box, box
            assert box["ended"] - killed < 3
            assert waiter.read(lambda c: c.execute("SELECT count(*) FROM marks").fetchone())
        finally:
            waiter.close()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        near.close()
    assert holder.returncode == -signal.SIGKILL
    with ms.Workbench.open(root, store=store) as wb:
        assert held["run_id"] not in set(wb.runs()["run_id"])
        assert len(wb.runs()) == 1
        assert wb.store_info()["integrity"] == "ok"
        wb.run("hello_world/greet", {"text": "after"}).approve(by="ana")  # no lock left


def hold_sqlite(store: Path) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    """A process holding ``BEGIN IMMEDIATE`` with plain sqlite3 (no side lock)."""
    proc = spawn("hold-write", store, stdin=subprocess.PIPE)
    return proc, read_line(proc)


def test_a_foreign_writer_past_the_busy_timeout_gives_store_busy_to_every_queued_writer(
    tmp_path: Path, waiting: str
) -> None:
    """A plain sqlite3 connection in another process holds the write lock: the writer
    holding the side lock and the one queued behind it in the kernel both raise StoreBusy
    naming the store after about the busy timeout (not twice it), and write nothing."""
    store = tmp_path / "s.sqlite3"
    SQLiteStore(store).close()
    near = neighbour(store)
    first = SQLiteStore(store, busy_timeout_ms=400)
    second = SQLiteStore(store, busy_timeout_ms=400)
    uses(first._writers, waiting)
    proc, held = hold_sqlite(store)
    assert held["held"] == "write"
    try:
        started = time.monotonic()
        workers = [
            in_thread(
                lambda s=s: s.transaction(lambda c: c.execute("CREATE TABLE marks (x)"))  # type: ignore[misc]
            )
            for s in (first, second)
        ]
        for thread, _ in workers:
            thread.join(timeout=30)
        for _, box in workers:
            assert isinstance(box.get("error"), ms.StoreBusy), box
            assert str(store) in str(box["error"]) and "nothing was written" in str(box["error"])
            assert 0.35 < box["ended"] - started < 2.5
        assert first._writers.waits + second._writers.waits == 1  # one of them queued
        assert not first._writers.held and not second._writers.held
    finally:
        proc.communicate("\n", timeout=30)
        first.close()
        second.close()
        near.close()
    again = SQLiteStore(store)
    try:
        again.transaction(lambda c: c.execute("CREATE TABLE marks (x)"))  # free again
    finally:
        again.close()


def test_a_side_lock_held_past_the_busy_timeout_is_waited_out_then_written_past(
    tmp_path: Path, waiting: str
) -> None:
    """Another process holds only the side lock (stopped between its locks, say): a writer
    waits the busy timeout in the kernel, then writes under SQLite's lock alone, which is
    free; once the side lock is released the next writes take it at once again."""
    store = tmp_path / "s.sqlite3"
    SQLiteStore(store).close()
    near = neighbour(store)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_FLOCK, f"{store}-wlock"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    writer = SQLiteStore(store, busy_timeout_ms=300)
    try:
        uses(writer._writers, waiting)
        started = time.monotonic()
        writer.transaction(lambda c: c.execute("CREATE TABLE marks (x)"))
        assert 0.25 < time.monotonic() - started < 3
        started = time.monotonic()
        writer.transaction(lambda c: c.execute("INSERT INTO marks VALUES (1)"))
        assert 0.25 < time.monotonic() - started < 3  # adopts the wait still in the kernel
        assert writer._writers.waits == 2
        holder.communicate("\n", timeout=30)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not writer._writers.acquire(0.05):
            pass
        assert writer._writers.held
        writer._writers.release()
        started = time.monotonic()
        writer.transaction(lambda c: c.execute("INSERT INTO marks VALUES (2)"))
        assert time.monotonic() - started < 0.25
        assert writer.read(lambda c: c.execute("SELECT count(*) FROM marks").fetchone()[0]) == 2
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        writer.close()
        near.close()


HOLD_FLOCK = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.readline()
"""


class _Watch:
    """A commit hook recording whether its thread holds the side lock when each part
    runs."""

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store
        self.before: list[bool] = []
        self.after: list[bool] = []

    def _mine(self) -> bool:
        return self.store._writers.owner == threading.get_ident()

    def before_commit(self, commit: Any) -> None:
        self.before.append(self._mine())

    def after_commit(self, commit: Any) -> None:
        self.after.append(self._mine())


def test_threads_share_one_side_lock_taken_per_transaction_and_never_across_a_callback(
    tmp_path: Path,
) -> None:
    """8 threads of one workbench: the side lock is taken inside every commit and released
    before its sync and its ``after_commit`` hooks; threads of one process never queue on
    it (they queue on the store's own lock), and every run is there."""
    root = copy_hello_project(tmp_path / "hello")
    with ms.Workbench.open(root, store=tmp_path / "s.sqlite3") as wb:
        store = wb.store
        assert isinstance(store, SQLiteStore)
        watch = _Watch(store)
        wb.add_hook(watch)
        near = neighbour(tmp_path / "s.sqlite3")

        def runs(index: int) -> None:
            for number in range(5):
                run = wb.run("hello_world/greet", {"text": f"{index}-{number}"})
                run.approve(by="ana")
                run.submit({"audience": "board"}, by="ana")

        threads = [threading.Thread(target=runs, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert wb.store_info()["runs_by_status"] == {"completed": 40}
        assert store._writers.waits == 0
        near.close()
    assert watch.before and all(watch.before)
    assert watch.after and not any(watch.after)


def test_a_fork_does_not_share_the_parents_side_lock(tmp_path: Path, waiting: str) -> None:
    """A child forked while the parent holds the side lock cannot take it (an inherited
    descriptor would share it): it waits, and gets it once the parent releases it."""
    near = neighbour(tmp_path / "s.sqlite3")
    queue = WriterQueue(tmp_path / "s.sqlite3")
    assert queue.acquire(1.0)
    uses(queue, waiting)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        code = 1
        try:
            os.close(read_end)
            blocked = not queue.acquire(0.2)
            os.write(write_end, b"1")
            code = 0 if blocked and queue.acquire(20.0) else 2
        finally:
            os._exit(code)
    os.close(write_end)
    try:
        assert os.read(read_end, 1) == b"1"  # the child found it taken
        queue.release()
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        os.close(read_end)
        queue.close()
        near.close()


def test_a_store_only_read_never_creates_the_side_file(tmp_path: Path) -> None:
    """Opening and reading a store leaves no ``-wlock`` file; the first write makes it
    with the store file's permissions, and the last store to close removes it."""
    store = tmp_path / "s.sqlite3"
    root = copy_hello_project(tmp_path / "hello")
    with ms.Workbench.open(root, store=store) as wb:
        wb.runs()
    os.chmod(store, 0o640)
    side = Path(f"{store}-wlock")
    side.unlink(missing_ok=True)
    with ms.Workbench.open(root, store=store) as wb:
        assert len(wb.runs()) == 0
        assert not side.exists()
        wb.run("hello_world/greet", {"text": "first write"})
        assert side.exists()
        assert side.stat().st_mode & 0o777 == 0o640
        with ms.Workbench.open(root, store=store) as other:
            other.run("hello_world/greet", {"text": "second store"})
        assert side.exists()  # still used by the first store
        wb.run("hello_world/greet", {"text": "after the other closed"})
    assert not side.exists()


def test_without_a_side_file_writers_poll_as_before(tmp_path: Path) -> None:
    """Where the side file cannot be opened (here: a link to a folder that is not there)
    writers go on with SQLite's lock alone; an existing side file that cannot be written
    is locked through a read-only descriptor."""
    store = tmp_path / "s.sqlite3"
    Path(f"{store}-wlock").symlink_to(tmp_path / "missing" / "wlock")
    plain = SQLiteStore(store)
    try:
        plain.transaction(lambda c: c.execute("CREATE TABLE marks (x)"))
        assert not plain._writers.enabled and plain._writers.waits == 0
    finally:
        plain.close()
    folder = tmp_path / "ro"
    folder.mkdir()
    side = folder / "s.sqlite3-wlock"
    side.touch()
    os.chmod(side, 0o444)
    near = neighbour(folder / "s.sqlite3")
    queue = WriterQueue(folder / "s.sqlite3")
    other = os.open(side, os.O_RDONLY)
    try:
        if os.geteuid() != 0:  # root may open it for writing anyway
            assert queue.enabled
        assert queue.acquire(1.0)
        with pytest.raises(BlockingIOError):
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        queue.release()
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(other)
        queue.close()
        near.close()


def test_on_a_read_only_mount_the_side_lock_stays_out_of_the_way(tmp_path: Path) -> None:
    """A folder on a real read-only filesystem: no side file can be made, so taking the
    side lock says no (writers keep to SQLite's lock) and nothing raises."""
    folder = tmp_path / "ro"
    folder.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a read-only filesystem here: {done.stderr.strip()}")
    try:
        queue = WriterQueue(folder / "s.sqlite3")
        assert not queue.acquire(1.0)
        assert not queue.enabled and not queue.held
        queue.release()
        queue.close()
        assert not (folder / "s.sqlite3-wlock").exists()
    finally:
        subprocess.run(["umount", str(folder)], check=False)


def test_the_log_is_folded_into_the_database_after_the_locks(tmp_path: Path) -> None:
    """The writer connection does not checkpoint inside ``COMMIT``; every ``EVERY``
    commits the store does, outside its locks: the database file alone (without its
    log) then holds what was committed before."""
    from master_sdk.memory.sqlite.checkpoints import EVERY

    store = tmp_path / "s.sqlite3"
    writer = SQLiteStore(store)
    try:
        assert writer.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        writer.transaction(lambda c: c.execute("CREATE TABLE marks (x)"))
        for number in range(2 * EVERY):
            writer.transaction(
                lambda c, n=number: c.execute("INSERT INTO marks VALUES (?)", (n,))  # type: ignore[misc]
            )
        assert writer._checkpoints.runs == 2
        copy = tmp_path / "copy.sqlite3"
        copy.write_bytes(store.read_bytes())  # the database file without its -wal
        conn = sqlite3.connect(copy)
        try:
            (count,) = conn.execute("SELECT count(*) FROM marks").fetchone()
        finally:
            conn.close()
        assert 2 * EVERY - 2 <= count <= 2 * EVERY  # up to the 2nd checkpoint
    finally:
        writer.close()


USE_AND_WAIT = """
import sys
from pathlib import Path
from master_sdk.memory.sqlite.writer_queue import WriterQueue
queue = WriterQueue(Path(sys.argv[1]))
assert queue.enabled  # the side file is open and this store registered as its user
print("using", flush=True)
sys.stdin.readline()
queue.close()
"""


@contextlib.contextmanager
def another_user(store: Path) -> Iterator[subprocess.Popen[str]]:
    """A process whose store has ``store``'s side file open (registered as a user) until
    it gets a line on stdin; killed at the end if still there."""
    other = subprocess.Popen(
        [sys.executable, "-c", USE_AND_WAIT, str(store)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=driver_env(),
        cwd=REPO,
    )
    try:
        assert other.stdout is not None and other.stdout.readline().strip() == "using"
        yield other
    finally:
        if other.poll() is None:
            other.kill()
            other.wait()


def test_the_side_file_stays_while_another_process_uses_it(tmp_path: Path) -> None:
    """A store closing while a store in another process still has the side file open
    leaves it; the last one to close removes it."""
    store = tmp_path / "s.sqlite3"
    with another_user(store) as other:
        queue = WriterQueue(store)
        assert queue.acquire(10.0)
        queue.release()
        queue.close()
        assert Path(f"{store}-wlock").exists()
        other.communicate("\n", timeout=30)
        assert other.returncode == 0
        assert not Path(f"{store}-wlock").exists()


def test_a_lone_writer_skips_the_side_lock_until_another_store_opens_it(tmp_path: Path) -> None:
    """A store that is the side file's only user does not take the side lock (nobody to
    queue with, no system call spent); once a store in another process opens the file it
    takes it again within the recheck interval, and goes back to skipping it after that
    store closed."""
    store = tmp_path / "s.sqlite3"
    queue = WriterQueue(store)
    settle = writer_queue._ALONE_RECHECK_S * 3
    try:
        assert queue.enabled
        assert not queue.acquire(1.0) and not queue.held  # alone
        with another_user(store) as other:
            time.sleep(settle)
            assert queue.acquire(1.0) and queue.held  # another store uses the file now
            queue.release()
            other.communicate("\n", timeout=30)
            assert other.returncode == 0
        time.sleep(settle)
        assert not queue.acquire(1.0) and not queue.held  # alone again
    finally:
        queue.close()
