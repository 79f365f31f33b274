"""A step commit on PostgreSQL as one statement: one transaction, one round trip.

The run row is inserted (``INSERT ... ON CONFLICT (run_id) DO NOTHING RETURNING pk``) or
updated with compare-and-set (``UPDATE ... WHERE run_id = %s AND version = %s RETURNING
pk``) in a first common table expression ``r``; every other row of the commit (attempts,
step pointers, the trace block, approvals, inputs, the flow text) is inserted by a
data-modifying CTE that selects from ``r``. So when compare-and-set fails, ``r`` is empty
and nothing else is written either: the statement is atomic by itself and its one result
row says whether it won.

Sent alone on an autocommit connection, the statement is its own transaction: one message
to the server and one answer a commit, whatever it holds (an explicit ``BEGIN`` ...
``COMMIT``, even pipelined, wakes the server once per message). Rows travel as typed
``VALUES`` rows: the SQL text depends on which kinds of rows a commit holds and how many (a
handful of shapes, each built once by the process and prepared once by a connection, see
``connecting.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from master_sdk.memory.encoding import Encoder
    from master_sdk.memory.postgres.traces import Block
    from master_sdk.memory.store import ApprovalRecord, FlowSource, InputRecord, StepAttempt

RUN_INSERT_COLS = (
    "run_id, product, flow, status, version, cursor, created_us, updated_us, flow_hash, "
    "product_version, created_by, owner, steps_used, tool_calls, model_calls, tokens_in, "
    "tokens_out, cost_usd, inputs, output, state, error, parent_run_id, forked_at"
)
# the columns a commit may change on an existing run, and their places in run_values()
_UPDATED = (
    ("status", 3), ("version", 4), ("cursor", 5), ("updated_us", 7), ("flow_hash", 8),
    ("product_version", 9), ("owner", 11), ("steps_used", 12), ("tool_calls", 13),
    ("model_calls", 14), ("tokens_in", 15), ("tokens_out", 16), ("cost_usd", 17),
    ("output", 19), ("state", 20), ("error", 21),
)  # fmt: skip

_INSERT_RUN = (
    f"r AS (INSERT INTO runs ({RUN_INSERT_COLS}) VALUES ({', '.join(['%s'] * 24)}) "
    "ON CONFLICT (run_id) DO NOTHING RETURNING pk)"
)
_UPDATE_RUN = (
    f"r AS (UPDATE runs SET {', '.join(f'{c} = %s' for c, _ in _UPDATED)} "
    "WHERE run_id = %s AND version = %s RETURNING pk)"
)
# each row kind: the INSERT, the typed placeholders of one row, and what follows the rows;
# ``o`` numbers the rows so serial columns (block, n) follow the order given
_ATTEMPTS = (
    "a AS (INSERT INTO attempts (run_pk, step_id, attempt, idx, type, status, started_us, "
    "ended_us, output, error) SELECT r.pk, x.step_id, x.attempt, x.idx, x.type, x.status, "
    "x.started_us, x.ended_us, x.output, x.error FROM r, (VALUES {rows}) AS x (step_id, "
    "attempt, idx, type, status, started_us, ended_us, output, error, o) "
    "ON CONFLICT (run_pk, step_id, attempt) DO UPDATE SET idx = EXCLUDED.idx, "
    "type = EXCLUDED.type, status = EXCLUDED.status, started_us = EXCLUDED.started_us, "
    "ended_us = EXCLUDED.ended_us, output = EXCLUDED.output, error = EXCLUDED.error)",
    "%s::text, %s::int, %s::int, %s::text, %s::text, %s::bigint, %s::bigint, %s::text, %s::text",
)
_STEPS = (
    "s AS (INSERT INTO steps (run_pk, idx, step_id, attempt) SELECT r.pk, x.idx, x.step_id, "
    "x.attempt FROM r, (VALUES {rows}) AS x (idx, step_id, attempt, o) ON CONFLICT (run_pk, "
    "idx) DO UPDATE SET step_id = EXCLUDED.step_id, attempt = EXCLUDED.attempt)",
    "%s::int, %s::text, %s::int",
)
_BLOCKS = (
    "b AS (INSERT INTO trace_blocks (run_pk, n, data, metrics, attrs) SELECT r.pk, x.n, "
    "x.data, x.metrics, x.attrs FROM r, (VALUES {rows}) AS x (n, data, metrics, attrs, o) "
    "ORDER BY x.o)",
    "%s::int, %s::bytea, %s::bytea, %s::text",
)
_APPROVALS = (
    "p AS (INSERT INTO approvals (run_pk, step_id, decision, by_, comment, at_us) SELECT "
    "r.pk, x.step_id, x.decision, x.by_, x.comment, x.at_us FROM r, (VALUES {rows}) AS x "
    "(step_id, decision, by_, comment, at_us, o) ORDER BY x.o)",
    "%s::text, %s::text, %s::text, %s::text, %s::bigint",
)
_INPUTS = (
    "i AS (INSERT INTO user_inputs (run_pk, step_id, data, by_, at_us) SELECT r.pk, "
    "x.step_id, x.data, x.by_, x.at_us FROM r, (VALUES {rows}) AS x (step_id, data, by_, "
    "at_us, o) ORDER BY x.o)",
    "%s::text, %s::text, %s::text, %s::bigint",
)
_FLOW = (
    "f AS (INSERT INTO flows (flow_hash, product, flow, product_version, source) "
    "SELECT %s, %s, %s, %s, %s FROM r ON CONFLICT (flow_hash) DO NOTHING)"
)
# replace_steps: the run's step pointers go first, in the same transaction, under the run
# row's lock (so compare-and-set cannot fail after them)
REPLACE_STEPS = (
    "DELETE FROM steps WHERE run_pk = (SELECT pk FROM runs WHERE run_id = %s AND "
    "version = %s FOR UPDATE)"
)


@dataclass(slots=True)
class Statement:
    """SQL text and its parameters."""

    sql: str
    params: list[Any] = field(default_factory=list)


# A commit's shape: (insert or compare-and-set, rows of each kind, a flow text or not,
# relaxed or synced). The SQL text depends on nothing else, so it is built once a shape.
Shape = tuple[bool, int, int, int, int, int, bool, bool]


@lru_cache(maxsize=256)
def statement_sql(shape: Shape) -> str:
    """The text of the one statement writing a commit of ``shape``."""
    insert, attempts, steps, blocks, approvals, inputs, flow, relaxed = shape
    ctes = [_INSERT_RUN if insert else _UPDATE_RUN]
    for kind, rows in (
        (_ATTEMPTS, attempts), (_STEPS, steps), (_BLOCKS, blocks), (_APPROVALS, approvals),
        (_INPUTS, inputs),
    ):  # fmt: skip
        if rows:
            cte, row = kind
            ctes.append(cte.format(rows=", ".join(f"({row}, {o})" for o in range(rows))))
    if flow:
        ctes.append(_FLOW)
    # a step's start: the transaction does not wait for its WAL flush (the next synced
    # commit's flush covers it, WAL being flushed in order); set_config(..., true) lasts
    # until the statement's own commit
    relax = ", set_config('synchronous_commit', 'off', true)" if relaxed else ""
    return "WITH " + ", ".join(ctes) + f" SELECT pk{relax} FROM r"


def attempt_rows(enc: Encoder, steps: Sequence[StepAttempt]) -> list[tuple[Any, ...]]:
    """Rows for ``attempts`` (without ``run_pk``); one per ``(step_id, attempt)``, the last
    given winning, as a sequence of upserts would leave it."""
    by_key = {
        (s.step_id, s.attempt): (
            s.step_id, s.attempt, s.idx, s.type, s.status, s.started_us, s.ended_us,
            enc.dumps(s.output), enc.text(s.error),
        )
        for s in steps
    }  # fmt: skip
    return list(by_key.values())


def commit_statement(
    run_values: tuple[Any, ...],
    *,
    run_id: str,
    expect_version: int | None,
    enc: Encoder,
    steps: Sequence[StepAttempt],
    blocks: Sequence[Block],
    approvals: Sequence[ApprovalRecord],
    inputs: Sequence[InputRecord],
    flow: FlowSource | None,
    flow_text: str | None,
    sync: bool,
) -> Statement:
    """The one statement writing a commit (see the module docstring); it returns the run's
    ``pk``, or no row when the run exists already (insert) or moved on (compare-and-set)."""
    params: list[Any] = []
    if expect_version is None:
        params.extend(run_values)
    else:
        params.extend([*(run_values[i] for _, i in _UPDATED), run_id, expect_version])
    attempts = attempt_rows(enc, steps) if steps else []
    for r in attempts:
        params.extend(r)
    for s in steps:
        params.extend((s.idx, s.step_id, s.attempt))
    for data, metrics, attrs, n in blocks:
        params.extend((n, data, metrics, attrs))
    for a in approvals:
        params.extend((a.step_id, a.decision, a.by, enc.text(a.comment), a.at_us))
    for i in inputs:
        params.extend((i.step_id, enc.dumps(i.data), i.by, i.at_us))
    if flow is not None:
        params.extend((flow.flow_hash, flow.product, flow.flow, flow.product_version, flow_text))
    shape: Shape = (
        expect_version is None, len(attempts), len(steps), len(blocks), len(approvals),
        len(inputs), flow is not None, not sync,
    )  # fmt: skip
    return Statement(statement_sql(shape), params)
