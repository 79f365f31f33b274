"""``master store copy SRC DST``: runs move between a SQLite file and a PostgreSQL database
both ways, with every attempt, trace event and approval, redacted, and a second copy adds
nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd

import master_sdk as ms
from tests.support import postgres


def master(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "master_sdk.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def frames(wb: ms.Workbench) -> dict[str, pd.DataFrame]:
    return {
        "runs": wb.runs().sort_values("run_id").reset_index(drop=True),
        "trace": wb.traces().sort_values(["run_id", "seq"]).reset_index(drop=True),
        "approvals": wb.approvals().sort_values("run_id").reset_index(drop=True),
    }


def test_copying_sqlite_to_postgresql_and_back_keeps_every_run_and_twice_adds_nothing(
    hello_root: Path,
) -> None:
    """SQLite -> PostgreSQL -> a new SQLite file: equal runs, trace and approval frames;
    copying again skips every run; a paused run copied can be approved on PostgreSQL."""
    first = hello_root / "first.sqlite3"
    with ms.Workbench.open(hello_root, store=first) as wb:
        done = wb.run("hello_world/greet", {"text": "hi"})
        done.approve(by="ana")
        done.submit({"audience": "board"}, by="ana")
        paused = wb.run("hello_world/greet", {"text": "later"})
        before = frames(wb)
    url = postgres.fresh_url()

    out = master("store", "copy", str(first), url, cwd=hello_root)
    assert out.returncode == 0, out.stderr
    # CLI output is redacted like everything else: the server's IP address reads <IP>
    database = url.rsplit("/", 1)[1]
    assert "copied 2 run(s) to postgresql://postgres@<IP>:" in out.stdout
    assert out.stdout.rstrip().endswith(f"/{database}"), out.stdout
    again = master("store", "copy", str(first), url, cwd=hello_root)
    assert again.returncode == 0, again.stderr
    assert "copied 0 run(s)" in again.stdout and "skipped 2 already there" in again.stdout

    back = hello_root / "back.sqlite3"
    out = master("store", "copy", url, str(back), cwd=hello_root)
    assert out.returncode == 0, out.stderr
    for store in (url, back):
        with ms.Workbench.open(hello_root, store=store) as wb:
            for key, frame in frames(wb).items():
                pd.testing.assert_frame_equal(frame, before[key], obj=f"{store} {key}")
    with ms.Workbench.open(hello_root, store=url) as wb:
        run = wb.get_run(paused.id)
        run.approve(by="bo")
        assert run.status == "waiting_input"


def test_a_copy_is_redacted_with_the_projects_secrets(hello_root: Path) -> None:
    """A secret of secrets.yaml stored before it was a secret is redacted in the copy."""
    first = hello_root / "first.sqlite3"
    with ms.Workbench.open(hello_root, store=first) as wb:
        run = wb.run("hello_world/greet", {"text": "token zq-93af1c-live"})
        assert "zq-93af1c-live" in str(wb.store.load(run.id)[0].inputs)  # not yet a secret
    (hello_root / "secrets").mkdir()
    (hello_root / "secrets" / "secrets.yaml").write_text("vendor:\n  key: zq-93af1c-live\n")
    url = postgres.fresh_url()
    with ms.Workbench.open(hello_root, store=first) as wb:
        assert str(wb.copy_store(url)).startswith("copied 1 run(s)")
    with ms.Workbench.open(hello_root, store=url) as wb:
        assert "zq-93af1c-live" not in str(wb.store.load(run.id)[0].inputs)
