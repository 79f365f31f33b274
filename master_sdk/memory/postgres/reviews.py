"""The PostgreSQL store's half of reviewing: the pending list and reservations.

The pending list reads paused and decided runs through the ``runs_status`` index and takes
only the ``pending`` part and the experiment name out of each run's state, in SQL. A
reservation is one row per run in ``reservations``, changed by one conditional upsert: two
reviewers reserving at once cannot both win (the row lock of ``ON CONFLICT`` orders them).
Claiming the next free runs locks them ``FOR NO KEY UPDATE SKIP LOCKED`` (see ``_CLAIM``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from master_sdk.memory.store import PendingRun, Reservation

if TYPE_CHECKING:
    from master_sdk.memory.postgres.store import Conn

T = TypeVar("T")

_PENDING = (
    "SELECT r.run_id, r.product, r.flow, r.status, r.created_by, r.created_us, r.updated_us, "
    "(r.state::jsonb) -> 'pending', (r.state::jsonb) #>> '{experiment,name}', "
    "v.reserved_by, v.until_us "
    "FROM runs r LEFT JOIN reservations v ON v.run_pk = r.pk "
)
# Claiming the next free runs: the candidates' run rows are locked FOR NO KEY UPDATE SKIP
# LOCKED, so a reviewer claiming at the same time skips them instead of waiting and takes
# the next ones (the engine's commits, which take the same lock on a run, are skipped too:
# such a run is changing right now). The lease is then the same conditional upsert as
# reserve(): a lease committed in between is never taken over.
_CLAIM = (
    "WITH free AS (SELECT r.pk FROM runs r WHERE r.status = ANY(%(statuses)s) "
    "AND (%(product)s::text IS NULL OR r.product = %(product)s) "
    "AND (%(flow)s::text IS NULL OR r.flow = %(flow)s) "
    "AND NOT EXISTS (SELECT 1 FROM reservations v WHERE v.run_pk = r.pk "
    "AND v.until_us > %(now)s) "
    "ORDER BY r.updated_us, r.pk LIMIT %(limit)s FOR NO KEY UPDATE OF r SKIP LOCKED), "
    "got AS (INSERT INTO reservations (run_pk, reserved_by, until_us) "
    "SELECT pk, %(by)s, %(until)s FROM free ON CONFLICT (run_pk) DO UPDATE "
    "SET reserved_by = EXCLUDED.reserved_by, until_us = EXCLUDED.until_us "
    "WHERE reservations.until_us <= %(now)s RETURNING run_pk, until_us) "
    "SELECT r.run_id, got.until_us FROM got JOIN runs r ON r.pk = got.run_pk "
    "ORDER BY r.updated_us, r.pk"
)
# the show value as the SQLite store gives it: a string as it is, anything else as the
# compact JSON text the stores write
_compact = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _show(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else _compact(value)


class PostgresReviews:
    """``pending_runs``, ``reserve`` and ``reservation`` of ``PostgresStore``."""

    if TYPE_CHECKING:  # provided by PostgresStore
        location: str

        def _read(self, doing: str, read: Callable[[Conn], T]) -> T: ...

        def _one(self, doing: str, sql: str, params: Sequence[Any]) -> tuple[Any, ...] | None: ...

        def _write(self, body: Callable[[Conn], T]) -> T: ...

        def _pk(self, conn: Conn, run_id: str) -> int: ...

    def pending_runs(
        self,
        *,
        statuses: Sequence[str],
        product: str | None = None,
        flow: str | None = None,
    ) -> list[PendingRun]:
        """Runs in ``statuses``, oldest update first, with their reservation."""
        if not statuses:
            return []
        clauses = ["r.status = ANY(%s)"]
        params: list[Any] = [list(statuses)]
        for column, value in (("product", product), ("flow", flow)):
            if value is not None:
                clauses.append(f"r.{column} = %s")
                params.append(value)
        sql = _PENDING + "WHERE " + " AND ".join(clauses) + " ORDER BY r.updated_us, r.pk"

        def read(conn: Conn) -> list[PendingRun]:
            out = []
            for row in conn.execute(sql, params):
                pending = row[7] if isinstance(row[7], dict) else {}
                since = pending.get("since_us")
                step = pending.get("step")
                out.append(
                    PendingRun(
                        row[0],
                        row[1],
                        row[2],
                        row[3],
                        row[4],
                        int(row[5]),
                        int(row[6]),
                        None if step is None else str(step),
                        since if isinstance(since, int) else None,
                        _show(pending.get("show")),
                        row[8] if isinstance(row[8], str) else None,
                        None if row[9] is None else Reservation(row[0], row[9], int(row[10])),
                    )
                )
            return out

        return self._read("while listing pending runs", read)

    def reserve(self, run_id: str, by: str, until_us: int, *, now_us: int) -> Reservation:
        """Grant, renew or release a lease in one transaction (see ``Store.reserve``)."""

        def body(conn: Conn) -> Reservation:
            pk = self._pk(conn, run_id)
            conn.execute(
                "INSERT INTO reservations (run_pk, reserved_by, until_us) VALUES (%s, %s, %s) "
                "ON CONFLICT (run_pk) DO UPDATE SET reserved_by = EXCLUDED.reserved_by, "
                "until_us = EXCLUDED.until_us WHERE reservations.reserved_by = "
                "EXCLUDED.reserved_by OR reservations.until_us <= %s",
                (pk, by, max(until_us, now_us), now_us),
            )
            held = conn.execute(
                "SELECT reserved_by, until_us FROM reservations WHERE run_pk = %s", (pk,)
            ).fetchone()
            assert held is not None  # noqa: S101  # written just above in this transaction
            return Reservation(run_id, str(held[0]), int(held[1]))

        return self._write(body)

    def claim(
        self,
        by: str,
        until_us: int,
        *,
        now_us: int,
        statuses: Sequence[str],
        product: str | None = None,
        flow: str | None = None,
        limit: int = 1,
    ) -> list[Reservation]:
        """Lease up to ``limit`` free runs to ``by`` in one statement (see ``_CLAIM``)."""
        if limit <= 0 or not statuses:
            return []
        params = {
            "statuses": list(statuses), "product": product, "flow": flow, "by": by,
            "until": max(until_us, now_us), "now": now_us, "limit": limit,
        }  # fmt: skip
        rows = self._write(lambda conn: conn.execute(_CLAIM, params).fetchall())
        return [Reservation(str(r[0]), by, int(r[1])) for r in rows]

    def reservation(self, run_id: str) -> Reservation | None:
        """The lease stored on a run (possibly expired), or None."""

        row = self._one(
            "while reading a reservation",
            "SELECT v.reserved_by, v.until_us FROM reservations v "
            "JOIN runs r ON r.pk = v.run_pk WHERE r.run_id = %s",
            (run_id,),
        )
        return None if row is None else Reservation(run_id, str(row[0]), int(row[1]))
