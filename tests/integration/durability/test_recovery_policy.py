"""Which interrupted steps are retried without a human, as the policy says.

The step is abandoned in this process (its result commit finds the store locked by another
process), so the store holds it ``running`` with an owner that is no longer executing it:
what a crash leaves, without a process to kill.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

import master_sdk as ms
from tests.support.durability import abandon_mid_step, make_ledger_project, tally

KEYED = """
id: keyed
{policy}
inputs:
  type: object
  properties: {{ledger: {{type: string}}, gate: {{type: string}}}}
  required: [ledger, gate]
steps:
  - {{id: k, type: tool, tool: gated_keyed,
     input: {{ledger: "{{{{ inputs.ledger }}}}", name: k, gate: "{{{{ inputs.gate }}}}"}}}}
  - {{id: m, type: tool, tool: mark, input: {{ledger: "{{{{ inputs.ledger }}}}", name: m}}}}
"""


def abandoned(tmp_path: Path, policy: str) -> tuple[ms.Workbench, str, Path]:
    """A workbench and a run whose idempotent step ``k`` ran but whose result commit found
    the store locked by another process: the store holds it ``running`` under an executor
    that gave it up, which this workbench then records as interrupted."""
    root = make_ledger_project(tmp_path / "project", app="busy_timeout_ms: 200\n")
    flow = root / "products" / "ledger" / "flows" / "keyed.yaml"
    flow.write_text(textwrap.dedent(KEYED.format(policy=policy)), encoding="utf-8")
    ledger, gate = tmp_path / "ledger", tmp_path / "gate"
    wb = ms.Workbench.open(root, store=tmp_path / "s.sqlite3")
    inputs = {"ledger": str(ledger), "gate": str(gate)}
    run_id = abandon_mid_step(wb, "ledger/keyed", inputs, ledger=ledger, gate=gate, step="k")
    return wb, run_id, ledger


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
