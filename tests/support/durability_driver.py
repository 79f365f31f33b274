"""A program the durability tests run as separate processes (``python durability_driver.py``).

Each command does one thing a user's kernel or CLI would do to a store, prints one JSON
line with what happened, and exits; crash points come from ``MASTER_CRASH_POINT`` through
the config loader, as in production. Commands:

* ``drive ROOT STORE LEDGER [REF]`` — start a run and answer every pause until it ends;
* ``resume ROOT STORE LEDGER`` — reopen the store's run (or start one if none was stored),
  record what reopening showed, then act as a human would until it ends;
* ``start ROOT STORE REF INPUTS_JSON`` / ``open ROOT STORE RUN [--no-recover]``;
* ``race ROOT STORE RUN ACTION DIR NAME [--plain]`` — approve or submit a paused run at
  the same moment as another process (see :func:`race`);
* ``writers ROOT STORE PROCESSES COUNT DIR`` — that many processes, each doing COUNT
  hello_world runs (start, approve, submit) against one store, released together;
* ``hold-write STORE`` / ``hold-read STORE`` — keep a write lock / a read snapshot open until
  a line arrives on stdin;
* ``hold-commit ROOT STORE`` — start a hello_world run and stop inside its first commit
  (the store's write locks held) until a line arrives on stdin (or the process is killed);
* ``reader ROOT STORE SECONDS`` — read the store's runs and traces over and over;
* ``sweep ROOT WORKDIR POINTS_JSON`` — for each crash point, a process that drives a run
  and dies there, then a new process that resumes it (see :func:`sweep`);
* ``model-crash ROOT STORE LEDGER REF RUN|-`` — start ``REF`` (``-``) or retry ``RUN`` with
  a model provider that ends the process as soon as a request reaches it.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

# jsonschema imports an optional IRI grammar that takes seconds to build (as in the CLI)
sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]  # None marks it missing
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import master_sdk as ms  # noqa: E402  # after the path and module set-up above
from tests.support.durability import DyingProvider, LedgerProvider  # noqa: E402  # same reason

ANSWERS = {"ask": {"audience": "board"}}


def emit(**data: Any) -> None:
    """Print one JSON line and flush (the parent may be polling for it)."""
    print(json.dumps(data, default=str), flush=True)


def open_bench(root: str, store: str, ledger: str | None = None) -> ms.Workbench:
    """A workbench whose model calls are counted in ``ledger``."""
    providers = {"default": LedgerProvider(Path(ledger))} if ledger else None
    return ms.Workbench.open(root, store=store, providers=providers)


def answer(run: ms.Run, actions: list[str]) -> None:
    """Act on a run as a human would until it ends (or cannot go on)."""
    while not run.ended:
        if run.status == "waiting_approval":
            actions.append("approve")
            run.approve("fine", by="ana")
        elif run.status == "waiting_input":
            step = (run.waiting_for or {}).get("step", "")
            actions.append("submit")
            run.submit(ANSWERS.get(step, {"say": "hi"}), by="ana")
        elif run.status == "interrupted":
            actions.append("retry")
            run.retry(by="ana")
        elif run.status == "decided":
            actions.append("proceed")
            run.proceed()
        else:
            break


def drive(root: str, store: str, ledger: str, ref: str = "ledger/ledger") -> None:
    wb = open_bench(root, store, ledger)
    run = wb.run(ref, {"ledger": ledger})
    actions: list[str] = []
    answer(run, actions)
    emit(run_id=run.id, status=run.status, actions=actions)


def resume(root: str, store: str, ledger: str) -> None:
    wb = open_bench(root, store, ledger)
    listed = wb.runs()
    ids = list(listed["run_id"])
    at_open = dict(zip(listed["run_id"], listed["status"], strict=True))
    actions: list[str] = []
    if not ids:
        run = wb.run("ledger/ledger", {"ledger": ledger})
        reopened = None
        actions.append("start")
    else:
        (run_id,) = ids
        run = wb.get_run(run_id)
        reopened = run.status
    answer(run, actions)
    emit(
        run_id=run.id,
        listed_at_open=at_open.get(run.id),
        reopened=reopened,
        actions=actions,
        status=run.status,
        output=run.output,
        integrity=wb.store_info()["integrity"],
    )


def model_crash(root: str, store: str, ledger: str, ref: str, run_id: str) -> None:
    wb = ms.Workbench.open(root, store=store, providers={"default": DyingProvider(Path(ledger))})
    try:
        if run_id == "-":
            run = wb.run(ref, {"text": "hello"})
        else:
            run = wb.get_run(run_id).retry(by="ana")
    except ms.MasterError as exc:
        emit(result=type(exc).__name__, error=str(exc))
        return
    emit(run_id=run.id, status=run.status, error=run.error)


def start(root: str, store: str, ref: str, inputs: str) -> None:
    wb = open_bench(root, store, json.loads(inputs).get("ledger"))
    run = wb.run(ref, json.loads(inputs))
    emit(run_id=run.id, status=run.status, error=run.error)


def open_run(root: str, store: str, run_id: str, *flags: str) -> None:
    """``get_run``; with ``--barrier DIR NAME`` the first commit waits at a barrier."""
    if "--barrier" in flags:
        at = flags.index("--barrier")
        wb = barrier_bench(root, store, Path(flags[at + 1]), flags[at + 2])
    else:
        wb = open_bench(root, store)
    try:
        run = wb.get_run(run_id, recover="--no-recover" not in flags)
    except ms.MasterError as exc:
        emit(run_id=run_id, result=type(exc).__name__, error=str(exc))
        return
    emit(run_id=run.id, status=run.status, error=run.error)


def barrier_bench(root: str, store: str, folder: Path, name: str) -> ms.Workbench:
    """A workbench on ``store`` whose first commit waits at the barrier (see
    :class:`BarrierStore`); its model calls are counted in ``folder/ledger``."""
    from master_sdk.memory.open import postgres_url
    from master_sdk.memory.sqlite import SQLiteStore

    url = postgres_url(store)
    if url is not None:
        from master_sdk.memory.postgres import PostgresStore

        inner: Any = PostgresStore(url)
    else:
        inner = SQLiteStore(Path(store))
    providers = {"default": LedgerProvider(folder / "ledger")}
    return ms.Workbench.open(root, store=BarrierStore(inner, folder, name), providers=providers)


class BarrierStore:
    """The real store, except that the first commit waits at a barrier.

    Every process in a race reads the paused run, gets as far as writing its decision,
    announces it (``NAME.ready``) and waits for ``go``: so each has read the same version
    before any of them writes, and the compare-and-set alone decides who wins.
    """

    def __init__(self, inner: Any, folder: Path, name: str) -> None:
        self.inner = inner
        self.folder = folder
        self.name = name
        self.waited = False

    def commit(self, *args: Any, **kwargs: Any) -> None:
        if not self.waited:
            self.waited = True
            (self.folder / f"{self.name}.ready").touch()
            wait_file(self.folder / "go")
        self.inner.commit(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def wait_file(path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {path}")
        time.sleep(0.001)


def race(root: str, store: str, run_id: str, action: str, folder: str, name: str,
         *flags: str) -> None:  # fmt: skip
    barrier = Path(folder)
    if "--plain" in flags:
        wb = open_bench(root, store, str(barrier / "ledger"))
    else:
        wb = barrier_bench(root, store, barrier, name)
    run = wb.get_run(run_id, recover=False)
    if "--plain" in flags:
        (barrier / f"{name}.ready").touch()
        wait_file(barrier / "go")
    try:
        if action == "approve":
            run.approve(f"from {name}", by=name)
        else:
            run.submit({"say": name}, by=name)
    except ms.AlreadyResumed as exc:
        emit(result="already_resumed", error=str(exc), status=run.status, name=name)
    except ms.NotWaiting as exc:
        emit(result="not_waiting", error=str(exc), status=run.status, name=name)
    else:
        emit(result="ok", status=run.status, name=name)


def writer(root: str, store: str, count: str, gate: str, name: str = "w") -> None:
    """Open the store, wait for ``gate``, then COUNT hello_world runs to completion."""
    wb = ms.Workbench.open(root, store=store)
    (Path(gate).parent / f"{name}.ready").touch()
    wait_file(Path(gate))
    started = time.perf_counter()
    completed = 0
    errors: list[str] = []
    for number in range(int(count)):
        try:
            run = wb.run("hello_world/greet", {"text": f"{name} run {number}"})
            run.approve(by=name)
            run.submit({"audience": "board"}, by=name)
            completed += run.status == "completed"
        except ms.MasterError as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
    queued = getattr(getattr(wb.store, "_writers", None), "waits", 0)  # kernel waits
    wb.close()
    emit(
        name=name,
        completed=completed,
        errors=errors,
        seconds=time.perf_counter() - started,
        queued=queued,
    )


def writers(root: str, store: str, processes: str, count: str, folder: str) -> None:
    """PROCESSES writers, forked from this warmed-up process, released together.

    Each writer is its own OS process with its own connection; all open the (possibly
    new) store first, and start writing only when every one of them is ready.
    """
    import tempfile

    with tempfile.TemporaryDirectory() as scratch, contextlib.redirect_stdout(io.StringIO()):
        wb = ms.Workbench.open(root, store=Path(scratch) / "warm.sqlite3")
        run = wb.run("hello_world/greet", {"text": "warm"})
        run.approve()
        run.submit({"audience": "x"})
        wb.close()
    base = Path(folder)
    gate = base / "go"
    names = [f"w{i}" for i in range(int(processes))]
    pids = {
        _fork(writer, root, store, count, str(gate), name, env={}, out=base / f"{name}.txt"): name
        for name in names
    }
    deadline = time.monotonic() + 60
    while not all((base / f"{name}.ready").exists() for name in names):
        if time.monotonic() > deadline:
            raise SystemExit("writers never got ready")
        time.sleep(0.001)
    started = time.perf_counter()
    gate.touch()
    codes = _reap(pids)
    results = [
        json.loads((base / f"{name}.txt").read_text().strip().splitlines()[-1])
        if codes[name] == 0
        else {"name": name, "failed": (base / f"{name}.txt").read_text()}
        for name in names
    ]
    emit(codes=codes, results=results, seconds=time.perf_counter() - started)


def hold_lock(store: str) -> None:
    conn = sqlite3.connect(store, isolation_level=None, timeout=10)
    conn.execute("BEGIN IMMEDIATE")
    emit(held="write")
    sys.stdin.readline()
    conn.execute("ROLLBACK")
    emit(released=True)


class _StopInCommit:
    """A commit hook that reports and waits for stdin inside the first commit."""

    def __init__(self) -> None:
        self.stopped = False

    def before_commit(self, commit: Any) -> None:
        if not self.stopped:
            self.stopped = True
            emit(held="commit", run_id=commit.run.run_id, label=commit.label, pid=os.getpid())
            sys.stdin.readline()

    def after_commit(self, commit: Any) -> None:
        return None


def hold_commit(root: str, store: str) -> None:
    wb = ms.Workbench.open(root, store=store)
    wb.add_hook(_StopInCommit())
    run = wb.run("hello_world/greet", {"text": "held in its commit"})
    emit(done=run.status)


def reader(root: str, store: str, seconds: str) -> None:
    """Read runs, one run's steps and the traces until ``seconds`` passed; every read
    must see whole runs (a completed run has its four steps)."""
    wb = ms.Workbench.open(root, store=store)
    reads = 0
    broken: list[str] = []
    counts: list[int] = []
    deadline = time.monotonic() + float(seconds)
    while time.monotonic() < deadline:
        runs = wb.runs()
        counts.append(len(runs))
        done = runs[runs["status"] == "completed"] if len(runs) else runs
        for run_id in list(done["run_id"])[:3]:
            steps = wb.store.step_attempts(str(run_id))
            if len(steps) != 4:
                broken.append(f"{run_id}: {len(steps)} steps")
        wb.traces()
        reads += 1
    wb.close()
    emit(
        reads=reads,
        broken=broken,
        first=counts[0] if counts else 0,
        last=counts[-1] if counts else 0,
    )


def hold_read(store: str) -> None:
    conn = sqlite3.connect(store, isolation_level=None, timeout=10)
    conn.execute("BEGIN")
    (before,) = conn.execute("SELECT count(*) FROM runs").fetchone()
    emit(held="read", count=before)
    sys.stdin.readline()
    (inside,) = conn.execute("SELECT count(*) FROM runs").fetchone()
    conn.execute("COMMIT")
    (after,) = conn.execute("SELECT count(*) FROM runs").fetchone()
    emit(count=before, count_in_snapshot=inside, count_after=after)


def _fork(target: Any, *args: Any, env: dict[str, str], out: Path) -> int:
    """Start ``target(*args)`` in a child process (stdout to ``out``); its pid."""
    pid = os.fork()
    if pid == 0:  # the child: a new process that shares nothing with a store yet
        code = 0
        try:
            os.environ.update(env)
            buffer = io.StringIO()
            with contextlib.redirect_stdout(buffer):
                target(*args)
            out.write_text(buffer.getvalue(), encoding="utf-8")
        except BaseException as exc:  # report, never return into the parent's code
            out.write_text(f"{type(exc).__name__}: {exc}\n", encoding="utf-8")
            code = 1
        os._exit(code)
    return pid


def _reap(pids: dict[int, str]) -> dict[str, int]:
    """Wait for every child; its exit code by name."""
    codes = {}
    for pid, point in pids.items():
        _, status = os.waitpid(pid, 0)
        codes[point] = os.waitstatus_to_exitcode(status)
    return codes


def sweep(root: str, workdir: str, points: str) -> None:
    """Crash one process at each point, then resume each run in another process.

    This process imports everything once and never opens the stores it sweeps; every
    crash and every resume is a separate OS process forked from it (a crash ends with
    ``os._exit``, as a ``kill -9`` would). The crashing processes run side by side (one
    store each), and only when all have died do the resuming ones start. Writes
    ``crash.txt`` / ``resume.txt`` per point and prints the exit codes.
    """
    import tempfile

    with tempfile.TemporaryDirectory() as scratch, contextlib.redirect_stdout(io.StringIO()):
        # one whole run here first loads every module the children need (imports are the
        # slow part of a process's life); its store is closed and deleted before any fork
        warm = Path(scratch)
        drive(root, str(warm / "warm.sqlite3"), str(warm / "ledger"))
        resume(root, str(warm / "warm.sqlite3"), str(warm / "ledger"))
    names: list[str] = json.loads(points)
    folders = [Path(workdir) / str(index) for index in range(len(names))]
    for folder in folders:
        folder.mkdir(parents=True)
    phases = (("crash", drive), ("resume", resume))
    codes: dict[str, list[int]] = {name: [] for name in names}
    for phase, target in phases:
        pids = {}
        for point, folder in zip(names, folders, strict=True):
            env = {"MASTER_CRASH_POINT": point if phase == "crash" else ""}
            pid = _fork(
                target, root, str(folder / "store.sqlite3"), str(folder / "ledger"),
                env=env, out=folder / f"{phase}.txt",
            )  # fmt: skip
            pids[pid] = point
        for point, code in _reap(pids).items():
            codes[point].append(code)
    emit(codes=codes)


COMMANDS = {
    "drive": drive,
    "resume": resume,
    "start": start,
    "open": open_run,
    "race": race,
    "writers": writers,
    "hold-write": hold_lock,
    "hold-read": hold_read,
    "hold-commit": hold_commit,
    "reader": reader,
    "sweep": sweep,
    "model-crash": model_crash,
}


if __name__ == "__main__":
    COMMANDS[sys.argv[1]](*sys.argv[2:])
