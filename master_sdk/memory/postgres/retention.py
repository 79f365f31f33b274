"""Pruning old runs from a PostgreSQL store (see ``memory/retention.py``).

One transaction: the matching runs are locked (``FOR UPDATE SKIP LOCKED``: a run another
writer holds right now is busy, hence not old, and is left alone), their rows counted, and
the runs deleted; their attempts, step pointers, trace blocks, approvals, inputs and
reservation go with them (``ON DELETE CASCADE``). A dry run reads the same selection in a
read-only snapshot.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from master_sdk.memory.retention import PruneReport, report

if TYPE_CHECKING:
    from master_sdk.memory.postgres.store import Conn

T = TypeVar("T")

_MATCHING = (
    "FROM runs r WHERE r.updated_us < %s AND r.status = ANY(%s) AND {held}EXISTS "
    "(SELECT 1 FROM experiment_cases c WHERE c.run_id = r.run_id)"
)
_COUNTS = (
    "SELECT (SELECT count(*) FROM attempts WHERE run_pk = ANY(%(pks)s)), "
    "(SELECT coalesce(sum(n), 0) FROM trace_blocks WHERE run_pk = ANY(%(pks)s)), "
    "(SELECT count(*) FROM approvals WHERE run_pk = ANY(%(pks)s)), "
    "(SELECT count(*) FROM user_inputs WHERE run_pk = ANY(%(pks)s))"
)


class PostgresRetention:
    """``prune`` of ``PostgresStore``."""

    if TYPE_CHECKING:  # provided by PostgresStore

        def _read(self, doing: str, read: Callable[[Conn], T]) -> T: ...

        def _write(self, body: Callable[[Conn], T]) -> T: ...

    def prune(
        self, *, before_us: int, statuses: Sequence[str], dry_run: bool = False
    ) -> PruneReport:
        """Remove the runs last updated before ``before_us`` whose status is one of
        ``statuses`` and that no experiment holds (``dry_run``: count them only)."""

        def body(conn: Conn) -> PruneReport:
            params: list[Any] = [before_us, list(statuses)]
            lock = "" if dry_run else " ORDER BY r.pk FOR UPDATE OF r SKIP LOCKED"
            rows = conn.execute(
                "SELECT r.pk, r.status " + _MATCHING.format(held="NOT ") + lock, params
            ).fetchall()
            pks = [int(r[0]) for r in rows]
            by_status: dict[str, int] = {}
            for _, status in rows:
                by_status[str(status)] = by_status.get(str(status), 0) + 1
            kept = conn.execute("SELECT count(*) " + _MATCHING.format(held=""), params).fetchone()
            counts = conn.execute(_COUNTS, {"pks": pks}).fetchone()
            assert kept is not None and counts is not None  # noqa: S101  # aggregates
            if pks and not dry_run:
                conn.execute("DELETE FROM runs WHERE pk = ANY(%s)", (pks,))
            return report(
                dry_run=dry_run,
                before_us=before_us,
                statuses=statuses,
                by_status=by_status,
                attempts=int(counts[0]),
                events=int(counts[1]),
                approvals=int(counts[2]),
                inputs=int(counts[3]),
                kept=int(kept[0]),
            )

        if dry_run:
            return self._read("while counting runs to prune", body)
        return self._write(body)
