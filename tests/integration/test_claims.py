"""``wb.claim(ref, n)``: a reviewer takes the next paused runs nobody holds, oldest first;
another reviewer gets the rest; a decision on a run someone else claimed is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

import master_sdk as ms
from tests.support import postgres


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_two_reviewers_claim_disjoint_runs_oldest_first(hello_root: Path, kind: str) -> None:
    """ana claims two of three paused runs (the oldest), bo the last one; bo may not approve
    one of ana's; a claim beyond the policy's ceiling is refused."""
    store = hello_root / "runs.sqlite3" if kind == "sqlite" else postgres.fresh_url()
    with ms.Workbench.open(hello_root, store=store) as wb:
        runs = [wb.run("hello_world/greet", {"text": f"t{i}"}) for i in range(3)]
        assert {r.status for r in runs} == {"waiting_approval"}
        mine = wb.claim("hello_world/greet", 2, by="ana")
        assert [m.run_id for m in mine] == [runs[0].id, runs[1].id]
        theirs = wb.claim("hello_world/greet", 2, by="bo")
        assert [t.run_id for t in theirs] == [runs[2].id]
        assert wb.claim("hello_world/greet", 2, by="cy") == []
        with pytest.raises(ms.DecisionRefused, match="ana"):
            wb.get_run(runs[0].id).approve(by="bo")
        with pytest.raises(ms.DecisionRefused, match="max_reservation_minutes"):
            wb.claim("hello_world/greet", 1, minutes=10_000, by="cy")
