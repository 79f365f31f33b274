"""Nothing committed is lost when other processes open, read and close the same store.

Process A is a long-lived "kernel": it writes runs, reads every frame (runs, traces,
steps, approvals, budget), and reports each run it saw committed. Between A's writes,
process B — a fresh process each time — opens the same store, reads it through one API
reader or one CLI command, and closes it. After every B, A writes more, and the next B
must see A's new runs. At the end A writes more and dies hard (``os._exit`` or
SIGKILL); every run A reported committed must be in the store, ``integrity_check`` ok.

This is the failure of a store read through a second SQLite library in A: closing that
library's connection dropped the POSIX locks of A's ``sqlite3`` connection, so B believed
it was the last user, checkpointed and deleted the WAL A was still writing to.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import master_sdk as ms
from tests.support.durability import REPO, driver_env, make_ledger_project

pytestmark = pytest.mark.slow

KERNEL = textwrap.dedent(
    '''
    """Process A: commands on stdin, one JSON line per answer on stdout."""
    import json, os, sys
    sys.modules.setdefault("rfc3987_syntax", None)
    import master_sdk as ms

    root, store, ledger = sys.argv[1:4]
    wb = ms.Workbench.open(root, store=store)
    runs = []

    def say(**data):
        print(json.dumps(data), flush=True)

    def one(n):
        if n % 2:
            run = wb.run("ledger/pause", {"ledger": ledger})
            run.approve("fine", by="ana")
            run.submit({"say": "hi"}, by="ana")
        else:
            run = wb.run("ledger/two", {"ledger": ledger})
        assert run.status == "completed", run.status
        runs.append(run)
        say(committed=run.id)

    for line in sys.stdin:
        command, _, arg = line.strip().partition(" ")
        if command == "write":
            for _ in range(int(arg)):
                one(len(runs))
            say(done="write")
        elif command == "forever":
            while True:
                one(len(runs))
        elif command == "read":
            seen = set(wb.runs()["run_id"])
            traced = set(wb.traces()["run_id"].astype(str))
            wb.approvals()
            for run in runs:
                run.trace()
                run.steps()
                run.budget()
            say(done="read", seen=len(seen), traced=len(traced))
        elif command == "exit":
            os._exit(0)
    '''
)

READER = textwrap.dedent(
    '''
    """Process B: open the store, read it one way, close it, say which runs it saw."""
    import json, sys
    sys.modules.setdefault("rfc3987_syntax", None)
    import master_sdk as ms

    root, store, how = sys.argv[1:4]
    wb = ms.Workbench.open(root, store=store)
    ids = list(wb.runs()["run_id"])
    if how == "traces":
        ids = sorted(set(wb.traces()["run_id"].astype(str)))
    elif how == "approvals":
        wb.approvals()
    elif how in ("trace", "steps", "budget", "get_run"):
        for run_id in ids:
            run = wb.get_run(run_id, recover=False)
            if how != "get_run":
                getattr(run, how)()
    elif how == "store_info":
        assert wb.store_info()["integrity"] == "ok"
    wb.close()
    print(json.dumps({"seen": ids}), flush=True)
    '''
)

CLI = (sys.executable, "-m", "master_sdk.cli")
API_READERS = ("runs", "traces", "approvals", "trace", "steps", "budget", "get_run", "store_info")
# every CLI command that opens the store without changing a run ({run}: A's latest run)
CLI_COMMANDS = (
    ("runs",),
    ("show", "{run}", "--no-recover"),
    ("show", "{run}"),
    ("trace", "{run}"),
    ("trace", "{run}", "--format", "json"),
    ("store", "info"),
    ("store", "export", "{tmp}/out.jsonl", "--force"),
    ("store", "export", "{tmp}/out.sqlite3", "--force"),
    ("products",),
    ("flows",),
    ("validate",),
)


class Kernel:
    """Process A, driven line by line."""

    def __init__(self, tmp: Path, root: Path, store: Path) -> None:
        script = tmp / "kernel.py"
        script.write_text(KERNEL, encoding="utf-8")
        self.proc = subprocess.Popen(
            [sys.executable, str(script), str(root), str(store), str(tmp / "ledger")],
            env=driver_env(),
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.committed: list[str] = []

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def answer(self) -> dict[str, Any]:
        """The next answer of A that is not a commit report (commit reports are kept)."""
        assert self.proc.stdout is not None
        while True:
            line = self.proc.stdout.readline()
            if not line:
                err = self.proc.stderr.read() if self.proc.stderr else ""
                raise AssertionError(f"process A ended (exit {self.proc.wait()}):\n{err}")
            data: dict[str, Any] = json.loads(line)
            if "committed" in data:
                self.committed.append(data["committed"])
                continue
            return data

    def write(self, n: int) -> None:
        self.send(f"write {n}")
        assert self.answer() == {"done": "write"}

    def read(self) -> None:
        self.send("read")
        answer = self.answer()
        assert answer["done"] == "read"
        assert answer["seen"] == len(self.committed), answer

    def commits_until(self, count: int) -> None:
        """Read commit reports until ``count`` runs were reported in all."""
        assert self.proc.stdout is not None
        while len(self.committed) < count:
            line = self.proc.stdout.readline()
            if not line:
                err = self.proc.stderr.read() if self.proc.stderr else ""
                raise AssertionError(f"process A ended (exit {self.proc.wait()}):\n{err}")
            self.committed.append(json.loads(line)["committed"])


def read_elsewhere(tmp: Path, root: Path, store: Path, how: str) -> list[str]:
    """Process B through the API: the run ids it saw."""
    script = tmp / "reader.py"
    script.write_text(READER, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script), str(root), str(store), how],
        env=driver_env(),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"reader {how} failed:\n{done.stderr}"
    seen: list[str] = json.loads(done.stdout.strip().splitlines()[-1])["seen"]
    return seen


def cli_elsewhere(tmp: Path, root: Path, store: Path, args: tuple[str, ...], run: str) -> str:
    """Process B through the ``master`` CLI: its standard output."""
    argv = [a.format(run=run, tmp=tmp) for a in args]
    done = subprocess.run(
        [*CLI, "--root", str(root), "--store", str(store), *argv],
        env=driver_env(),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"master {' '.join(argv)} failed:\n{done.stderr}"
    return done.stdout


def check_store(root: Path, store: Path, committed: list[str]) -> None:
    """Every run reported committed is in the store, completed; integrity is ok."""
    with ms.Workbench.open(root, store=store) as wb:
        info = wb.store_info()
        stored = wb.runs()
        status = dict(zip(stored["run_id"], stored["status"].astype(str), strict=True))
    assert info["integrity"] == "ok"
    missing = [run_id for run_id in committed if run_id not in status]
    assert missing == [], f"{len(missing)} of {len(committed)} committed runs were lost"
    assert {status[run_id] for run_id in committed} == {"completed"}


def project(tmp: Path) -> tuple[Path, Path]:
    root = make_ledger_project(tmp / "project")
    return root, tmp / "store" / "master.sqlite3"


def finish_hard(kernel: Kernel, how: str) -> None:
    """A writes more and dies: ``os._exit`` after its writes, or SIGKILL mid-run."""
    if how == "exit":
        kernel.write(3)
        kernel.send("exit")
        assert kernel.proc.wait(timeout=60) == 0
    else:
        kernel.send("forever")
        kernel.commits_until(len(kernel.committed) + 3)
        kernel.proc.send_signal(signal.SIGKILL)
        assert kernel.proc.wait(timeout=60) == -signal.SIGKILL


@pytest.mark.parametrize("how", ["exit", "sigkill"])
def test_api_readers_in_other_processes_lose_no_committed_run(tmp_path: Path, how: str) -> None:
    """A writes and reads every frame; after each API reader in process B (runs, traces,
    approvals, trace, steps, budget, get_run, store_info) A writes more and B's next read
    sees all of A's runs; after A dies hard every committed run is in the store."""
    root, store = project(tmp_path)
    kernel = Kernel(tmp_path, root, store)
    try:
        kernel.write(2)
        for reader in API_READERS:
            kernel.read()
            seen = read_elsewhere(tmp_path, root, store, reader)
            assert set(kernel.committed) <= set(seen), f"B ({reader}) missed runs of A"
            kernel.write(2)
        kernel.read()
        seen = read_elsewhere(tmp_path, root, store, "runs")
        assert set(kernel.committed) <= set(seen), "B missed runs A wrote after readers closed"
        finish_hard(kernel, how)
    finally:
        if kernel.proc.poll() is None:
            kernel.proc.kill()
            kernel.proc.wait()
    check_store(root, store, kernel.committed)


@pytest.mark.parametrize("how", ["exit", "sigkill"])
def test_cli_commands_in_other_processes_lose_no_committed_run(tmp_path: Path, how: str) -> None:
    """A writes and reads every frame; after each ``master`` command that opens the store
    (runs, show, trace, store info, store export, products, flows, validate) A writes
    more and ``master runs`` sees all of A's runs; after A dies hard nothing is lost."""
    root, store = project(tmp_path)
    kernel = Kernel(tmp_path, root, store)
    try:
        kernel.write(2)
        for args in CLI_COMMANDS:
            kernel.read()
            out = cli_elsewhere(tmp_path, root, store, args, kernel.committed[-1])
            if args == ("store", "info"):
                assert f"runs: {len(kernel.committed)}" in out
            kernel.write(2)
            listed = cli_elsewhere(tmp_path, root, store, ("runs",), "")
            missing = [r for r in kernel.committed if r not in listed]
            assert missing == [], f"after master {' '.join(args)}, B missed {missing}"
        finish_hard(kernel, how)
    finally:
        if kernel.proc.poll() is None:
            kernel.proc.kill()
            kernel.proc.wait()
    check_store(root, store, kernel.committed)
