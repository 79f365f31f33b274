"""Which interrupted steps are retried without a human, as the policy says.

The step is abandoned in this process (its second commit finds the store locked), so the
store holds it ``running`` with an owner that is no longer executing it: exactly what a
crash leaves, without a process to kill.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

import master_sdk as ms
from master_sdk.errors import StoreBusy
from tests.support.durability import make_ledger_project, tally

KEYED = """
id: keyed
{policy}
inputs:
  type: object
  properties: {{ledger: {{type: string}}}}
  required: [ledger]
steps:
  - {{id: k, type: tool, tool: mark_keyed, input: {{ledger: "{{{{ inputs.ledger }}}}", name: k}}}}
  - {{id: m, type: tool, tool: mark, input: {{ledger: "{{{{ inputs.ledger }}}}", name: m}}}}
"""


def abandoned(tmp_path: Path, policy: str) -> tuple[ms.Workbench, str, Path]:
    """A workbench and a run whose idempotent step ``k`` ran but was never recorded."""
    root = make_ledger_project(tmp_path / "project")
    flow = root / "products" / "ledger" / "flows" / "keyed.yaml"
    flow.write_text(textwrap.dedent(KEYED.format(policy=policy)), encoding="utf-8")
    ledger = tmp_path / "ledger"
    wb = ms.Workbench.open(root, store=tmp_path / "s.sqlite3")
    real = wb.engine.store

    class LockedAfterFirst:
        commits = 0

        def commit(self, *args: object, **kwargs: object) -> None:
            LockedAfterFirst.commits += 1
            if LockedAfterFirst.commits == 2:
                raise StoreBusy("locked (simulated)")
            real.commit(*args, **kwargs)  # type: ignore[arg-type]

        def __getattr__(self, name: str) -> object:
            return getattr(real, name)

    wb.engine.store = LockedAfterFirst()  # type: ignore[assignment]
    with pytest.raises(StoreBusy):
        wb.run("ledger/keyed", {"ledger": str(ledger)})
    wb.engine.store = real
    (run_id,) = list(wb.runs()["run_id"])
    return wb, str(run_id), ledger


def test_by_default_an_abandoned_idempotent_step_is_retried_when_the_run_is_opened(
    tmp_path: Path,
) -> None:
    """With the default policy, get_run retries ``k`` (same key, attempt 2) and finishes."""
    wb, run_id, ledger = abandoned(tmp_path, "")
    run = wb.get_run(run_id)
    assert run.status == "completed"
    assert tally(ledger) == {"k": 2, "m": 1}
    wb.close()


@pytest.mark.parametrize(
    "policy",
    ["policy: {auto_retry_idempotent: false}", "policy: {max_recoveries: 0}"],
    ids=["auto_retry_off", "no_recoveries"],
)
def test_a_policy_can_leave_even_idempotent_steps_to_a_human(tmp_path: Path, policy: str) -> None:
    """``auto_retry_idempotent: false`` or ``max_recoveries: 0`` in the flow's policy: the
    step stays interrupted until someone retries it."""
    wb, run_id, ledger = abandoned(tmp_path, policy)
    run = wb.get_run(run_id)
    assert run.status == "interrupted"
    assert tally(ledger) == {"k": 1}
    run.retry(by="ana")
    assert run.status == "completed"
    assert tally(ledger) == {"k": 2, "m": 1}
    wb.close()
