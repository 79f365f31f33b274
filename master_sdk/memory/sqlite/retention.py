"""Pruning old runs from a SQLite store (see ``memory/retention.py``): one write
transaction under the store's write lock; a dry run reads the same selection on a reader."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

from master_sdk.memory.chunks import RUN_CHUNKS, run_range
from master_sdk.memory.retention import PruneReport, report

if TYPE_CHECKING:
    import sqlite3

# the tables holding a run's rows, children first (SQLite keeps no foreign keys here)
_CHILDREN = ("steps", "step_attempts", "trace_chunks", "approvals", "user_inputs", "reservations")
# keyed by run_pk << 32 | ... (schema version 8): deleted by row id range
_BY_RUN_RANGE = ("steps", "trace_chunks")


def _matching(statuses: Sequence[str], *, in_experiment: bool) -> str:
    marks = ", ".join("?" * len(statuses))
    held = "" if in_experiment else "NOT "
    return (
        f"FROM runs r WHERE r.updated_us < ? AND r.status IN ({marks}) AND {held}EXISTS "  # noqa: S608  # placeholders only
        "(SELECT 1 FROM experiment_cases c WHERE c.run_id = r.run_id)"
    )


def prune(
    conn: sqlite3.Connection, *, before_us: int, statuses: Sequence[str], dry_run: bool
) -> PruneReport:
    """Remove (``dry_run``: count) the runs matching; call inside one transaction."""
    params = [before_us, *statuses]
    rows = conn.execute(f"SELECT r.pk, r.status {_matching(statuses, in_experiment=False)}", params)
    pks: list[int] = []
    by_status: dict[str, int] = {}
    for pk, status in rows:
        pks.append(int(pk))
        by_status[str(status)] = by_status.get(str(status), 0) + 1
    kept_row = conn.execute(
        f"SELECT count(*) {_matching(statuses, in_experiment=True)}", params
    ).fetchone()
    doomed = json.dumps(pks)
    counts = conn.execute(
        # every attempt: the latest (steps) and the superseded ones not copies of them
        "SELECT (SELECT count(*) FROM steps JOIN json_each(?1) ON "  # noqa: S608  # a constant
        f"{run_range('value', 'steps')}) + (SELECT count(*) FROM step_attempts a WHERE "
        "a.run_pk IN (SELECT value FROM json_each(?1)) AND NOT EXISTS (SELECT 1 FROM steps s "
        f"WHERE {run_range('a.run_pk', 's')} AND s.step_id = a.step_id AND "
        "s.attempt = a.attempt)), (SELECT coalesce(sum(n), 0) "
        f"FROM trace_chunks JOIN json_each(?1) ON {run_range('value', 'trace_chunks')}), "
        "(SELECT count(*) FROM approvals WHERE run_pk IN "
        "(SELECT value FROM json_each(?1))), (SELECT count(*) FROM user_inputs WHERE run_pk "
        "IN (SELECT value FROM json_each(?1)))",
        (doomed,),
    ).fetchone()
    if not dry_run and pks:
        for table in (*_CHILDREN, "runs"):
            key = "pk" if table == "runs" else "run_pk"
            if table in _BY_RUN_RANGE:  # a run's rows are a range of row ids
                conn.executemany(
                    f"DELETE FROM {table} WHERE {RUN_CHUNKS}",  # noqa: S608  # constants
                    [(pk,) for pk in pks],
                )
                continue
            conn.execute(
                f"DELETE FROM {table} WHERE {key} IN (SELECT value FROM json_each(?))",  # noqa: S608  # constant names
                (doomed,),
            )
    return report(
        dry_run=dry_run,
        before_us=before_us,
        statuses=statuses,
        by_status=by_status,
        attempts=int(counts[0]),
        events=int(counts[1]),
        approvals=int(counts[2]),
        inputs=int(counts[3]),
        kept=int(kept_row[0]),
    )

