"""A commit that fails saying "nothing was written" has written nothing.

A real process runs into a real file size limit (``RLIMIT_FSIZE``: the kernel refuses to
grow any file beyond it, as a full disk would) in the middle of its work; another process
then opens the store and finds exactly the runs that process saw committed, with their
whole traces, and ``integrity_check`` ok.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import master_sdk as ms
from tests.support.durability import REPO, copy_hello_project, driver_env

pytestmark = pytest.mark.slow

LIMITED = textwrap.dedent(
    '''
    """Complete a run; then, with files unable to grow, try a run and a bare commit whose
    data needs more room; then lift the limit and complete another run."""
    import json, os, resource, signal, sys
    sys.modules.setdefault("rfc3987_syntax", None)
    import master_sdk as ms
    from master_sdk.memory.store import Changes, RunRecord, StepAttempt, TraceEvent

    root, store = sys.argv[1:3]

    def complete(wb, text):
        run = wb.run("hello_world/greet", {"text": text})
        run.approve(by="ana")
        run.submit({"audience": "board"}, by="ana")
        assert run.status == "completed", run.status
        return run.id

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write beyond the limit fails: EFBIG
    wb = ms.Workbench.open(root, store=store)
    first = complete(wb, "first")
    files = [store, store + "-wal", store + "-shm"]
    biggest = max(os.path.getsize(f) for f in files if os.path.exists(f))
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (biggest, hard))
    errors = []
    try:
        wb.run("hello_world/greet", {"text": "x" * 3900})
    except ms.MasterError as exc:
        errors.append(f"{type(exc).__name__}: {exc}")
    bare = RunRecord("bare-run", "hello_world", "greet", "running", 1, 0, 1, 1, "h", "1")
    big = Changes(
        steps={0: StepAttempt(0, "echo", "tool", "completed", 1, 1, 2, {"blob": "y" * 300_000})},
        events=[TraceEvent(1, 1, "run_started", attrs={"blob": "z" * 300_000})],
    )
    try:
        wb.store.commit(bare, big, expect_version=None, label="start")
    except ms.MasterError as exc:
        errors.append(f"{type(exc).__name__}: {exc}")
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    second = complete(wb, "second")
    wb.close()
    print(json.dumps({"committed": [first, second], "errors": errors}), flush=True)
    '''
)


def test_commits_refused_by_a_file_size_limit_leave_nothing_behind(tmp_path: Path) -> None:
    """A run and a bare commit that cannot grow the files fail with a MasterError saying
    nothing was written; the store then holds exactly the two completed runs (all their
    events and steps), nothing of the failed ones, integrity ok, and it took the later run."""
    root = copy_hello_project(tmp_path / "hello")
    store = tmp_path / "store" / "s.sqlite3"
    script = tmp_path / "limited.py"
    script.write_text(LIMITED, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script), str(root), str(store)],
        env=driver_env(),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(report["errors"]) == 2, report
    for error in report["errors"]:
        assert error.startswith(("StoreError", "RunError")), error
        assert "nothing was written" in error, error
        assert "\n" not in error
    with ms.Workbench.open(root, store=store) as wb:
        info = wb.store_info()
        runs = wb.runs()
        assert info["integrity"] == "ok"
        assert sorted(runs["run_id"]) == sorted(report["committed"])
        assert set(runs["status"]) == {"completed"}
        assert wb.store.count_events() == 2 * 16
        assert all(len(wb.steps(run_id)) == 4 for run_id in report["committed"])
        assert "x" * 1000 not in json.dumps(list(runs["run_id"]))
        with pytest.raises(ms.NotFound):
            wb.store.load("bare-run")
